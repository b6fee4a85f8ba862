"""The operator tools' Prometheus client: the scrape targets health, diagnose and the support
bundle read, from answers shaped like Prometheus' /api/v1/targets."""

from __future__ import annotations

import httpx
import pytest

from gpucluster.ops.prom import TARGETS_PATH, Prometheus, PrometheusUnavailable


def target(job: str, url: str, health: str) -> dict:
    return {
        "discoveredLabels": {"__address__": url.split("/")[2], "job": job},
        "labels": {"instance": url.split("/")[2], "job": job},
        "scrapePool": job,
        "scrapeUrl": url,
        "globalUrl": url,
        "lastError": "" if health == "up" else "connection refused",
        "lastScrape": "2026-01-01T00:00:00Z",
        "lastScrapeDuration": 0.01,
        "health": health,
        "scrapeInterval": "5s",
        "scrapeTimeout": "5s",
    }


TARGETS = {
    "status": "success",
    "data": {
        "activeTargets": [
            target("ray", "http://127.0.0.1:8080/metrics", "up"),
            target("ray", "http://10.0.0.7:8080/metrics", "down"),
            target("prometheus", "http://127.0.0.1:19090/metrics", "up"),
        ],
        "droppedTargets": [],
        "droppedTargetCounts": {"ray": 0},
    },
}


def prometheus(handler) -> Prometheus:
    return Prometheus("http://prom:9090/", httpx.Client(transport=httpx.MockTransport(handler)))


def test_targets_and_the_ray_jobs_ones():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=TARGETS)

    prom = prometheus(answer)
    assert [t["scrapeUrl"] for t in prom.targets()] == [
        t["scrapeUrl"] for t in TARGETS["data"]["activeTargets"]
    ]
    ray = prom.ray_targets()
    assert [(t["scrapeUrl"], t["health"]) for t in ray] == [
        ("http://127.0.0.1:8080/metrics", "up"),
        ("http://10.0.0.7:8080/metrics", "down"),
    ]
    assert seen == [TARGETS_PATH, TARGETS_PATH]
    assert prom.api(TARGETS_PATH) == TARGETS  # the body as sent, for the support bundle


def test_no_answer_is_unavailable_with_the_url_and_the_reason():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(PrometheusUnavailable) as raised:
        prometheus(refuse).targets()
    assert str(raised.value) == f"http://prom:9090{TARGETS_PATH}: ConnectError"
    assert raised.value.reason == "ConnectError"


@pytest.mark.parametrize(
    ("response", "says"),
    [
        (httpx.Response(503, text="Service Unavailable"), "JSONDecodeError"),
        (httpx.Response(500, json={"status": "error", "error": "boom"}), "boom"),
        (httpx.Response(200, json=[]), "no activeTargets"),
    ],
)
def test_an_answer_without_targets_is_unavailable(response, says):
    with pytest.raises(PrometheusUnavailable, match=says):
        prometheus(lambda request: response).targets()
