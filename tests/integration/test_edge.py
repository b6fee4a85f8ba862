"""The nginx edge: health, API keys, rate limits, body size, unbuffered streaming."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import openai
import pytest


def test_health_through_nginx_is_open_and_ok(live):
    response = httpx.get(f"{live.base}/health", timeout=30)  # no key: /health stays open
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": {live.model: "ok"}}


def test_models_needs_a_key(live):
    assert httpx.get(f"{live.api}/models", timeout=30).status_code == 401
    assert httpx.get(f"{live.api}/models", headers=live.headers, timeout=30).status_code == 200


def test_serve_reached_directly_refuses_requests_without_a_key(live):
    response = httpx.get(f"{live.serve}/v1/models", timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    wrong = httpx.post(
        f"{live.serve}/v1/chat/completions",
        json={"model": live.model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer wrong"},
        timeout=30,
    )
    assert wrong.status_code == 401


def test_every_configured_key_works_and_the_openai_client_sees_401_for_others(live):
    for key in live.keys.values():
        assert httpx.get(f"{live.api}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code == 200
    client = openai.OpenAI(base_url=live.api, api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def models_status_becomes(live, key: str, expected: int, timeout_s: float = 10) -> int:
    """Poll GET /v1/models with `key` until it answers `expected` (or time runs out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{live.api}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code
        if status == expected or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def test_a_key_added_to_the_file_works_without_restart_and_a_removed_one_stops(live):
    original = live.keys_file.read_text()
    rotated = "rotated-key-" + str(int(time.time()))
    try:
        live.keys_file.write_text(original + rotated + "\n")
        assert models_status_becomes(live, rotated, 200) == 200
    finally:
        live.keys_file.write_text(original)
    assert models_status_becomes(live, rotated, 401) == 401


def test_a_burst_beyond_the_rate_limit_gets_429_with_retry_after_then_recovers(live):
    headers = {"Authorization": f"Bearer {live.keys['limits']}"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.get(f"{live.api}/models", headers=headers) for _ in range(300)))

    responses = asyncio.run(burst())
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) >= 100
    assert {r.status_code for r in responses} <= {200, 429}
    error = limited[0].json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert int(limited[0].headers["retry-after"]) >= 1
    time.sleep(int(limited[0].headers["retry-after"]) + 1)
    assert httpx.get(f"{live.api}/models", headers=headers, timeout=30).status_code == 200
    # other keys were never limited
    assert httpx.get(f"{live.api}/models", headers=live.headers, timeout=30).status_code == 200


def first_token_seconds(url: str, live) -> float:
    body = {
        "model": live.model,
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": 24,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    with httpx.stream("POST", url, json=body, headers=live.headers, timeout=120) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                first = time.perf_counter() - started
                break
        else:
            raise AssertionError("no content chunk")
        assert [line for line in lines if line][-1] == "data: [DONE]"  # the rest arrives too
    return first


def test_streaming_through_nginx_is_not_buffered(live, record_property):
    via_nginx, direct = [], []
    for _ in range(5):  # interleaved, so both see the same engine state
        via_nginx.append(first_token_seconds(f"{live.api}/chat/completions", live))
        direct.append(first_token_seconds(f"{live.serve}/v1/chat/completions", live))
    added_ms = (statistics.median(via_nginx) - statistics.median(direct)) * 1000
    record_property("ttft_added_by_nginx_ms", round(added_ms, 1))
    print(f"TTFT p50 via nginx {statistics.median(via_nginx)*1000:.1f} ms, direct {statistics.median(direct)*1000:.1f} ms")
    # buffering would hold the first token until the whole generation (24 tokens) is done
    assert added_ms < 150


def test_unknown_path_is_a_404_in_the_openai_shape(live):
    response = httpx.get(f"{live.base}/nothing", timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
