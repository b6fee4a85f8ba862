"""Is the platform answering? Probes over HTTP, the way a client sees it.

Each probe takes an `httpx.Client` to send through (the operator tools share one; tests give one
on an httpx.MockTransport), else sends its request alone; the timeout is the probe's either way.
"""

from __future__ import annotations

import httpx


def answers(
    base_url: str,
    model_id: str,
    api_key: str | None = None,
    timeout_s: float = 30.0,
    *,
    embeds: bool = False,
    client: httpx.Client | None = None,
) -> tuple[bool, str]:
    """Generate one token from `model_id` through the OpenAI API at `base_url` (…/v1), or,
    for an embedding model (`embeds`), embed one word."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if embeds:
        path, body = "embeddings", {"model": model_id, "input": "OK"}
    else:
        path, body = (
            "chat/completions",
            {
                "model": model_id,
                "messages": [{"role": "user", "content": "Say OK."}],
                "max_tokens": 1,
                "temperature": 0,
            },
        )
    try:
        post = httpx.post if client is None else client.post
        response = post(f"{base_url}/{path}", json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}: {response.text[:200]}"
    return True, "ok"


def health_status(
    url: str,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
) -> int | None:
    """HTTP status of a GET on `url`, or None when nothing answers."""
    try:
        get = httpx.get if client is None else client.get
        return get(url, headers=headers or {}, timeout=timeout_s).status_code
    except httpx.HTTPError:
        return None


def port_accepts(url: str, timeout_s: float = 2.0, client: httpx.Client | None = None) -> bool:
    """Whether an HTTP server answers at `url` at all (any status)."""
    return health_status(url, timeout_s, client=client) is not None
