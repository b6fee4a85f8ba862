"""`gpucluster usage`: requests, refusals, errors, tokens and latency per key or model.

Registered by the main app with `app.command("usage")(usage)`. Reads the gatekeeper's usage log
under the state dir (ops.usage). Exit codes: 0 ok (also when nothing is logged yet), 1 the log
cannot be read, 2 a bad option or configuration.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from gpucluster.cli.common import (
    ConfigOption,
    JsonOption,
    emit,
    fail,
    fmt,
    out,
)
from gpucluster.config import load_config
from gpucluster.ops.usage import (
    GROUPINGS,
    UsageReport,
    UsageRow,
    iso_utc,
    log_files,
    usage_report,
)
from gpucluster.runtime.state import StateDir

COLUMNS = (
    "requests",
    "refused",
    "errors",
    "prompt\ntokens",
    "completion\ntokens",
    "total\ntokens",
    "p50\nms",
    "p95\nms",
    "TTFT\np50 ms",
)


def usage(
    since: Annotated[
        str, typer.Option(help="How far back: a whole number and s, m, h, d or w (30m, 24h, 7d).")
    ] = "24h",
    by: Annotated[str, typer.Option(help=f"Group by {' or '.join(GROUPINGS)}.")] = "key",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Usage per API key name (or model) from the usage log: requests, refusals, errors,
    prompt/completion tokens, duration p50/p95 and TTFT p50, with a total row."""
    cfg = load_config(config)
    log = StateDir(cfg.platform.state_dir).usage_log
    try:
        report = usage_report(log, since, by)  # UsageError (--since, --by): exit 2
    except OSError as exc:
        fail(f"cannot read the usage log: {exc}; check the state dir's permissions", 1, as_json)
    note = _note(report)
    if as_json:
        emit({"ok": True, **report.as_dict(), "note": note})
        return
    if report.empty:
        out.print(note, highlight=False, soft_wrap=True)  # paths stay copyable
        return
    out.print(_table(report))
    refusals = _refusals(report)
    if refusals:
        out.print(f"refused by code: {refusals}", highlight=False)
    if note:
        out.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def _note(report: UsageReport) -> str | None:
    """What an operator should know besides the numbers: why there are none, or skipped lines."""
    if report.empty and not log_files(report.log):
        return (
            f"No usage recorded yet: {report.log} does not exist (the gatekeeper writes it "
            "once requests reach the platform)."
        )
    if report.empty:
        return f"No requests in the last {report.since} (log: {report.log})."
    if report.unreadable_lines:
        return f"{report.unreadable_lines} line(s) of the usage log were not usage records."
    return None


def _table(report: UsageReport) -> Table:
    # A light box: ten columns fit 80 characters, and names are never cut.
    table = Table(
        title=f"Usage by {report.by}, last {report.since} (since {iso_utc(report.start)})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        show_edge=False,
    )
    table.add_column(report.by, no_wrap=True)
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for row in report.rows:
        table.add_row(*_cells(row))
    table.add_section()
    table.add_row(*_cells(report.total), style="bold")
    return table


def _cells(row: UsageRow) -> list[str]:
    data = row.as_dict()
    counts = ("requests", "refused", "errors", "prompt_tokens", "completion_tokens", "total_tokens")
    figures = ("duration_ms_p50", "duration_ms_p95", "ttft_ms_p50")
    return [
        row.name,
        *(f"{data[name]:,}" for name in counts),
        *(fmt(data[name], "{:,.0f}") for name in figures),
    ]


def _refusals(report: UsageReport) -> str | None:
    """Refusals by deny code per row, e.g. `team-a: quota_exceeded 3; -: invalid_api_key 5`."""
    parts = [
        f"{row.name}: " + ", ".join(f"{code} {n}" for code, n in sorted(row.refused.items()))
        for row in report.rows
        if row.refused
    ]
    return "; ".join(parts) or None
