"""`gpucluster alerts`'s report: Alertmanager's alerts now (its API, here a MockTransport) and
each alert's last state in the alert log."""

from __future__ import annotations

import json

import httpx

from gpucluster.ops.alerts import collect_alerts
from gpucluster.runtime.alert_receiver import alert_lines, close_stale, labels_fingerprint

AM = "http://am.test:19093"
WAITING = {"alertname": "RequestsWaiting", "severity": "warning", "model": "m", "replica": "r1"}
KV = {"alertname": "KVCacheSaturation", "severity": "critical", "model": "m"}
DOWN = {"alertname": "ServiceDown", "severity": "critical"}


def api_alert(labels: dict, state: str = "active", summary: str = "") -> dict:
    """One alert of Alertmanager's GET /api/v2/alerts."""
    return {
        "labels": labels,
        "annotations": {"summary": summary or f"{labels['alertname']} summary"},
        "startsAt": "2026-11-28T09:00:00.000Z",
        "endsAt": "2026-11-28T09:04:00.000Z",
        "fingerprint": labels_fingerprint(labels),
        "status": {"state": state, "silencedBy": [], "inhibitedBy": []},
        "receivers": [{"name": "platform-log"}],
        "updatedAt": "2026-11-28T09:00:30.000Z",
    }


def alertmanager(alerts: list[dict] | None) -> httpx.Client:
    """A client whose Alertmanager answers `alerts`, or refuses connections when None."""

    def handle(request: httpx.Request) -> httpx.Response:
        if alerts is None:
            raise httpx.ConnectError("connection refused", request=request)
        assert request.url.path == "/api/v2/alerts"
        return httpx.Response(200, json=alerts)

    return httpx.Client(transport=httpx.MockTransport(handle))


def log_with(path, *notifications: list[dict]) -> None:
    path.write_text(
        "".join(line + "\n" for alerts in notifications for line in alert_lines({"alerts": alerts}))
    )


def webhook(labels: dict, status: str = "firing") -> dict:
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "s"},
        "fingerprint": labels_fingerprint(labels),
    }


def test_firing_now_and_the_last_state_of_each_logged_alert(tmp_path):
    log = tmp_path / "alerts.log"
    log_with(log, [webhook(KV)], [webhook(WAITING)], [webhook(KV, "resolved")])
    firing = [api_alert(WAITING), api_alert(DOWN, "suppressed")]
    report = collect_alerts(AM, log, client=alertmanager(firing))
    assert report.problems == []
    # critical first
    assert [(a.alertname, a.state) for a in report.active] == [
        ("ServiceDown", "suppressed"),
        ("RequestsWaiting", "active"),
    ]
    assert report.active[1].labels == {"model": "m", "replica": "r1"}
    assert report.active[1].summary == "RequestsWaiting summary"
    # newest first, one row per alert
    assert [(a.alertname, a.status, a.active_now) for a in report.recent] == [
        ("KVCacheSaturation", "resolved", False),
        ("RequestsWaiting", "firing", True),
    ]
    json.dumps(report.as_dict())  # --json prints it


def test_an_alert_closed_at_start_says_why(tmp_path):
    log = tmp_path / "alerts.log"
    log_with(log, [webhook(KV)])
    close_stale(log)  # the receiver's start after the platform stopped while KV fired
    (row,) = collect_alerts(AM, log, client=alertmanager([])).recent
    assert (row.status, row.active_now) == ("resolved", False)
    assert "platform was stopped" in row.detail


def test_limit_keeps_the_newest_alerts(tmp_path):
    log = tmp_path / "alerts.log"
    log_with(log, [webhook(KV)], [webhook(WAITING)], [webhook(DOWN)])
    report = collect_alerts(AM, log, limit=2, client=alertmanager([]))
    assert [a.alertname for a in report.recent] == ["ServiceDown", "RequestsWaiting"]


def test_alertmanager_down_is_a_problem_and_the_log_is_still_shown(tmp_path):
    log = tmp_path / "alerts.log"
    log_with(log, [webhook(KV)])
    report = collect_alerts(AM, log, client=alertmanager(None))
    assert report.active == []
    assert [(a.alertname, a.active_now) for a in report.recent] == [("KVCacheSaturation", None)]
    (problem,) = report.problems
    assert "Alertmanager did not answer" in problem and "gpucluster logs alertmanager" in problem


def test_no_log_yet(tmp_path):
    report = collect_alerts(AM, tmp_path / "alerts.log", client=alertmanager([]))
    assert (report.active, report.recent, report.problems) == ([], [], [])
