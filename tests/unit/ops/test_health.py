"""`gpucluster health`'s checks (ops.health) against a fake platform on an httpx.MockTransport:
what each check reports, what it sends, and the next step when it fails."""

from __future__ import annotations

import json

import pytest

from gpucluster.ops.health import (
    CHECKS,
    FAIL,
    OK,
    RAY_HEAD_LOST,
    WARN,
    CheckResult,
    run_health,
)
from gpucluster.runtime.state import RAY_SD_FILE


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_a_healthy_platform_passes_every_check(fake_platform, platform_target):
    fake = fake_platform
    results = run_health(platform_target, fake.client())
    assert [r.name for r in results] == list(CHECKS)
    assert {r.name: (r.status, r.detail) for r in results} == {
        "api": (OK, f"models: {fake.MODEL}"),
        "nginx /health": (OK, f"200 {fake.MODEL}: HEALTHY"),
        "ray dashboard": (OK, "200"),
        "ray cluster": (OK, "1 alive node(s)"),
        "prometheus": (OK, "healthy; 1 Ray target(s) up"),
        "alertmanager": (OK, "healthy"),
        "gpu": (OK, "not used (every model runs on CPU)"),
        "generation": (OK, f"{fake.MODEL} generated 1 token"),
    }
    assert all(r.hint == "" and r.latency_ms >= 0 for r in results)


def test_the_checks_send_the_platforms_key_and_ray_token(fake_platform, platform_target):
    fake = fake_platform
    run_health(platform_target, fake.client())
    (models,) = fake.requests_to(fake.NGINX, "/v1/models")
    assert models.headers["Authorization"] == f"Bearer {fake.API_KEY}"
    (probe,) = fake.requests_to(fake.NGINX, "/v1/chat/completions")
    assert probe.headers["Authorization"] == f"Bearer {fake.API_KEY}"
    assert json.loads(probe.content)["max_tokens"] == 1
    (nodes,) = fake.requests_to(fake.RAY, "/api/v0/nodes")
    assert nodes.headers["Authorization"] == f"Bearer {fake.RAY_TOKEN}"
    (health,) = fake.requests_to(fake.NGINX, "/health")
    assert "Authorization" not in health.headers  # nginx's /health is open


def test_each_failure_says_what_it_saw_and_what_to_do(fake_platform, platform_target):
    fake = fake_platform
    fake.routes[(fake.NGINX, "GET", "/v1/models")] = fake.answer(401, {"error": {}})
    fake.routes[(fake.NGINX, "GET", "/health")] = fake.answer(
        503, {"error": {"message": f"model {fake.MODEL} is not ready"}}
    )
    fake.routes[(fake.NGINX, "POST", "/v1/chat/completions")] = fake.answer(500, text="boom")
    fake.down(fake.ALERTMANAGER)
    results = by_name(run_health(platform_target, fake.client()))
    assert (results["api"].status, results["api"].detail, results["api"].hint) == (
        FAIL,
        "401 from /v1/models",
        "set GPUCLUSTER_API_KEYS to a valid key for the checks",
    )
    assert (results["nginx /health"].status, results["nginx /health"].detail) == (
        FAIL,
        f"HTTP 503: model {fake.MODEL} is not ready",
    )
    assert results["nginx /health"].hint == "gpucluster logs serve; gpucluster logs engine"
    assert results["generation"].status == FAIL
    assert results["generation"].detail == "HTTP 500: boom"
    # no answer at all: what was tried, and the check's own next step
    alertmanager = results["alertmanager"]
    assert alertmanager.status == FAIL
    assert (
        alertmanager.detail == f"{platform_target.endpoints.alertmanager}/-/healthy: ConnectError"
    )
    assert alertmanager.hint == "gpucluster logs alertmanager"
    assert results["ray cluster"].status == OK


def test_a_ray_target_down_is_a_warning_naming_the_discovery_file(fake_platform, platform_target):
    fake = fake_platform
    down = [
        {
            "labels": {"job": "ray"},
            "scrapeUrl": "http://10.0.0.7:8080/metrics",
            "health": "down",
            "lastError": "connection refused",
        },
        {
            "labels": {"job": "nginx"},
            "scrapeUrl": "http://127.0.0.1:9113/metrics",
            "health": "up",
            "lastError": "",
        },
    ]
    fake.routes[(fake.PROMETHEUS, "GET", "/api/v1/targets")] = fake.answer(
        body={"status": "success", "data": {"activeTargets": down}}
    )
    prometheus = by_name(run_health(platform_target, fake.client()))["prometheus"]
    assert prometheus.status == WARN
    assert prometheus.detail == "Ray targets up: 0/1; down: http://10.0.0.7:8080/metrics"
    assert prometheus.hint.startswith(f"cat {RAY_SD_FILE}")


def test_a_lost_ray_head_names_the_recovery(fake_platform, platform_target):
    fake = fake_platform
    fake.down(fake.RAY)
    results = by_name(run_health(platform_target, fake.client()))
    for name in ("ray dashboard", "ray cluster"):
        assert (results[name].status, results[name].hint) == (FAIL, RAY_HEAD_LOST)


def test_a_cluster_without_an_alive_node_fails(fake_platform, platform_target):
    fake = fake_platform
    fake.routes[(fake.RAY, "GET", "/api/v0/nodes")] = fake.answer(
        body=fake.state_api_nodes(
            (fake.HEAD_IP, "DEAD", True, {"CPU": 8.0}),
        )
    )
    cluster = by_name(run_health(platform_target, fake.client()))["ray cluster"]
    assert (cluster.status, cluster.detail, cluster.hint) == (
        FAIL,
        "no alive Ray node",
        "gpucluster down && gpucluster up",
    )


def test_nothing_running_fails_every_http_check(fake_platform, platform_target):
    fake = fake_platform
    for port in (fake.NGINX, fake.RAY, fake.PROMETHEUS, fake.ALERTMANAGER):
        fake.down(port)
    results = by_name(run_health(platform_target, fake.client()))
    assert [name for name, r in results.items() if r.status != FAIL] == ["gpu"]
    assert results["api"].hint == "gpucluster logs serve; gpucluster up"
    assert results["generation"].detail.startswith("ConnectError")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"text": "<html>502 Bad Gateway</html>"}, "JSONDecodeError"),
        ({"body": {"object": "list"}}, "KeyError"),
    ],
)
def test_a_broken_answer_is_a_failed_check_not_a_crash(
    fake_platform, platform_target, answer, error
):
    fake = fake_platform
    fake.routes[(fake.NGINX, "GET", "/v1/models")] = fake.answer(200, **answer)
    api = by_name(run_health(platform_target, fake.client()))["api"]
    assert api.status == FAIL and api.detail.startswith(f"{error}: ")
    assert api.hint == "gpucluster logs serve; gpucluster up"
