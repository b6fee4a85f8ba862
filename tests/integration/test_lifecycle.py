"""`gpucluster up` twice reports the running platform; `down` leaves no Ray or vLLM process."""

from __future__ import annotations

import json
import threading

import httpx
import psutil
import pytest

# Ray's daemons and workers, and vLLM's engine processes (they set these titles).
RAY_OR_VLLM = (
    "raylet",
    "gcs_server",
    "ray::",
    "ray/dashboard",
    "default_worker.py",
    "VLLM::",
    "EngineCore",
)


def ray_or_vllm_processes() -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        text = " ".join([proc.info["name"] or "", *(proc.info["cmdline"] or [])])
        if any(marker in text for marker in RAY_OR_VLLM):
            found.append(f"{proc.info['name']} (pid {proc.pid})")
    return found


def test_second_up_reports_the_running_platform(live):
    result = live.cli("up", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["already_running"] is True
    assert data["phases"] == {}
    assert data["endpoints"] == live.endpoints


def test_up_reports_its_start_up_phases(live):
    assert list(live.up_phases) == [
        "prepare models",
        "start Ray",
        "start nginx, Prometheus, Alertmanager",
        "deploy Serve app and load engines",
        "first token through nginx",
    ]
    assert sum(live.up_phases.values()) <= live.up_seconds + 1


def test_platform_log_has_the_guide_lines(live):
    result = live.cli("logs", "platform", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    text = "\n".join(
        line for lines in json.loads(result.stdout)["files"].values() for line in lines
    )
    assert f"Loading model {live.model}..." in text
    assert "Model loaded successfully" in text


def test_serve_logs_have_the_replica_lines(live):
    result = live.cli("logs", "serve", "-n", "5000", timeout=60)
    assert result.returncode == 0
    assert f"Loading model {live.model}..." in result.stdout
    assert "Replica started successfully" in result.stdout
    line = next(l for l in result.stdout.splitlines() if "Replica started successfully" in l)
    assert line.startswith("INFO ")  # level, then Serve's timestamp


def test_unknown_log_component_is_a_usage_error(live):
    result = live.cli("logs", "nginxx", timeout=60)
    assert result.returncode == 2
    assert "unknown component" in result.stderr


def stream_in_background(live, max_tokens: int) -> tuple[threading.Thread, dict]:
    """Start a streamed chat; returns the thread and what it saw (first token, events, usage)."""
    seen: dict = {"first_token": threading.Event(), "events": []}
    body = {
        "model": live.model,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def run() -> None:
        try:
            with httpx.stream(
                "POST", f"{live.api}/chat/completions", json=body, headers=live.headers, timeout=300
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        seen["events"].append(line.removeprefix("data: "))
                        seen["first_token"].set()
        except httpx.HTTPError as exc:
            seen["error"] = repr(exc)
        seen["first_token"].set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, seen


@pytest.mark.timeout(900)  # its own waits: first token 120, down 300, stream 120, down again 120
@pytest.mark.stops_platform
def test_down_lets_an_in_flight_stream_finish_and_leaves_no_process(live):
    thread, seen = stream_in_background(live, max_tokens=96)
    assert seen["first_token"].wait(timeout=120)
    result = live.cli("down", "--json", timeout=300)
    thread.join(timeout=120)
    assert "error" not in seen, seen.get("error")
    assert seen["events"][-1] == "[DONE]"
    usage = [json.loads(e)["usage"] for e in seen["events"][:-1] if json.loads(e).get("usage")]
    assert usage[-1]["completion_tokens"] == 96  # the whole stream, not cut by down
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["was_running"] is True
    assert data["leftovers"] == []
    assert ray_or_vllm_processes() == []
    for url in (live.base, live.serve):  # nginx and Serve no longer answer
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=5)
    again = live.cli("down", "--json", timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["was_running"] is False
