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


def query(live, expr: str) -> list[dict]:
    """The instant vector `expr` evaluates to on the live Prometheus."""
    response = httpx.get(f"{live.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


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
    return bool(events) and not any("error" in event for event in events) and (
        text.rstrip().endswith("data: [DONE]")
    )


def wait_for_replicas(live, count: int, timeout_s: float) -> float | None:
    """Seconds until the LLM deployment runs `count` healthy replicas at that target, or None."""
    started = time.monotonic()
    reached = eventually(lambda: llm_replicas(live) == (count, count), timeout_s, interval_s=2)
    return time.monotonic() - started if reached else None


def processes(where: Callable[[str], bool]) -> list[psutil.Process]:
    """Processes whose command line (arguments joined by spaces) satisfies `where`."""
    return [p for p in psutil.process_iter(["cmdline"]) if where(" ".join(p.info["cmdline"] or []))]


def service_process(live, program: str) -> psutil.Process:
    """The supervised service running `program` with a command that names our state dir."""
    found = processes(
        lambda line: (line == program or line.startswith(program + " ")) and str(live.state_dir) in line
    )
    assert found, f"no {program} process of this platform"
    return found[0]
