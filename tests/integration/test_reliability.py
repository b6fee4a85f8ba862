"""Faults and overload on the live stack: dropped clients free their engine slots, and a full
model turns new requests away at once (429 + Retry-After) while admitted ones complete."""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from probes import (
    clean_stream,
    eventually,
    processes,
    query,
    query_value,
    service_process,
    settle,
)

from gpucluster.config.names import APP_NAME, LLM_DEPLOYMENT_MATCHER, LLM_DEPLOYMENT_PREFIX
from gpucluster.runtime.monitoring import ALERTMANAGER_BINARY, PROMETHEUS_BINARY
from gpucluster.runtime.processes import platform_processes

REPO = Path(__file__).resolve().parents[2]
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
    async with client.stream(
        "POST", f"{live.api}/chat/completions", json=chat_body(live, 8, stream=True)
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                return time.monotonic() - started
    raise AssertionError("the stream ended without content")


@pytest.mark.timeout(2400)  # its own waits: settle 840, first tokens 600 + 600, abort count 60
@pytest.mark.saturates
def test_dropped_clients_free_their_engine_slots_at_once(live, artifacts):
    """Fill every engine slot with long generations, drop their clients after the first token
    (streams) or a short client timeout (plain requests): a new request then starts at once,
    where it would otherwise wait minutes, and the aborts are counted."""

    def aborted_total() -> float:
        return query_value(
            live, f'sum(ray_gpucluster_requests_aborted_total{{model="{live.model}"}})'
        )

    settle(live)  # every slot it fills is one replica's
    before = aborted_total()

    async def scenario() -> dict:
        async with httpx.AsyncClient(timeout=600, headers=live.headers) as client:
            streams = live.max_num_seqs - 1

            async def drop_stream() -> None:
                async with client.stream(
                    "POST",
                    f"{live.api}/chat/completions",
                    json=chat_body(live, LONG_TOKENS, stream=True),
                ) as response:
                    async for line in response.aiter_lines():
                        if '"content"' in line:
                            return  # leaving the block closes the connection mid-stream

            async def drop_plain() -> None:
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(
                        f"{live.api}/chat/completions",
                        json=chat_body(live, LONG_TOKENS, stream=False),
                        timeout=4,
                    )

            await asyncio.gather(*(drop_stream() for _ in range(streams)), drop_plain())
            return {
                "first_token_after_drops_s": await first_token_s(client, live),
                "dropped": streams + 1,
            }

    figures = asyncio.run(scenario())
    # Undropped, the new request would wait for 1500-token generations (well over a minute).
    assert figures["first_token_after_drops_s"] < 10, figures
    counted = eventually(lambda: aborted_total() - before >= figures["dropped"], timeout_s=60)
    assert counted, f"aborted requests counted: {aborted_total() - before}"
    figures["waiting_after"] = query_value(live, "sum(vllm:num_requests_waiting)", absent=None)
    (artifacts / "abort.json").write_text(json.dumps(figures, indent=2))


@pytest.mark.timeout(1800)  # its own waits: settle 840, admitted requests 600
@pytest.mark.saturates
def test_a_full_model_answers_429_at_once_and_admitted_requests_complete(live, artifacts):
    """More requests than one replica admits (2 x max_num_seqs running + 4 x max_num_seqs
    queued): the rest get 429 in the OpenAI shape with Retry-After; while the admitted ones run,
    each new request is turned away in milliseconds; the admitted ones all complete."""
    capacity = 6 * live.max_num_seqs
    burst = capacity + 2 * live.max_num_seqs
    settle(live)  # one replica, as the capacity assumes

    async def one(
        client: httpx.AsyncClient, stream: bool, tokens: int
    ) -> tuple[int, float, str, dict]:
        started = time.monotonic()
        body = chat_body(live, tokens, stream)
        async with client.stream("POST", f"{live.api}/chat/completions", json=body) as response:
            status, waited = response.status_code, time.monotonic() - started
            text = (await response.aread()).decode()
        return status, waited, text, dict(response.headers)

    async def scenario() -> tuple[list, list]:
        limits = httpx.Limits(max_connections=burst + 1)
        async with httpx.AsyncClient(timeout=600, headers=live.headers, limits=limits) as client:
            # long enough that no admitted request ends (and frees a queue place) before the
            # probes are done: 64 tokens let the queue drain within the 3 s wait
            load = asyncio.gather(*(one(client, i % 2 == 0, tokens=256) for i in range(burst)))
            await asyncio.sleep(3)  # the admitted ones are running, the queue is full
            probes = [await one(client, False, tokens=8) for _ in range(10)]
            return list(await load), probes

    results, probes = asyncio.run(scenario())
    rejected = [r for r in results + probes if r[0] == 429]
    admitted = [r for r in results if r[0] != 429]
    assert len(admitted) >= capacity, f"only {len(admitted)} admitted"
    assert all(status == 200 for status, *_ in admitted), [r[:3] for r in admitted if r[0] != 200]
    for status, _, text, headers in admitted:
        if text.startswith("data:"):
            assert clean_stream(text), text[-500:]
        else:
            answer = json.loads(text)
            assert "error" not in answer and answer["usage"]["completion_tokens"] > 0, text[:300]
    assert [status for status, *_ in probes] == [429] * len(probes)
    for _, _, text, headers in rejected:
        error = json.loads(text)["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "model_at_capacity"), error
        assert int(headers["retry-after"]) >= 1
    probe_ms = sorted(1000 * waited for _, waited, _, _ in probes)
    assert statistics.median(probe_ms) < 1000, probe_ms  # generous: the measured figure is kept
    assert httpx.get(f"{live.base}/health", timeout=30).status_code == 200
    figures = {
        "sent_at_once": burst,
        "admitted": len(admitted),
        "rejected_in_burst": len(rejected) - len(probes),
        "rejection_latency_ms_p50": round(statistics.median(probe_ms), 1),
        "rejection_latency_ms_max": round(probe_ms[-1], 1),
    }
    (artifacts / "backpressure.json").write_text(json.dumps(figures, indent=2))


@pytest.mark.parametrize(
    ("service", "marker"),
    [
        ("nginx", "nginx: master"),
        ("prometheus", PROMETHEUS_BINARY),
        ("alertmanager", ALERTMANAGER_BINARY),
    ],
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
    assert not any(
        child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children
    )
    log = (live.state_dir / "logs" / "supervisor.log").read_text()
    assert f"ERROR: {service} exited with code -9" in log
    assert f"restarting {service}" in log
    if service == "nginx":
        response = httpx.get(f"{live.api}/models", headers=live.headers, timeout=30)
        assert response.status_code == 200


def test_an_alert_left_firing_by_a_stopped_platform_shows_resolved_after_the_receivers_restart(
    live,
):
    """The alert log's last word on an alert Alertmanager no longer has is `resolved`, with the
    reason, once the receiver starts again (as it does at every `up`); a fresh label set so
    that no real alert matches it."""
    labels = {"alertname": "LeftFiringByAStop", "severity": "warning", "run": str(time.time_ns())}
    log = live.state_dir / "logs" / "alerts.log"
    with log.open("a", encoding="utf-8") as handle:
        handle.write(
            json.dumps(
                {
                    "received": "2026-01-01T00:00:00Z",
                    "status": "firing",
                    "alertname": labels["alertname"],
                    "severity": "warning",
                    "labels": labels,
                    "annotations": {},
                    "startsAt": "2026-01-01T00:00:00Z",
                }
            )
            + "\n"
        )

    def ours() -> dict | None:
        result = live.cli("alerts", "--json", "-n", "50", timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        found = [
            a
            for a in json.loads(result.stdout)["recent"]
            if a["labels"].get("run") == labels["run"]
        ]
        return found[0] if found else None

    assert ours()["status"] == "firing"  # the log alone still says so
    receiver = processes(
        lambda line: "gpucluster.runtime.alert_receiver" in line and str(live.state_dir) in line
    )
    assert len(receiver) == 1, receiver
    receiver[0].kill()
    receiver[0].wait(timeout=10)
    closed = eventually(
        lambda: (ours() or {}).get("status") == "resolved" and ours(), timeout_s=60, interval_s=2
    )
    assert closed, ours()
    assert "stopped while this alert fired" in closed["detail"]
    assert closed["active_now"] is False
    assert "restarting alert-receiver" in (live.state_dir / "logs" / "supervisor.log").read_text()


def llm_replica_processes() -> list[psutil.Process]:
    return processes(
        lambda line: line.startswith(f"ray::ServeReplica:{APP_NAME}:{LLM_DEPLOYMENT_PREFIX}")
    )


def engine_core_of(replica: psutil.Process) -> psutil.Process:
    (engine,) = [
        c
        for c in replica.children(recursive=True)
        if " ".join(c.cmdline()).startswith("VLLM::EngineCore")
    ]
    return engine


@pytest.mark.timeout(
    2100
)  # its own waits: settle 840, stream 120, /health 90, requests 120, replaced 400, counted 120, alert 120
@pytest.mark.saturates
@pytest.mark.parametrize("victim", ["engine", "replica"])
def test_a_crashed_replica_fails_its_requests_promptly_and_is_replaced(live, artifacts, victim):
    """Kill the vLLM EngineCore (or the whole replica actor) under in-flight requests: they end
    at once with an OpenAI-shaped error (streams: an SSE error event), /health says 503 while
    Serve replaces the replica, the ReplicaFailures alert fires, and then requests succeed."""
    settle(live)
    failures_query = f"sum(ray_serve_deployment_replica_failures_total{{{LLM_DEPLOYMENT_MATCHER}}})"

    def failures() -> float:
        return query_value(live, failures_query)

    failures_before = failures()
    (replica,) = llm_replica_processes()
    target = engine_core_of(replica) if victim == "engine" else replica
    started = threading.Event()
    outcomes: list[tuple[str, int, str, float]] = []

    async def in_flight() -> None:
        async def one(client: httpx.AsyncClient, stream: bool) -> None:
            body = chat_body(live, 600, stream)
            async with client.stream("POST", f"{live.api}/chat/completions", json=body) as response:
                text = ""
                try:
                    async for line in response.aiter_lines():
                        text += line + "\n"
                        if '"content"' in line:
                            started.set()
                except httpx.HTTPError as exc:
                    text += f"\n<{type(exc).__name__}>"
                outcomes.append(
                    ("stream" if stream else "plain", response.status_code, text, time.monotonic())
                )

        async with httpx.AsyncClient(timeout=300, headers=live.headers) as client:
            await asyncio.gather(one(client, True), one(client, True), one(client, False))

    requests = threading.Thread(target=asyncio.run, args=(in_flight(),), daemon=True)
    requests.start()
    assert started.wait(timeout=120), "no stream started"
    time.sleep(1)
    killed_at = time.monotonic()
    target.kill()

    degraded = eventually(
        lambda: httpx.get(f"{live.base}/health", timeout=30).status_code == 503,
        timeout_s=90,
        interval_s=1,
    )
    requests.join(timeout=120)
    assert not requests.is_alive(), "in-flight requests hang after the crash"
    assert len(outcomes) == 3
    ended_within_s = max(at for *_, at in outcomes) - killed_at
    for kind, status, text, _ in outcomes:
        if status == 200:  # the stream had begun: it must end with an error, never [DONE] alone
            assert kind == "stream", (kind, text[-300:])
            error_events = [
                json.loads(line[6:])
                for line in text.splitlines()
                if line.startswith("data: {") and '"error"' in line
            ]
            if victim == "replica" and not error_events:
                # The live platform serves directly: the replica process held the client's
                # stream, and its death cuts it before the end (docs/operator-guide.md,
                # "Serving path"); the client sees a broken stream, never a clean [DONE].
                assert text.endswith("<RemoteProtocolError>") and "[DONE]" not in text, text[-500:]
                continue
            assert error_events and "message" in error_events[-1]["error"], text[-500:]
        else:
            assert status >= 500, (kind, status, text[-300:])
            assert "message" in json.loads(text)["error"], text[-300:]
    assert degraded, "/health never reported the crashed replica"

    def answers() -> bool:
        reply = httpx.post(
            f"{live.api}/chat/completions",
            headers=live.headers,
            timeout=120,
            json=chat_body(live, 4, stream=False),
        )
        return reply.status_code == 200

    assert eventually(answers, timeout_s=400, interval_s=2), "the replica was never replaced"
    recovered_s = time.monotonic() - killed_at
    assert any(p.pid != replica.pid for p in llm_replica_processes())
    assert eventually(lambda: failures() > failures_before, timeout_s=120), "failure not counted"
    alert = eventually(
        lambda: query(live, 'ALERTS{alertname="ReplicaFailures", alertstate="firing"}'),
        timeout_s=120,
    )
    assert alert, "ReplicaFailures did not fire"
    figures = {
        "victim": victim,
        "in_flight_ended_within_s": round(ended_within_s, 1),
        "recovered_within_s": round(recovered_s, 1),
        "outcomes": [(kind, status) for kind, status, _, _ in outcomes],
    }
    (artifacts / f"crash-{victim}.json").write_text(json.dumps(figures, indent=2))


@pytest.mark.timeout(1800)  # its own waits: settle 840, soak 600
@pytest.mark.saturates
def test_a_short_soak_fails_no_admitted_request_and_leaves_the_engines_idle(live, artifacts):
    """benchmarks/soak.py for one minute: mixed load with random client disconnects."""
    settle(live)  # the replica an earlier test replaced is up, alone and idle
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "soak.py"),
            "--minutes",
            "1",
            "--workers",
            "6",
            "--url",
            live.api,
            "--prometheus",
            live.prometheus,
            "--model",
            live.model,
            "--api-key",
            live.keys["fuzz"],
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    (artifacts / "soak-short.json").write_text(json.dumps(report, indent=2))
    assert result.returncode == 0 and report["ok"], report
    assert report["outcomes"].get("ok", 0) > 0 and report["outcomes"].get("dropped", 0) > 0, report
    assert report["replica_rss"]["start_mib"] > 0


def broken_weights(tmp_path: Path) -> Path:
    """A model directory that passes the platform's checks but whose weights are garbage."""
    from gpucluster.config import BUILTIN_SOURCE, load_config
    from gpucluster.models import weights_location

    cache = load_config(None, env={}).platform.model_cache_dir
    prepared = Path(weights_location(BUILTIN_SOURCE, cache))  # the live platform's model
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for item in prepared.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            shutil.copy(item, broken / item.name)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    return broken


@pytest.mark.stops_platform  # runs after the live platform has stopped: it needs the same ports
@pytest.mark.parametrize(
    ("case", "line", "fix"),
    [
        ("kv-cache-too-big", "ERROR: Out of memory", "lower cpu_kvcache_gib"),
        ("broken-weights", "ERROR: Model loading failed", "check the model's source"),
        ("timeout", "ERROR: Model loading timeout", "raise platform.startup_timeout_s"),
    ],
)
@pytest.mark.timeout(2400)  # its own waits: down 300, up 900, a refused up 900
def test_engine_start_failures_say_what_failed_and_how_to_fix_it(live, tmp_path, case, line, fix):
    live.cli("down", "--json", timeout=300)  # (a no-op once the lifecycle test has stopped it)
    model = ""
    if case == "kv-cache-too-big":
        model = "    cpu_kvcache_gib: 64\n"
    elif case == "broken-weights":
        model = f"    source: {broken_weights(tmp_path)}\n"
    platform = "  startup_timeout_s: 5\n" if case == "timeout" else ""
    config = tmp_path / "platform.yaml"
    config.write_text(
        f"models:\n  - id: {live.model}\n{model}"
        f"platform:\n  state_dir: {tmp_path / 'state'}\n{platform}"
    )
    env = {**live.env, "GPUCLUSTER_CONFIG": str(config), "GPUCLUSTER_API_KEYS": "k-123"}

    def up(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gpucluster", "up", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    flags = []
    if case == "kv-cache-too-big":
        # The fit check refuses it before anything starts; past it, the engine's own failure.
        refused = up()
        said = " ".join(refused.stderr.split())  # rich wraps lines
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "do not fit this host's memory" in said and "cpu_kvcache_gib" in said, said
        assert not (tmp_path / "state" / "logs").exists()
        flags = ["--no-fit-check"]
    result = up(*flags)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert line in output and fix in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    platform_log = (tmp_path / "state" / "logs" / "platform.log").read_text()
    assert line in platform_log, platform_log[-3000:]
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers, [" ".join(p.cmdline())[:120] for p in leftovers]


@pytest.mark.timeout(2400)  # its own waits: down 300, up 900, down 900
@pytest.mark.stops_platform  # starts a platform of its own, on the live one's ports
def test_ray_head_loss_is_reported_with_the_recovery_step(live, tmp_path):
    live.cli("down", "--json", timeout=300)
    config = tmp_path / "platform.yaml"
    config.write_text(f"platform:\n  state_dir: {tmp_path / 'state'}\n")
    env = {**live.env, "GPUCLUSTER_CONFIG": str(config), "GPUCLUSTER_API_KEYS": "k-head-123"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gpucluster", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    assert cli("up", "--json").returncode == 0
    try:
        tag = str((tmp_path / "state").resolve())
        # every port the platform listens on, Ray's own agents' included
        ports = {
            conn.laddr.port
            for proc in platform_processes(tag)
            for conn in proc.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN
        }
        assert {8080, 52365, 18080, 6379} <= ports, sorted(ports)  # metrics, agent, nginx, GCS
        head = [
            p
            for p in platform_processes(tag)
            if any(
                part in " ".join(p.cmdline())
                for part in ("gcs_server", "raylet", "dashboard/dashboard.py")
            )
        ]
        assert head, "no Ray head process found"
        for proc in head:
            proc.kill()

        health = cli("health", "--json")
        assert health.returncode == 1
        checks = {c["name"]: c for c in json.loads(health.stdout)["checks"]}
        assert checks["ray dashboard"]["status"] == "fail"
        assert "gpucluster down && gpucluster up" in checks["ray dashboard"]["hint"]
        diagnosis = cli("diagnose", "--json")
        assert diagnosis.returncode == 1
        (finding,) = [
            f
            for f in json.loads(diagnosis.stdout)["findings"]
            if f["title"] == "The Ray head is down"
        ]
        assert "gpucluster down && gpucluster up" in finding["step"]
    finally:
        down = cli("down", "--json")
    assert down.returncode == 0 and json.loads(down.stdout)["leftovers"] == [], down.stdout
    held = {
        conn.laddr.port: conn.pid
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports
    }
    assert held == {}, f"ports still held after down (port: pid): {held}"
