"""Each diagnose rule on recorded values: the finding it makes, and silence when all is well."""

from __future__ import annotations

from gpucluster.ops.diagnose import Snapshot, diagnose, needs_action

HEALTHY = {
    "running": True,
    "api_status": 200,
    "prometheus_up": True,
    "sd_targets": 3,
    "metrics_port_up": True,
    "kv_cache": 0.1,
    "waiting": 0.0,
    "p95_latency_ms": 800.0,
    "p95_ttft_s": 0.08,
    "p95_tpot_s": 0.03,
    "replicas": {"PlatformLLMServer:m": (1.0, 2)},
}


def titles(**overrides) -> list[str]:
    return [f.title for f in diagnose(Snapshot(**{**HEALTHY, **overrides}))]


def test_a_healthy_platform_has_no_findings():
    assert titles() == []


def test_busy_ports_before_up():
    findings = diagnose(
        Snapshot(
            running=False, api_status=None, busy_ports={"nginx_http (18080)": "python3 (pid 7)"}
        )
    )
    assert findings[0].severity == "critical"
    assert findings[0].title == "Ports the platform needs are taken"
    assert "nginx_http (18080) held by python3 (pid 7)" in findings[0].evidence


def test_api_down_while_running():
    assert "The API does not answer" in titles(api_status=None)


def test_ray_head_lost_while_running_names_the_recovery_step():
    findings = diagnose(Snapshot(**{**HEALTHY, "ray_head_up": False, "api_status": 503}))
    (head,) = [f for f in findings if f.title == "The Ray head is down"]
    assert head.severity == "critical" and "gpucluster down && gpucluster up" in head.step
    assert "The Ray head is down" not in titles(ray_head_up=False, running=False)


def test_prometheus_down_is_the_metrics_finding():
    assert "Metrics not appearing: Prometheus does not answer" in titles(prometheus_up=False)


def test_missing_service_discovery_and_down_targets():
    assert "Metrics not appearing: no service discovery targets" in titles(sd_targets=None)
    found = diagnose(Snapshot(**{**HEALTHY, "ray_targets_down": ["http://127.0.0.1:8080/metrics"]}))
    assert 'up{job="ray"} == 0' in found[0].evidence


def test_queueing_names_the_query_and_says_to_raise_max_when_at_it():
    findings = diagnose(
        Snapshot(**{**HEALTHY, "waiting": 3.0, "replicas": {"PlatformLLMServer:m": (2.0, 2)}})
    )
    assert [f.title for f in findings] == ["Requests are queueing"]
    assert findings[0].evidence == "sum(vllm:num_requests_waiting) = 3"
    assert "raise it" in findings[0].step


def test_kv_cache_nearly_full():
    assert titles(kv_cache=0.93) == ["KV cache nearly full"]


def test_long_generations_with_a_fast_first_token_and_pace_need_no_action():
    # One 2,000-token answer makes the guide's p95 request latency 11.8 s on a healthy platform.
    findings = diagnose(Snapshot(**{**HEALTHY, "p95_latency_ms": 11846.0}))
    assert [(f.severity, f.title) for f in findings] == [
        ("info", "Long generations, not slow ones")
    ]
    assert "11846 ms" in findings[0].evidence and "0.08 s" in findings[0].evidence
    assert not needs_action(findings)


def test_slow_first_tokens_or_slow_pace_are_high_latency():
    slow_first = diagnose(Snapshot(**{**HEALTHY, "p95_latency_ms": 7200.0, "p95_ttft_s": 3.5}))
    assert [(f.severity, f.title) for f in slow_first] == [
        ("warning", "High latency: first tokens are slow")
    ]
    assert "3.50 s" in slow_first[0].evidence and needs_action(slow_first)
    # A slow pace is high latency even while no request has yet passed the guide's 5 s.
    assert titles(p95_tpot_s=0.9) == ["High latency: tokens come slowly"]


def test_long_requests_without_token_latencies_are_the_guides_high_latency():
    (finding,) = diagnose(Snapshot(**{**HEALTHY, "p95_latency_ms": 7200.0, "p95_ttft_s": None}))
    assert finding.severity == "warning" and "no data" in finding.evidence


def test_gpu_missing_when_asked_for():
    assert "A model asks for GPUs but none is visible" in titles(wants_gpu=True, gpu_tool=False)
    assert titles(wants_gpu=False, gpu_tool=False) == []


def test_critical_findings_come_first():
    findings = diagnose(Snapshot(**{**HEALTHY, "waiting": 2.0, "prometheus_up": False}))
    assert [f.severity for f in findings] == ["critical", "warning"]


def test_engine_error_lines_are_evidence():
    findings = diagnose(
        Snapshot(**{**HEALTHY, "error_lines": ["ERROR ... ERROR: Out of memory (model m)"]})
    )
    assert findings[0].title == "The engine logged start-up errors"
    assert "ERROR: Out of memory" in findings[0].evidence


def test_the_evidence_names_the_configured_addresses():
    findings = diagnose(
        Snapshot(
            **{
                **HEALTHY,
                "prometheus_up": False,
                "metrics_port_up": False,
                "prometheus_url": "http://127.0.0.1:29090",
                "ray_metrics_url": "http://127.0.0.1:28080/metrics",
            }
        )
    )
    evidence = {f.title: f.evidence for f in findings}
    assert evidence["Metrics not appearing: Prometheus does not answer"] == (
        "GET http://127.0.0.1:29090/api/v1/targets failed"
    )
    assert evidence["Metrics not appearing: Ray metrics port does not answer"] == (
        "GET http://127.0.0.1:28080/metrics failed"
    )
