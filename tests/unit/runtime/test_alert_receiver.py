"""The webhook receiver turns an Alertmanager notification into one JSON line per alert, and at
its start closes the alerts a stopped platform left firing in that log."""

from __future__ import annotations

import json
import threading

import httpx

from gpucluster.runtime.alert_receiver import (
    STOPPED_REASON,
    alert_lines,
    close_stale,
    labels_fingerprint,
    read_alerts,
    start,
    still_active_ids,
)

WAITING = {"alertname": "RequestsWaiting", "severity": "warning", "model": "m"}
KV = {"alertname": "KVCacheSaturation", "severity": "critical"}
DOWN = {"alertname": "ServiceDown", "severity": "critical"}


def webhook_alert(labels: dict, status: str = "firing", **fields) -> dict:
    """One alert of a webhook notification, as Alertmanager sends it."""
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} summary"},
        "startsAt": "2026-11-27T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T00:05:00Z",
        "fingerprint": labels_fingerprint(labels),
        **fields,
    }


def write_log(path, *alerts: dict, tail: str = "") -> None:
    path.write_text("".join(line + "\n" for line in alert_lines({"alerts": list(alerts)})) + tail)


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_alert_with_name_severity_and_annotations():
    notification = {
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "RequestsWaiting", "severity": "warning"},
                "annotations": {"summary": "waiting"},
                "startsAt": "2026-11-27T00:00:00Z",
            },
            {
                "status": "resolved",
                "labels": {"alertname": "KVCacheSaturation", "severity": "critical"},
            },
        ]
    }
    lines = [json.loads(line) for line in alert_lines(notification)]
    assert [(a["alertname"], a["severity"], a["status"]) for a in lines] == [
        ("RequestsWaiting", "warning", "firing"),
        ("KVCacheSaturation", "critical", "resolved"),
    ]
    assert lines[0]["annotations"] == {"summary": "waiting"}


def test_each_line_has_the_alerts_identity_and_end():
    sent = webhook_alert(WAITING, "resolved", fingerprint="0123456789abcdef")
    (line,) = [json.loads(x) for x in alert_lines({"alerts": [sent]})]
    assert line["fingerprint"] == "0123456789abcdef"  # Alertmanager's, as sent
    assert line["endsAt"] == "2026-11-27T00:05:00Z"
    # without one, the same hash of the labels Alertmanager computes (Prometheus's test vector)
    (line,) = [
        json.loads(x) for x in alert_lines({"alerts": [{"status": "firing", "labels": WAITING}]})
    ]
    assert line["fingerprint"] == labels_fingerprint(WAITING)
    assert labels_fingerprint({"name": "garland, briggs", "fear": "love is not enough"}) == (
        f"{5799056148416392346:016x}"
    )
    assert labels_fingerprint({}) == f"{14695981039346656037:016x}"


def test_read_alerts_gives_the_last_line_of_each_alert_and_skips_torn_lines(tmp_path):
    log = tmp_path / "alerts.log"
    write_log(
        log,
        webhook_alert(WAITING),
        webhook_alert(KV),
        webhook_alert(WAITING, "resolved"),
        tail='{"status": "fir',
    )
    alerts = read_alerts(log)
    assert [(a["alertname"], a["status"]) for a in alerts.values()] == [
        ("KVCacheSaturation", "firing"),
        ("RequestsWaiting", "resolved"),
    ]
    assert read_alerts(tmp_path / "none.log") == {}


def test_alerts_left_firing_get_a_closing_line_once(tmp_path):
    log = tmp_path / "alerts.log"
    write_log(
        log,
        webhook_alert(WAITING),
        webhook_alert(KV),
        webhook_alert(DOWN),
        webhook_alert(WAITING, "resolved"),
    )
    before = log.read_text()
    closed = close_stale(log, still_active={labels_fingerprint(DOWN)}, now="2026-11-28T09:00:00Z")
    # KV fired when the platform stopped; DOWN is one Alertmanager still has; WAITING resolved
    assert [c["alertname"] for c in closed] == ["KVCacheSaturation"]
    assert log.read_text().startswith(before)  # appended: the history stays
    closing = lines_of(log)[-1]
    assert closing == {
        **lines_of(log)[1],
        "status": "resolved",
        "received": "2026-11-28T09:00:00Z",
        "endsAt": None,
        "reason": STOPPED_REASON,
    }
    assert "platform was stopped" in closing["reason"] and "group_wait" in closing["reason"]
    assert {a["alertname"]: a["status"] for a in read_alerts(log).values()} == {
        "RequestsWaiting": "resolved",
        "KVCacheSaturation": "resolved",
        "ServiceDown": "firing",
    }
    assert close_stale(log, still_active={labels_fingerprint(DOWN)}) == []  # nothing twice
    assert [c["alertname"] for c in close_stale(log)] == ["ServiceDown"]


def test_a_closing_line_after_a_torn_line_is_a_line_of_its_own(tmp_path):
    log = tmp_path / "alerts.log"
    write_log(log, webhook_alert(KV), tail='{"status": "fir')
    (closed,) = close_stale(log)
    assert log.read_text().splitlines()[-2:] == [
        '{"status": "fir',
        json.dumps(closed, sort_keys=True),
    ]


def test_lines_logged_before_fingerprints_are_closed_by_the_same_identity(tmp_path):
    log = tmp_path / "alerts.log"
    old = json.loads(alert_lines({"alerts": [webhook_alert(KV)]})[0])
    del old["fingerprint"], old["endsAt"]  # a line as the receiver used to write it
    log.write_text(json.dumps(old) + "\n")
    assert close_stale(log, still_active={labels_fingerprint(KV)}) == []
    (closing,) = close_stale(log)
    assert closing["fingerprint"] == labels_fingerprint(KV)
    assert close_stale(tmp_path / "never-written.log") == []
    assert not (tmp_path / "never-written.log").exists()


def test_still_active_asks_alertmanager_and_is_empty_when_it_does_not_answer():
    api = [{"fingerprint": "aaaaaaaaaaaaaaaa", "labels": KV}, {"labels": DOWN}]
    seen = []

    def alertmanager(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=api)

    client = httpx.Client(transport=httpx.MockTransport(alertmanager))
    assert still_active_ids("http://am.test:19093/", client) == {
        "aaaaaaaaaaaaaaaa",
        labels_fingerprint(DOWN),
    }
    assert seen == ["http://am.test:19093/api/v2/alerts"]

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down = httpx.Client(transport=httpx.MockTransport(refused))
    assert still_active_ids("http://am.test:19093", down) == set()
    assert still_active_ids(None) == set()


def test_the_receiver_closes_what_its_log_left_firing_before_it_listens(tmp_path):
    log = tmp_path / "alerts.log"
    write_log(log, webhook_alert(KV), webhook_alert(DOWN))
    client = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=[{"labels": DOWN}]))
    )
    server = start("127.0.0.1", 0, log, "http://am.test:19093", client)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        assert [(a["alertname"], a["status"]) for a in lines_of(log)[2:]] == [
            ("KVCacheSaturation", "resolved")
        ]
        url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
        sent = {"alerts": [webhook_alert(KV)]}  # it fires again after the restart
        assert httpx.post(url, json=sent, timeout=10).status_code == 200
        assert [(a["alertname"], a["status"]) for a in read_alerts(log).values()] == [
            ("ServiceDown", "firing"),
            ("KVCacheSaturation", "firing"),
        ]
    finally:
        server.shutdown()
        server.server_close()
