"""Is the platform answering? Probes over HTTP, the way a client sees it."""

from __future__ import annotations

import httpx


def answers(base_url: str, model_id: str, timeout_s: float = 30.0) -> tuple[bool, str]:
    """Generate one token from `model_id` through the OpenAI API at `base_url` (…/v1)."""
    try:
        response = httpx.post(
            f"{base_url}/chat/completions",
            json={
                "model": model_id,
                "messages": [{"role": "user", "content": "Say OK."}],
                "max_tokens": 1,
                "temperature": 0,
            },
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}: {response.text[:200]}"
    return True, "ok"


def serving_models(base_url: str, timeout_s: float = 5.0) -> list[str] | None:
    """Model ids listed by GET /v1/models, or None when the API does not answer."""
    try:
        response = httpx.get(f"{base_url}/models", timeout=timeout_s)
        response.raise_for_status()
        return [card["id"] for card in response.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
