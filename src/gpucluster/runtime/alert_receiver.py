"""The platform's own Alertmanager webhook receiver: logs every notification it gets.

`python -m gpucluster.runtime.alert_receiver HOST PORT LOGFILE`, run by the supervisor. Each
alert of each notification becomes one JSON line in LOGFILE (`gpucluster logs alerts`), so
that alerts work out of the box locally; real receivers (email, Slack, PagerDuty) are
configured in deploy/alertmanager/alertmanager.yml.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1 << 20


def alert_lines(notification: dict) -> list[str]:
    """One JSON line per alert of an Alertmanager webhook notification."""
    received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
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
                    "labels": labels,
                    "annotations": alert.get("annotations", {}),
                    "startsAt": alert.get("startsAt"),
                },
                sort_keys=True,
            )
        )
    return lines


def make_handler(log_path: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
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

        def do_GET(self) -> None:  # noqa: N802
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


def main(argv: list[str]) -> int:
    host, port, log_path = argv[1], int(argv[2]), Path(argv[3])
    server = ThreadingHTTPServer((host, port), make_handler(log_path))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
