"""What the gatekeeper records of each request: the usage log and each key's last use.

The usage log (`logs/usage.jsonl`) has one JSON object a line, rotated like a logging
RotatingFileHandler (50 MiB x 5). A line carries names and numbers only: never a key, never a
prompt. `keys-last-used.json` maps key names to the time of their last admitted request; it is
rewritten at most every few seconds, not on every request.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from gpucluster.config.keys import write_private_file

USAGE_LOG_BYTES = 50 * 1024 * 1024
USAGE_LOG_BACKUPS = 5
LAST_USED_EVERY_S = 5.0


def iso_utc(epoch_s: float) -> str:
    """`epoch_s` as ISO-8601 UTC with milliseconds: 2025-01-31T12:00:00.123Z."""
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass(frozen=True)
class Usage:
    """One request as a replica reports it and the usage log keeps it. In the log, `key` is a
    key name or "-" and `model` a configured model id or "other" (observability.key_metrics)."""

    request_id: str | None
    key: str | None
    model: str | None
    path: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    duration_ms: float | None = None


class UsageLog:
    """Appends one JSON line a request to a rotating file."""

    def __init__(
        self, path: Path, max_bytes: int = USAGE_LOG_BYTES, backups: int = USAGE_LOG_BACKUPS
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the handler alone, not a logger: no global logger state, nothing propagates elsewhere
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, when: float, usage: Usage, refused: str | None = None) -> None:
        """Append one line (rotating first when the file is full): `usage` at `when` (epoch s);
        `refused` is the deny code of a request the gatekeeper turned away."""
        line = json.dumps(
            {"time": iso_utc(when), **asdict(usage), "refused": refused}, separators=(",", ":")
        )
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def close(self) -> None:
        self._handler.close()


class LastUsed:
    """Each key name's last use, written to `path` at most every `every_s` seconds."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        every_s: float = LAST_USED_EVERY_S,
    ) -> None:
        self.path = path
        self._clock = clock
        self._wall = wall
        self._every_s = every_s
        self._times = read_last_used(path)
        self._dirty = False
        self._written_at = float("-inf")

    def touch(self, name: str) -> None:
        """`name` was used now; the file follows within `every_s`."""
        self._times[name] = iso_utc(self._wall())
        self._dirty = True
        if self._clock() - self._written_at >= self._every_s:
            self.flush()

    def flush(self) -> None:
        """Write the file now if anything changed since it was written."""
        if self._dirty:
            write_private_file(self.path, json.dumps(self._times, indent=2, sort_keys=True) + "\n")
            self._dirty = False
            self._written_at = self._clock()


def read_last_used(path: Path) -> dict[str, str]:
    """{key name: ISO time of its last use}; empty when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(name): str(when) for name, when in data.items()}
