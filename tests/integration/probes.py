"""Small helpers the live tests share: polling until something holds, and PromQL queries."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import httpx
import psutil

from gpucluster.config.names import LLM_DEPLOYMENT_PREFIX


def eventually(check, timeout_s: float = 45, interval_s: float = 5):
    """Call `check` until it returns something truthy or `timeout_s` passes; its last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)


def as_checkable(expr: str) -> str:
    """A threshold expression returns series only when it holds; `bool` makes it always return."""
    return re.sub(r"\s(>|<|==|>=|<=|!=)\s", r" \1 bool ", expr, count=1)


def query(live, expr: str, at: float | None = None) -> list[dict]:
    """The instant vector `expr` evaluates to on the live Prometheus (now, or at time `at`)."""
    params = {"query": expr} if at is None else {"query": expr, "time": str(at)}
    response = httpx.get(f"{live.prometheus}/api/v1/query", params=params, timeout=30)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def query_value(target, expr: str, absent: float | None = 0.0) -> float | None:
    """The value of the first series `expr` evaluates to; `absent` when it gives none."""
    result = query(target, expr)
    return float(result[0]["value"][1]) if result else absent


def served_requests(target) -> float:
    """Requests the engines completed, as Prometheus last scraped them."""
    return query_value(target, "sum(ray_vllm_request_success_total)")


def serve_traffic_until_scraped(target, client, model: str, timeout_s: float = 120) -> None:
    """A little traffic (streams and plain) through `client`, then wait until Prometheus
    (at `target.prometheus`) has scraped all of it."""
    before = served_requests(target)
    for stream in (False, True, False, True):
        reply = client.chat.completions.create(
            model=model,
            max_tokens=24,
            stream=stream,
            messages=[{"role": "user", "content": "Name three rivers."}],
        )
        if stream:
            list(reply)
    scraped = eventually(lambda: served_requests(target) >= before + 4, timeout_s, interval_s=2)
    assert scraped, f"Prometheus did not see the 4 requests within {timeout_s:.0f} s"


def llm_replicas(live) -> tuple[float, float]:
    """(running, target) replicas of the LLM deployment, as `gpucluster status` reports them."""
    status = json.loads(live.cli("status", "--json", timeout=120).stdout)
    (llm,) = [d for d in status["deployments"] if d["deployment"].startswith(LLM_DEPLOYMENT_PREFIX)]
    healthy = llm["replicas"] if llm["status"] == "HEALTHY" else -1
    return healthy, llm["target"]


def clean_stream(text: str) -> bool:
    """Whether an SSE body streamed events, none of them an error, and ended with [DONE].

    The events are parsed: the generated text itself may contain the word "error".
    """
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    return (
        bool(events)
        and not any("error" in event for event in events)
        and (text.rstrip().endswith("data: [DONE]"))
    )


def wait_for_replicas(live, count: int, timeout_s: float) -> float | None:
    """Seconds until the LLM deployment runs `count` healthy replicas at that target, or None."""
    started = time.monotonic()
    reached = eventually(lambda: llm_replicas(live) == (count, count), timeout_s, interval_s=2)
    return time.monotonic() - started if reached else None


def wait_for_idle_engines(target, timeout_s: float) -> bool:
    """Whether, within `timeout_s`, Prometheus sees no request running or waiting in any engine."""
    expr = "sum(vllm:num_requests_running) + sum(vllm:num_requests_waiting)"
    return bool(
        eventually(lambda: query_value(target, expr, absent=None) == 0, timeout_s, interval_s=2)
    )


def settle(live, timeout_s: float = 420) -> None:
    """The precondition of a scenario that loads the engine, whatever ran before it: one
    replica (the session's minimum; an earlier load may have added one) and an idle engine."""
    assert wait_for_replicas(live, 1, timeout_s) is not None, "not back at one replica"
    assert wait_for_idle_engines(live, timeout_s), "requests still run or wait in the engine"


def processes(where: Callable[[str], bool]) -> list[psutil.Process]:
    """Processes whose command line (arguments joined by spaces) satisfies `where`."""
    return [p for p in psutil.process_iter(["cmdline"]) if where(" ".join(p.info["cmdline"] or []))]


def service_process(live, program: str) -> psutil.Process:
    """The supervised service running `program` with a command that names our state dir."""
    found = processes(
        lambda line: (
            (line == program or line.startswith(program + " ")) and str(live.state_dir) in line
        )
    )
    assert found, f"no {program} process of this platform"
    return found[0]
