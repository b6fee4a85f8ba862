"""`gpucluster alerts`: each alert's current state.

Two sources: what Alertmanager has now (`GET /api/v2/alerts`: the alerts firing at this
moment), and the platform's alert log (`gpucluster logs alerts`), whose last line for each
alert is its last known state: firing, resolved by Alertmanager, or closed by the receiver at
the platform's start because the platform was stopped while it fired (the line's `reason`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from gpucluster.runtime.alert_receiver import (
    AlertmanagerUnavailable,
    active_alerts,
    alert_id,
    read_alerts,
)

NAMING_LABELS = ("alertname", "severity")


def other_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels that tell two alerts of the same name apart (model, replica, ...)."""
    return {k: v for k, v in sorted(labels.items()) if k not in NAMING_LABELS}


@dataclass(frozen=True)
class ActiveAlert:
    """An alert Alertmanager has now."""

    alertname: str
    severity: str
    labels: dict[str, str]  # besides alertname and severity
    state: str  # Alertmanager's: active, suppressed (silenced or inhibited), unprocessed
    since: str | None
    summary: str
    fingerprint: str


@dataclass(frozen=True)
class LoggedAlert:
    """An alert's last line in the alert log."""

    alertname: str
    severity: str
    labels: dict[str, str]  # besides alertname and severity
    status: str  # firing or resolved
    logged: str | None  # when that line was written
    since: str | None
    detail: str  # why it was closed (`reason`), else its summary
    fingerprint: str
    active_now: bool | None  # whether Alertmanager has it now; None when it did not answer


@dataclass
class AlertsReport:
    alertmanager: str
    log: str
    active: list[ActiveAlert] = field(default_factory=list)
    recent: list[LoggedAlert] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _active(alert: dict) -> ActiveAlert:
    labels = alert.get("labels") or {}
    return ActiveAlert(
        alertname=labels.get("alertname", "?"),
        severity=labels.get("severity", ""),
        labels=other_labels(labels),
        state=(alert.get("status") or {}).get("state", "active"),
        since=alert.get("startsAt"),
        summary=(alert.get("annotations") or {}).get("summary", ""),
        fingerprint=alert_id(alert),
    )


def _logged(record: dict, active: set[str] | None) -> LoggedAlert:
    labels = record.get("labels") or {}
    key = alert_id(record)
    return LoggedAlert(
        alertname=record.get("alertname") or labels.get("alertname", "?"),
        severity=record.get("severity") or labels.get("severity", ""),
        labels=other_labels(labels),
        status=record.get("status") or "?",
        logged=record.get("received"),
        since=record.get("startsAt"),
        detail=record.get("reason") or (record.get("annotations") or {}).get("summary", ""),
        fingerprint=key,
        active_now=None if active is None else key in active,
    )


def collect_alerts(
    alertmanager_url: str, log_path: Path, limit: int = 20, client: httpx.Client | None = None
) -> AlertsReport:
    """Alertmanager's alerts now, and the `limit` alerts last logged (newest first)."""
    report = AlertsReport(alertmanager=alertmanager_url, log=str(log_path))
    active_ids: set[str] | None = None
    try:
        active = [_active(a) for a in active_alerts(alertmanager_url, client)]
        report.active = sorted(active, key=lambda a: (a.severity != "critical", a.since or ""))
        active_ids = {a.fingerprint for a in report.active}
    except AlertmanagerUnavailable as exc:
        report.problems.append(
            f"Alertmanager did not answer ({exc}): is the platform up? gpucluster logs alertmanager"
        )
    logged = list(read_alerts(log_path).values())[-limit:]
    report.recent = [_logged(record, active_ids) for record in reversed(logged)]
    return report
