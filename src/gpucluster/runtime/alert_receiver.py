"""The platform's own Alertmanager webhook receiver: logs every notification it gets.

`python -m gpucluster.runtime.alert_receiver HOST PORT LOGFILE [ALERTMANAGER_URL]`, run by the
supervisor. Each alert of each notification becomes one JSON line in LOGFILE (`gpucluster logs
alerts`), so that alerts work out of the box locally; real receivers (email, Slack, PagerDuty)
are configured in deploy/alertmanager/alertmanager.yml.

Each line carries the alert's identity, Alertmanager's `fingerprint` (a hash of its labels), so
that the last line of each alert is its last known state (`read_alerts`). Alertmanager keeps
alerts in memory only: an alert still firing when the platform stopped never gets its
"resolved" notification. So at its start the receiver closes every alert the log leaves firing
(`close_stale`), except those the Alertmanager at ALERTMANAGER_URL, when it answers, still has
(it did not restart with the receiver, as in compose when only ray-serve restarts).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from gpucluster.errors import GpuClusterError

MAX_BODY = 1 << 20
ALERTMANAGER_TIMEOUT_S = 3.0

STOPPED_REASON = (
    "closed at the platform's start: the platform was stopped while this alert fired, and "
    "Alertmanager does not keep alerts across restarts, so no resolved notification came. "
    "If its condition still holds, Prometheus fires it again and Alertmanager sends it as "
    "firing after its group_wait."
)

# Alertmanager's fingerprint of a label set (Prometheus's labelSetToFingerprint): FNV-1a 64
# over each label name and value, sorted by name, each followed by the byte 0xff.
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


def labels_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of `labels`, as its webhook and API give it (16 hex digits)."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, str(labels[name])):
            for byte in [*part.encode("utf-8"), _SEPARATOR]:
                value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def alert_id(alert: dict) -> str:
    """An alert's stable identity: Alertmanager's `fingerprint`, else the same hash computed
    from its labels (lines written before the fingerprint was logged have none)."""
    return alert.get("fingerprint") or labels_fingerprint(alert.get("labels") or {})


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def alert_lines(notification: dict) -> list[str]:
    """One JSON line per alert of an Alertmanager webhook notification."""
    received = now_utc()
    lines = []
    for alert in notification.get("alerts", []):
        labels = alert.get("labels", {})
        lines.append(
            json.dumps(
                {
                    "received": received,
                    "status": alert.get("status"),
                    "alertname": labels.get("alertname"),
                    "severity": labels.get("severity"),
                    "fingerprint": alert_id(alert),
                    "labels": labels,
                    "annotations": alert.get("annotations", {}),
                    "startsAt": alert.get("startsAt"),
                    "endsAt": alert.get("endsAt"),
                },
                sort_keys=True,
            )
        )
    return lines


def read_alerts(log_path: Path) -> dict[str, dict]:
    """The last line of each alert in the log, by identity, in the order of those last lines
    (oldest first). Lines that are not JSON objects (a torn last line) are skipped."""
    last: dict[str, dict] = {}
    try:
        with log_path.open(encoding="utf-8", errors="replace") as log:
            for line in log:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    key = alert_id(record)
                    last.pop(key, None)  # moves it to the end: the order of last lines
                    last[key] = record
    except FileNotFoundError:
        pass
    return last


def close_stale(
    log_path: Path, still_active: Iterable[str] = (), now: str | None = None
) -> list[dict]:
    """Append a closing line (status resolved, with STOPPED_REASON) for every alert whose last
    line in the log is firing, except those whose identity is in `still_active` (alerts the
    running Alertmanager still has). Returns the lines written."""
    active = set(still_active)
    received = now or now_utc()
    closing = [
        {
            **record,
            "received": received,
            "status": "resolved",
            "fingerprint": key,
            "endsAt": None,  # unknown: it ended while nothing was watching
            "reason": STOPPED_REASON,
        }
        for key, record in read_alerts(log_path).items()
        if record.get("status") == "firing" and key not in active
    ]
    if closing:
        with log_path.open("a", encoding="utf-8") as log:
            if not _ends_a_line(log_path):
                log.write("\n")  # after a torn last line, not glued to it
            for record in closing:
                log.write(json.dumps(record, sort_keys=True) + "\n")
    return closing


def _ends_a_line(path: Path) -> bool:
    """Whether `path` is empty or ends with a newline."""
    with path.open("rb") as file:
        if file.seek(0, 2) == 0:
            return True
        file.seek(-1, 2)
        return file.read(1) == b"\n"


class AlertmanagerUnavailable(GpuClusterError, RuntimeError):
    """Alertmanager did not answer, or not with a list of alerts."""

    next_step = "`gpucluster logs alertmanager`"


def active_alerts(
    alertmanager_url: str,
    client: httpx.Client | None = None,
    timeout_s: float = ALERTMANAGER_TIMEOUT_S,
) -> list[dict]:
    """The alerts Alertmanager has now (`GET /api/v2/alerts`: firing ones, silenced or not)."""
    url = f"{alertmanager_url.rstrip('/')}/api/v2/alerts"
    try:
        if client is None:
            response = httpx.get(url, timeout=timeout_s)
        else:
            response = client.get(url, timeout=timeout_s)
        response.raise_for_status()
        alerts = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise AlertmanagerUnavailable(f"{url}: {type(exc).__name__}") from None
    if not isinstance(alerts, list):
        raise AlertmanagerUnavailable(f"{url}: not a list of alerts")
    return alerts


def still_active_ids(alertmanager_url: str | None, client: httpx.Client | None = None) -> set[str]:
    """Identities of the alerts the Alertmanager at `alertmanager_url` still has; none when it
    is not given or does not answer (it is starting with the receiver, so it has none yet)."""
    if not alertmanager_url:
        return set()
    try:
        return {alert_id(a) for a in active_alerts(alertmanager_url, client)}
    except AlertmanagerUnavailable:
        return set()


def make_handler(log_path: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._reply(400, b'{"error": "body required, at most 1 MiB"}')
                return
            try:
                notification = json.loads(self.rfile.read(length))
            except ValueError:
                self._reply(400, b'{"error": "not JSON"}')
                return
            with log_path.open("a", encoding="utf-8") as log:
                for line in alert_lines(notification):
                    log.write(line + "\n")
            self._reply(200, b'{"status": "ok"}')

        def do_GET(self) -> None:
            self._reply(200, b'{"status": "ok"}')

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # the alert log is the record

    return Handler


def start(
    host: str,
    port: int,
    log_path: Path,
    alertmanager_url: str | None = None,
    client: httpx.Client | None = None,
) -> ThreadingHTTPServer:
    """Close the alerts the log leaves firing (but those Alertmanager still has), then listen."""
    for record in close_stale(log_path, still_active_ids(alertmanager_url, client)):
        print(
            f"closed {record.get('alertname')} ({record['fingerprint']}): the log left it firing",
            flush=True,
        )
    return ThreadingHTTPServer((host, port), make_handler(log_path))


def main(argv: list[str]) -> int:
    host, port, log_path = argv[1], int(argv[2]), Path(argv[3])
    start(host, port, log_path, argv[4] if len(argv) > 4 else None).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
