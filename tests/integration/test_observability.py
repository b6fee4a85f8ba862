"""Prometheus on the live platform: Ray discovered, every guide query and panel query has data,
the catalogue's exported names exist, and an alert travels to Alertmanager and the receiver."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
import yaml
from probes import as_checkable, eventually, query, serve_traffic_until_scraped, settle

from gpucluster.assets import RULES_DIR
from gpucluster.observability.catalogue import GUIDE_METRICS, GUIDE_QUERIES
from gpucluster.observability.dashboards import panel_queries

SD_FILE = "/tmp/ray/prom_metrics_service_discovery.json"


@pytest.fixture(scope="module")
def with_traffic(live, openai_client):
    """Serve a little traffic (streams and plain), then wait until Prometheus scraped it."""
    serve_traffic_until_scraped(live, openai_client, live.model)
    return live


def test_ray_targets_are_discovered_and_up(live):
    with open(SD_FILE) as handle:
        groups = json.load(handle)
    assert groups and groups[0]["labels"]["job"] == "ray"
    targets = httpx.get(f"{live.prometheus}/api/v1/targets", timeout=30).json()["data"][
        "activeTargets"
    ]
    ray = [t for t in targets if t["labels"]["job"] == "ray"]
    assert ray and all(t["health"] == "up" for t in ray), ray
    assert any(t["scrapeUrl"].endswith(":8080/metrics") for t in ray)


@pytest.mark.parametrize("expr", GUIDE_QUERIES)
def test_every_guide_query_returns_data(with_traffic, expr):
    assert eventually(lambda: query(with_traffic, as_checkable(expr))), expr


@pytest.mark.parametrize(
    "source",
    sorted({s for m in GUIDE_METRICS for s in m.sources}),
)
def test_every_exported_name_the_catalogue_relies_on_exists(with_traffic, source):
    # a Ray or vLLM upgrade that renames one of these must fail here, not blank the dashboards;
    # over the last 10 minutes, because Ray stops exporting an idle engine's gauges
    assert query(with_traffic, f'count(last_over_time({{__name__="{source}"}}[10m]))'), source


@pytest.mark.parametrize(("uid", "title", "expr"), panel_queries(), ids=lambda v: str(v)[:60])
def test_every_dashboard_panel_query_returns_data(with_traffic, uid, title, expr):
    assert eventually(lambda: query(with_traffic, expr)), (uid, title, expr)


@pytest.mark.parametrize(
    ("as_the_guide_writes", "textbook"),
    [
        (
            "avg(vllm:time_to_first_token_seconds)",
            (
                "sum(rate(ray_vllm_time_to_first_token_seconds_sum[5m]))"
                " / sum(rate(ray_vllm_time_to_first_token_seconds_count[5m]))"
            ),
        ),
        (
            "histogram_quantile(0.95, vllm:time_to_first_token_seconds)",
            (
                "histogram_quantile(0.95, sum by (le, model_name) "
                "(rate(ray_vllm_time_to_first_token_seconds_bucket[5m])))"
            ),
        ),
    ],
)
def test_histogram_names_read_as_the_guide_writes_them_give_textbook_values(
    with_traffic, as_the_guide_writes, textbook
):
    # Both at the instant the recording rule last ran: asked "now", the recorded series is up
    # to one evaluation interval old while the textbook form sees the newest samples.
    recorded = "max(timestamp(vllm:time_to_first_token_seconds))"
    last_run = eventually(
        lambda: query(with_traffic, recorded)
    )  # the rule's first run after traffic
    assert last_run, f"{recorded} never recorded"
    at = float(last_run[0]["value"][1])
    guide = float(query(with_traffic, as_the_guide_writes, at=at)[0]["value"][1])
    textbook_value = float(query(with_traffic, textbook, at=at)[0]["value"][1])
    assert guide == pytest.approx(textbook_value, rel=0.05)


def shipped_rule_with_a_short_for(alert: str) -> str:
    """The shipped alert rule `alert`, exactly as shipped but for a 5 s `for`, as a rule file."""
    shipped = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    (rule,) = [r for g in shipped["groups"] for r in g["rules"] if r.get("alert") == alert]
    return yaml.safe_dump(
        {"groups": [{"name": "test-overrides", "rules": [{**rule, "for": "5s"}]}]}
    )


@pytest.mark.timeout(
    2400
)  # its own waits: settle 840, waiting 120, diagnose 120, alert 180, load drained 600
@pytest.mark.saturates
def test_queueing_fires_an_alert_that_reaches_the_receiver(live, artifacts):
    """Saturate the engine: Prometheus sees waiting requests, `diagnose` reports the queueing,
    and the alert reaches Alertmanager and the platform's receiver."""
    settle(live)
    alerts_log = live.state_dir / "logs" / "alerts.log"
    # earlier load may have fired the shipped rule already: only deliveries from now on count
    seen = len(alerts_log.read_text().splitlines()) if alerts_log.exists() else 0
    rules_dir = live.state_dir / "prometheus" / "rules"
    (rules_dir / "test-overrides.yml").write_text(shipped_rule_with_a_short_for("RequestsWaiting"))
    assert httpx.post(f"{live.prometheus}/-/reload", timeout=30).status_code == 200
    stop = threading.Event()

    async def saturate() -> None:
        body = {
            "model": live.model,
            "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 256,
            "ignore_eos": True,
        }
        async with httpx.AsyncClient(timeout=600, headers=live.headers) as client:

            async def worker() -> None:
                while not stop.is_set():
                    await client.post(f"{live.api}/chat/completions", json=body)

            await asyncio.gather(*(worker() for _ in range(3 * live.max_num_seqs)))

    load = threading.Thread(target=asyncio.run, args=(saturate(),), daemon=True)
    load.start()
    try:
        waiting = eventually(lambda: query(live, "vllm:num_requests_waiting > 0"), timeout_s=120)
        assert waiting, "Prometheus never saw waiting requests"
        diagnosis = json.loads(live.cli("diagnose", "--json", timeout=120).stdout)
        assert "Requests are queueing" in [f["title"] for f in diagnosis["findings"]]

        def delivered() -> list[dict]:
            if not alerts_log.exists():
                return []
            lines = [
                json.loads(line) for line in alerts_log.read_text().splitlines()[seen:] if line
            ]
            return [
                a for a in lines if a["alertname"] == "RequestsWaiting" and a["status"] == "firing"
            ]

        assert eventually(delivered, timeout_s=180), "the alert never reached the receiver"
        in_alertmanager = httpx.get(f"{live.alertmanager}/api/v2/alerts", timeout=30).json()
        (sent,) = [a for a in in_alertmanager if a["labels"]["alertname"] == "RequestsWaiting"][:1]
        # the shipped annotations, rendered from the live series' labels
        assert f"of model {live.model} (replica " in sent["annotations"]["summary"], sent
        assert sent["annotations"]["runbook_url"] == "docs/runbooks/alerts.md#requestswaiting"
        (artifacts / "alerts-delivered.json").write_text(json.dumps(delivered(), indent=2))
    finally:
        stop.set()
        (rules_dir / "test-overrides.yml").unlink()
        httpx.post(f"{live.prometheus}/-/reload", timeout=30)
        load.join(timeout=600)
