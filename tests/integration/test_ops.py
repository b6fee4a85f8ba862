"""Operator commands against the live platform: health, status, diagnose, capacity, support-bundle,
chat."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import tarfile
import time

import psutil
import pytest
from probes import eventually, query, service_process

from gpucluster.config.names import llm_deployment_name
from gpucluster.runtime.monitoring import PROMETHEUS_BINARY
from gpucluster.runtime.processes import platform_processes


def run_json(live, *args: str, timeout: float = 120) -> tuple[int, dict]:
    result = live.cli(*args, "--json", timeout=timeout)
    return result.returncode, json.loads(result.stdout)


def test_health_is_all_ok_and_generates(live, record_property):
    started = time.perf_counter()
    code, data = run_json(live, "health")
    record_property("health_seconds", round(time.perf_counter() - started, 2))
    assert code == 0, data
    checks = {c["name"]: c for c in data["checks"]}
    assert all(c["status"] == "ok" for c in checks.values()), checks
    assert checks["gpu"]["detail"].startswith("not used")
    assert checks["generation"]["detail"] == f"{live.model} generated 1 token"
    assert all(c["latency_ms"] >= 0 for c in checks.values())  # (a check that hangs fails)


def test_status_shows_nodes_deployments_and_the_model(live):
    def scraped() -> tuple[int, dict] | None:
        code, data = run_json(live, "status")
        replicas = [d["replicas"] for d in data.get("deployments", [])]
        return (code, data) if replicas and None not in replicas else None

    # right after `up`, Prometheus may not have scraped the replica gauges yet
    code, data = eventually(scraped, timeout_s=60) or run_json(live, "status")
    assert code == 0, data
    assert data["nodes"] and data["nodes"][0]["state"] == "ALIVE"
    deployments = {d["deployment"]: d for d in data["deployments"]}
    llm = deployments[llm_deployment_name(live.model)]
    assert llm["status"] == "HEALTHY" and llm["replicas"] == 1 and llm["target"] == 1
    # one model on one host: its replicas are the ingress (direct streaming), no other deployment
    assert list(deployments) == [llm_deployment_name(live.model)]
    (model,) = data["models"]
    assert model["model"] == live.model
    assert model["kv_cache_percent"] is not None and model["waiting"] is not None


def test_diagnose_finds_nothing_on_a_healthy_platform(live):
    code, data = run_json(live, "diagnose")
    assert code == 0 and data["ok"], data
    assert [f for f in data["findings"] if f["severity"] != "info"] == []


@pytest.mark.quiet_platform  # later, the window holds hundreds of other tests' short requests
def test_diagnose_does_not_call_long_generations_high_latency(live, openai_client):
    # Two long answers (about 10 s each here): the guide's p95 request latency goes over 5 s.
    for _ in range(2):
        openai_client.completions.create(
            model=live.model,
            prompt="Once upon a time",
            max_tokens=300,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
    guide_rule = "max(histogram_quantile(0.95, serve_deployment_processing_latency_ms))"
    seen = eventually(
        lambda: [r for r in query(live, guide_rule) if float(r["value"][1]) > 5000],
        timeout_s=90,
    )
    assert seen, f"{guide_rule} never went over 5000 ms after two 300-token answers"

    code, data = run_json(live, "diagnose")
    assert code == 0 and data["ok"], data
    assert [f for f in data["findings"] if f["severity"] != "info"] == []
    (info,) = [f for f in data["findings"] if f["title"] == "Long generations, not slow ones"]
    assert "vllm:time_to_first_token_seconds" in info["evidence"]


def test_diagnose_reports_prometheus_down(live):
    prometheus = service_process(live, PROMETHEUS_BINARY)
    prometheus.send_signal(signal.SIGSTOP)  # frozen: answers nothing, and the supervisor leaves it
    try:
        code, data = run_json(live, "diagnose")
    finally:
        prometheus.send_signal(signal.SIGCONT)
    assert code == 1
    titles = [f["title"] for f in data["findings"]]
    assert "Metrics not appearing: Prometheus does not answer" in titles
    assert data["findings"][0]["severity"] == "critical"


def test_diagnose_names_a_port_held_by_something_else(live, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = tmp_path / "other.yaml"
        config.write_text(
            f"platform:\n  state_dir: {tmp_path / 'state'}\n  ports:\n    nginx_http: {port}\n"
        )
        code, data = run_json(live, "diagnose", "-c", str(config))
    assert code == 1
    finding = data["findings"][0]
    assert finding["title"] == "Ports the platform needs are taken"
    assert f"nginx_http ({port}) held by python" in finding["evidence"]


CHAT_STATS = re.compile(r"^TTFT \d+ ms · \d+ tokens · ([\d.]+|-) tok/s$", re.MULTILINE)
# Greedy and short: the default model then answers the same way every time, within seconds.
CHAT_SAMPLING = ("--temperature", "0", "--max-tokens", "48")


@pytest.mark.timeout(900)  # its own waits: two chats of 300
def test_chat_answers_one_prompt_with_its_stats(live):
    code, data = run_json(
        live, "chat", "-p", "What is the capital of France?", *CHAT_SAMPLING, timeout=300
    )
    assert code == 0, data
    assert data["ok"] is True and data["model"] == live.model  # the first served model
    assert "Paris" in data["text"]
    assert data["ttft_ms"] > 0 and data["completion_tokens"] > 0
    assert data["total_s"] * 1000 + 1 >= data["ttft_ms"]  # (rounded to 1 ms and 0.1 ms)
    assert data["finish_reason"] in ("stop", "length")
    result = live.cli("chat", "-p", "What is the capital of France?", *CHAT_SAMPLING, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Paris" in result.stdout  # the answer alone on stdout; the stats on stderr
    assert len(CHAT_STATS.findall(result.stderr)) == 1, result.stderr


@pytest.mark.timeout(900)  # its own waits: two chat sessions of 300
def test_chat_session_carries_the_conversation(live):
    turns = "My name is Ada.\nWhat is my name?\n"
    result = live.cli("chat", *CHAT_SAMPLING, input=turns, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(CHAT_STATS.findall(result.stderr)) == 2, result.stderr
    assert result.stdout.strip(), "no reply text"
    # What the 135M model answers is not reliable; that the first exchange was sent with the
    # second question is: the second prompt is longer than the whole first exchange.
    result = live.cli("chat", *CHAT_SAMPLING, "--json", input=turns, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["ok"] and second["ok"]
    assert second["prompt_tokens"] >= first["prompt_tokens"] + first["completion_tokens"]


def test_capacity_of_the_running_model_matches_what_vllm_reports(live):
    code, data = run_json(live, "capacity")
    assert code == 0, data
    predicted = data["kv_token_capacity"]
    engine_logs = live.cli("logs", "engine", "-n", "100000", timeout=60).stdout
    reported = [
        int(n.replace(",", "")) for n in re.findall(r"KV cache size: ([\d,]+) tokens", engine_logs)
    ]
    assert reported, "vLLM's KV cache size line not found in the engine logs"
    assert abs(predicted - reported[-1]) / reported[-1] <= 0.05, (predicted, reported[-1])


def test_support_bundle_has_everything_and_no_secrets(live, tmp_path):
    code, data = run_json(live, "support-bundle", "-o", str(tmp_path), timeout=180)
    assert code == 0
    with tarfile.open(data["path"]) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames()]
        text = b"".join(archive.extractfile(m).read() for m in archive.getmembers() if m.isfile())
    for expected in (
        "config.json",
        "versions.json",
        "health.json",
        "status.json",
        "diagnose.json",
        "metrics.json",
        "prometheus-targets.json",
        "prometheus-alerts.json",
    ):
        assert expected in names
    assert any(n.startswith("logs/serve/") for n in names)
    token = (live.state_dir / "ray-auth-token").read_text().strip()
    for secret in (token, *live.keys.values(), live.dashboard_password):
        assert secret.encode() not in text


# What marks a process of the platform from the outside: Ray's daemons and workers, the vLLM
# engine, and the supervised services (their command lines name the state dir).
PLATFORM_COMMANDS = (
    "ray::",
    "raylet",
    "gcs_server",
    "dashboard.py",
    "log_monitor.py",
    "runtime_env",
    "monitor.py",
    "VLLM",
    "vllm",
)


def test_every_platform_process_is_tagged_or_descends_from_one(live):
    """What `down` stops (the processes its tag finds) is every process the platform runs, as
    seen by their command lines and by who listens on the platform's ports."""
    me = os.getpid()
    seen = {}
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if proc.pid != me and (
            str(live.state_dir) in line or any(m in line for m in PLATFORM_COMMANDS)
        ):
            seen[proc.pid] = line[:120]
    ports = {int(url.rsplit(":", 1)[1].split("/")[0]) for url in live.endpoints.values()}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports and conn.pid:
            seen.setdefault(conn.pid, f"listens on {conn.laddr.port}")
    assert len(seen) >= len(ports), seen  # the engine, Ray's daemons and every service

    found = {p.pid for p in platform_processes(str(live.state_dir.resolve()))}
    missed = {
        pid: line for pid, line in seen.items() if pid not in found and psutil.pid_exists(pid)
    }
    assert missed == {}, missed
