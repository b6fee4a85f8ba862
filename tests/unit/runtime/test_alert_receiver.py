"""The webhook receiver turns an Alertmanager notification into one JSON line per alert."""

from __future__ import annotations

import json

from gpucluster.runtime.alert_receiver import alert_lines


def test_one_line_per_alert_with_name_severity_and_annotations():
    notification = {
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "RequestsWaiting", "severity": "warning"},
                "annotations": {"summary": "waiting"},
                "startsAt": "2026-11-27T00:00:00Z",
            },
            {"status": "resolved", "labels": {"alertname": "KVCacheSaturation", "severity": "critical"}},
        ]
    }
    lines = [json.loads(line) for line in alert_lines(notification)]
    assert [(a["alertname"], a["severity"], a["status"]) for a in lines] == [
        ("RequestsWaiting", "warning", "firing"),
        ("KVCacheSaturation", "critical", "resolved"),
    ]
    assert lines[0]["annotations"] == {"summary": "waiting"}
