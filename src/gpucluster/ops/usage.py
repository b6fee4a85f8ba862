"""Usage totals per key or model, from the gatekeeper's usage log.

The gatekeeper writes one JSON object per request to `<state dir>/logs/usage.jsonl`:
`{"time", "request_id", "key", "model", "path", "status", "prompt_tokens",
"completion_tokens", "ttft_ms", "duration_ms", "refused"}`, where `refused` is null or the deny
code of a request the edge refused (401/429, no tokens). The log rotates like Python's
RotatingFileHandler: `usage.jsonl.1` is the newest rotated file, the highest number the oldest.

What a row counts: every request that reached the edge (refused ones included, as the
`gpucluster_key_requests_total` counter does); refusals by deny code; errors (4xx/5xx other
than refusals); tokens as the engine reported them. Duration and TTFT percentiles are over the
requests the edge let through, since a refusal takes no time worth reporting.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from gpucluster.errors import InputError
from gpucluster.ops.bench.stats import percentile

GROUPINGS = ("key", "model")
NO_NAME = "-"  # the log's name for "no valid key" (and what a missing name is shown as)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)([smhdw])")


class UsageError(InputError, ValueError):
    """A bad `--since` or `--by`; the message says what to write instead."""


def parse_since(text: str) -> timedelta:
    """`30m`, `24h`, `7d` (also `s` and `w`) as a timedelta; UsageError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise UsageError(
            f"--since: {text!r} is not a duration; write a whole number and a unit "
            "(s, m, h, d or w), e.g. 30m, 24h or 7d"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def check_grouping(by: str) -> str:
    """`by` when it is a grouping `usage` knows; UsageError otherwise."""
    if by not in GROUPINGS:
        raise UsageError(f"--by: {by!r} is not a grouping; choose one of: {', '.join(GROUPINGS)}")
    return by


def log_files(current: Path) -> list[Path]:
    """The usage log's files that exist, oldest first: `usage.jsonl.N` ... `.1`, `usage.jsonl`."""
    rotated = []
    for path in current.parent.glob(f"{current.name}.*"):
        suffix = path.name[len(current.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    files = [path for _, path in sorted(rotated, reverse=True)]
    return files + [current] if current.is_file() else files


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the usage log, as far as the totals need it."""

    time: datetime
    key: str
    model: str
    status: int | None
    refused: str | None
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    duration_ms: float | None

    def name(self, by: str) -> str:
        return self.key if by == "key" else self.model


def parse_entry(line: str) -> Entry | None:
    """The entry of one log line; None when it is not a usage record (torn or foreign)."""
    try:
        data = json.loads(line)
        when = datetime.fromisoformat(data["time"])
    except (ValueError, KeyError, TypeError):
        return None
    if when.tzinfo is None:  # the gatekeeper writes UTC; a naive time is taken as such
        when = when.replace(tzinfo=UTC)
    return Entry(
        time=when,
        key=_text(data.get("key")),
        model=_text(data.get("model")),
        status=_number(data.get("status"), int),
        refused=str(data["refused"]) if data.get("refused") else None,
        prompt_tokens=_number(data.get("prompt_tokens"), int) or 0,
        completion_tokens=_number(data.get("completion_tokens"), int) or 0,
        ttft_ms=_number(data.get("ttft_ms"), float),
        duration_ms=_number(data.get("duration_ms"), float),
    )


def _text(value: Any) -> str:
    return str(value) if value not in (None, "") else NO_NAME


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)


@dataclass
class Scan:
    """The entries of the window, and what could not be read."""

    entries: list[Entry]
    files: list[Path]
    unreadable_lines: int = 0


def read_usage(current: Path, start: datetime) -> Scan:
    """Every entry at or after `start` in the usage log and its rotated files.

    A file last written before `start` holds nothing newer, so it is not read. All files are
    opened before any is read: a rotation while they are read renames them, but the open
    handles keep reading the files as they were, so no line is counted twice (only a rotation
    in the moment between listing and opening could still shift one). The last line of a file
    may be a write in progress (no newline yet): it is skipped without being called
    unreadable. OSError when a file exists but cannot be read.
    """
    scan = Scan(entries=[], files=[])
    with ExitStack() as stack:
        handles: list[IO[str]] = []
        for path in log_files(current):
            try:
                if path.stat().st_mtime < start.timestamp():
                    continue
                handles.append(stack.enter_context(path.open(encoding="utf-8", errors="replace")))
            except FileNotFoundError:  # rotated away between listing and opening
                continue
            scan.files.append(path)
        for handle in handles:
            _read_file(handle, start, scan)
    return scan


def _read_file(handle: IO[str], start: datetime, scan: Scan) -> None:
    for line in handle:
        if not line.strip():
            continue
        entry = parse_entry(line)
        if entry is None:
            if line.endswith("\n"):
                scan.unreadable_lines += 1
            continue
        if entry.time >= start:
            scan.entries.append(entry)


@dataclass
class UsageRow:
    """The totals of one key or model (or of everything)."""

    name: str
    requests: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    durations_ms: list[float] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, entry: Entry) -> None:
        """Count one request."""
        self.requests += 1
        if entry.refused:
            self.refused[entry.refused] += 1
            return
        if entry.status is not None and entry.status >= 400:
            self.errors += 1
        self.prompt_tokens += entry.prompt_tokens
        self.completion_tokens += entry.completion_tokens
        if entry.duration_ms is not None:
            self.durations_ms.append(entry.duration_ms)
        if entry.ttft_ms is not None:
            self.ttfts_ms.append(entry.ttft_ms)

    def as_dict(self) -> dict[str, Any]:
        """The row for --json (percentiles in ms, rounded to 0.1 ms; null without data)."""
        return {
            "name": self.name,
            "requests": self.requests,
            "refused": sum(self.refused.values()),
            "refused_by_code": dict(sorted(self.refused.items())),
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "duration_ms_p50": _rounded(percentile(self.durations_ms, 50)),
            "duration_ms_p95": _rounded(percentile(self.durations_ms, 95)),
            "ttft_ms_p50": _rounded(percentile(self.ttfts_ms, 50)),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def group(entries: list[Entry], by: str) -> tuple[list[UsageRow], UsageRow]:
    """One row per key or model, most tokens first (then most requests), and the total."""
    rows: dict[str, UsageRow] = {}
    total = UsageRow("total")
    for entry in entries:
        name = entry.name(by)
        rows.setdefault(name, UsageRow(name)).add(entry)
        total.add(entry)
    ordered = sorted(rows.values(), key=lambda r: (-r.total_tokens, -r.requests, r.name))
    return ordered, total


@dataclass(frozen=True)
class UsageReport:
    """`gpucluster usage`: the totals of one window of the usage log."""

    log: Path
    by: str
    since: str
    start: datetime
    end: datetime
    files: list[Path]
    rows: list[UsageRow]
    total: UsageRow
    unreadable_lines: int

    @property
    def empty(self) -> bool:
        return not self.rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "log": str(self.log),
            "files": [str(path) for path in self.files],
            "by": self.by,
            "since": self.since,
            "from": iso_utc(self.start),
            "to": iso_utc(self.end),
            "groups": [row.as_dict() for row in self.rows],
            "total": self.total.as_dict(),
            "unreadable_lines": self.unreadable_lines,
        }


def iso_utc(when: datetime) -> str:
    """`when` as ISO 8601 in UTC to the second, e.g. `2025-06-01T12:00:00Z`."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def usage_report(log: Path, since: str, by: str, now: datetime | None = None) -> UsageReport:
    """The usage of the last `since` (e.g. `24h`) by `by` (key or model) from `log`.

    UsageError for a bad `since` or `by`; OSError when a log file cannot be read.
    """
    window = parse_since(since)
    by = check_grouping(by)
    end = now or datetime.now(UTC)
    start = end - window
    scan = read_usage(log, start)
    rows, total = group(scan.entries, by)
    return UsageReport(log, by, since, start, end, scan.files, rows, total, scan.unreadable_lines)
