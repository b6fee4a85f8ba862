"""Faults and overload on the live stack: dropped clients free their engine slots, and a full
model turns new requests away at once (429 + Retry-After) while admitted ones complete."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx
import psutil
import pytest

from probes import eventually, query

LONG_TOKENS = 1500  # minutes of decoding at a full batch on two cores, if nobody stopped it


def chat_body(live, max_tokens: int, stream: bool) -> dict:
    return {
        "model": live.model,
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }


async def first_token_s(client: httpx.AsyncClient, live) -> float:
    """Seconds until a new short stream's first content chunk arrives."""
    started = time.monotonic()
    async with client.stream("POST", f"{live.api}/chat/completions",
                             json=chat_body(live, 8, stream=True)) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                return time.monotonic() - started
    raise AssertionError("the stream ended without content")


@pytest.mark.saturates
def test_dropped_clients_free_their_engine_slots_at_once(live, artifacts):
    """Fill every engine slot with long generations, drop their clients after the first token
    (streams) or a short client timeout (plain requests): a new request then starts at once,
    where it would otherwise wait minutes, and the aborts are counted."""
    def aborted_total() -> float:
        found = query(live, f'sum(ray_gpucluster_requests_aborted_total{{model="{live.model}"}})')
        return float(found[0]["value"][1]) if found else 0.0

    before = aborted_total()

    async def scenario() -> dict:
        async with httpx.AsyncClient(timeout=600, headers=live.headers) as client:
            streams = live.max_num_seqs - 1

            async def drop_stream() -> None:
                async with client.stream("POST", f"{live.api}/chat/completions",
                                         json=chat_body(live, LONG_TOKENS, stream=True)) as response:
                    async for line in response.aiter_lines():
                        if '"content"' in line:
                            return  # leaving the block closes the connection mid-stream

            async def drop_plain() -> None:
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(f"{live.api}/chat/completions",
                                      json=chat_body(live, LONG_TOKENS, stream=False), timeout=4)

            await asyncio.gather(*(drop_stream() for _ in range(streams)), drop_plain())
            return {"first_token_after_drops_s": await first_token_s(client, live),
                    "dropped": streams + 1}

    figures = asyncio.run(scenario())
    # Undropped, the new request would wait for 1500-token generations (well over a minute).
    assert figures["first_token_after_drops_s"] < 10, figures
    counted = eventually(lambda: aborted_total() - before >= figures["dropped"], timeout_s=60)
    assert counted, f"aborted requests counted: {aborted_total() - before}"
    waiting = query(live, "sum(vllm:num_requests_waiting)")
    figures["waiting_after"] = float(waiting[0]["value"][1]) if waiting else None
    (artifacts / "abort.json").write_text(json.dumps(figures, indent=2))


@pytest.mark.saturates
def test_a_full_model_answers_429_at_once_and_admitted_requests_complete(live, artifacts):
    """Far more requests than one replica admits (2 x max_num_seqs running + 4 x max_num_seqs
    queued): the rest get 429 in the OpenAI shape with Retry-After, fast; the others complete."""
    burst = 12 * live.max_num_seqs

    async def one(client: httpx.AsyncClient, stream: bool) -> tuple[int, float, str, dict]:
        started = time.monotonic()
        body = chat_body(live, 32, stream)
        async with client.stream("POST", f"{live.api}/chat/completions", json=body) as response:
            status, waited = response.status_code, time.monotonic() - started
            text = (await response.aread()).decode()
        return status, waited, text, dict(response.headers)

    async def scenario() -> list[tuple[int, float, str, dict]]:
        limits = httpx.Limits(max_connections=burst)
        async with httpx.AsyncClient(timeout=600, headers=live.headers, limits=limits) as client:
            return await asyncio.gather(*(one(client, i % 2 == 0) for i in range(burst)))

    results = asyncio.run(scenario())
    rejected = [r for r in results if r[0] == 429]
    admitted = [r for r in results if r[0] != 429]
    assert rejected, "nothing was turned away"
    assert admitted and all(status == 200 for status, *_ in admitted), [r[:3] for r in admitted if r[0] != 200]
    for status, _, text, headers in admitted:
        assert '"error"' not in text and ("[DONE]" in text or '"usage"' in text)
    for _, _, text, headers in rejected:
        error = json.loads(text)["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "model_at_capacity"), error
        assert int(headers["retry-after"]) >= 1
    latency_ms = sorted(1000 * waited for _, waited, _, _ in rejected)
    assert statistics.median(latency_ms) < 1000, latency_ms  # generous: measured figure below
    health = httpx.get(f"{live.base}/health", timeout=30)
    assert health.status_code == 200
    figures = {
        "sent": burst, "admitted": len(admitted), "rejected": len(rejected),
        "rejection_latency_ms_p50": round(statistics.median(latency_ms), 1),
        "rejection_latency_ms_max": round(latency_ms[-1], 1),
    }
    (artifacts / "backpressure.json").write_text(json.dumps(figures, indent=2))


def service_process(live, marker: str) -> psutil.Process:
    """The supervised service whose program is `marker` and whose command names our state dir."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        line = " ".join(cmdline)
        program = cmdline[0] if cmdline else ""
        if (program == marker or line.startswith(marker + " ")) and str(live.state_dir) in line:
            return proc
    raise AssertionError(f"no {marker} process of this platform")


@pytest.mark.parametrize(
    ("service", "marker"),
    [("nginx", "nginx: master"), ("prometheus", "/usr/bin/prometheus"),
     ("alertmanager", "/usr/bin/prometheus-alertmanager")],
)
def test_a_killed_component_is_restarted_and_health_recovers(live, service, marker):
    victim = service_process(live, marker)
    children = victim.children()
    victim.kill()
    victim.wait(timeout=10)

    def healthy_again() -> bool:
        result = live.cli("health", "--json", timeout=120)
        return result.returncode == 0 and service_process(live, marker).pid != victim.pid

    assert eventually(healthy_again, timeout_s=60, interval_s=2), live.cli("health").stdout
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    log = (live.state_dir / "logs" / "supervisor.log").read_text()
    assert f"ERROR: {service} exited with code -9" in log
    assert f"restarting {service}" in log
    if service == "nginx":
        response = httpx.get(f"{live.api}/models", headers=live.headers, timeout=30)
        assert response.status_code == 200
