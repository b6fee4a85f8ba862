"""Small helpers the live tests share: polling until something holds, and PromQL queries."""

from __future__ import annotations

import time

import httpx


def eventually(check, timeout_s: float = 45, interval_s: float = 5):
    """Call `check` until it returns something truthy or `timeout_s` passes; its last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)


def query(live, expr: str) -> list[dict]:
    """The instant vector `expr` evaluates to on the live Prometheus."""
    response = httpx.get(f"{live.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]
