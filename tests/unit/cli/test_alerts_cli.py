"""`gpucluster alerts` and `gpucluster logs alerts` as people and scripts see them."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from gpucluster.cli.main import app
from gpucluster.ops import alerts as alerts_ops
from gpucluster.runtime.alert_receiver import alert_lines, close_stale, labels_fingerprint

KV = {"alertname": "KVCacheSaturation", "severity": "critical", "model": "m"}
WAITING = {"alertname": "RequestsWaiting", "severity": "warning", "model": "m"}


@pytest.fixture
def log(tmp_path, monkeypatch):
    """The alert log of a platform stopped while KV fired, then started again."""
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    path = tmp_path / "state" / "logs" / "alerts.log"
    path.parent.mkdir(parents=True)
    sent = [{"status": "firing", "labels": KV, "annotations": {"summary": "KV cache full"}}]
    path.write_text(alert_lines({"alerts": sent})[0] + "\n")
    close_stale(path)
    return path


@pytest.fixture
def alertmanager(monkeypatch):
    """Alertmanager's API behind a MockTransport: set `.alerts` (None: it does not answer)."""

    class Fake:
        def __init__(self) -> None:
            self.alerts: list[dict] | None = []
            self.urls: list[str] = []

        def handle(self, request: httpx.Request) -> httpx.Response:
            self.urls.append(str(request.url))
            if self.alerts is None:
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(200, json=self.alerts)

    fake = Fake()
    client = httpx.Client(transport=httpx.MockTransport(fake.handle))
    real = alerts_ops.active_alerts
    monkeypatch.setattr(alerts_ops, "active_alerts", lambda url, _client=None: real(url, client))
    return fake


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_json_has_what_fires_now_and_the_logs_last_states(log, alertmanager):
    alertmanager.alerts = [
        {
            "labels": WAITING,
            "annotations": {"summary": "queueing"},
            "startsAt": "2026-11-28T09:00:00Z",
            "status": {"state": "active"},
            "fingerprint": labels_fingerprint(WAITING),
        }
    ]
    result = run("alerts", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["problems"] == []
    assert alertmanager.urls == ["http://127.0.0.1:19093/api/v2/alerts"]  # the config's port
    assert [(a["alertname"], a["summary"]) for a in data["active"]] == [
        ("RequestsWaiting", "queueing")
    ]
    (logged,) = data["recent"]
    assert (logged["alertname"], logged["status"], logged["active_now"]) == (
        "KVCacheSaturation",
        "resolved",
        False,
    )
    assert "platform was stopped" in logged["detail"]
    assert data["log"] == str(log)


def test_tables_for_people(log, alertmanager):
    result = run("alerts")
    assert result.exit_code == 0, result.output
    assert "No alert fires now" in result.stdout
    assert "KVCacheSaturation" in result.stdout and "resolved" in result.stdout
    assert "platform was stopped" in result.stdout
    # what the alerts say is shown as is, not read as rich markup
    alertmanager.alerts = [{"labels": WAITING, "annotations": {"summary": "queue [bold]deep[/]"}}]
    result = run("alerts")
    assert result.exit_code == 0, result.output
    assert "Firing now" in result.stdout and "queue [bold]deep[/]" in result.stdout


def test_the_logs_newest_alerts_come_first(log, alertmanager):
    with log.open("a") as file:
        file.write(alert_lines({"alerts": [{"status": "firing", "labels": WAITING}]})[0] + "\n")
    result = run("alerts", "-n", "1")
    assert result.exit_code == 0, result.output
    assert "RequestsWaiting" in result.stdout
    assert "KVCacheSaturation" not in result.stdout


def test_alertmanager_down_exits_1_and_still_shows_the_log(log, alertmanager):
    alertmanager.alerts = None
    result = run("alerts", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and "Alertmanager did not answer" in data["problems"][0]
    assert data["recent"][0]["active_now"] is None
    result = run("alerts")
    assert result.exit_code == 1
    assert "Alertmanager did not answer" in result.stderr and "KVCacheSaturation" in result.stdout


def test_logs_alerts_keeps_the_raw_json_lines(log):
    result = run("logs", "alerts")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"==> {log} <=="
    assert [json.loads(line)["status"] for line in lines[1:]] == ["firing", "resolved"]
    assert "gpucluster alerts" in result.stderr  # the pointer goes to stderr: greps see JSON only
