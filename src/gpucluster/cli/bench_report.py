"""`gpucluster bench`'s report as a person reads it: throughput, latency percentiles, the
ratios B/A of a comparison, failures (`--json` prints the report itself)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from gpucluster.cli.common import err, fmt, out

LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms"))
RATIO_COLUMNS = (
    ("req/s", "request_throughput"),
    ("out tok/s", "output_throughput"),
    ("goodput", "goodput"),
    ("TTFT p50", "ttft_p50"),
    ("TPOT p50", "tpot_p50"),
    ("ITL p50", "itl_p50"),
    ("E2E p50", "e2e_p50"),
)


def print_report(report: dict[str, Any]) -> None:
    """The report as tables: throughput, latency percentiles, ratios B/A, failures."""
    compare = len(report["endpoints"]) > 1
    for e in report["endpoints"]:
        out.print(f"[bold]{e['name']}[/]: {e['url']}  model {e['model']}", highlight=False)
    w = report["workload"]
    shape = (
        f"{w['input_tokens']} in / {w['output_tokens']} out tokens (synthetic)"
        if w["kind"] == "synthetic"
        else f"{w['prompts']} prompts from file"
    )
    out.print(
        f"workload: {shape}, ignore_eos {'on' if w['ignore_eos'] else 'off'}", highlight=False
    )
    out.print(_throughput_table(report, compare))
    out.print(_latency_table(report, compare))
    if compare:
        out.print(_ratio_table(report))
    for run in report["runs"]:
        name = f"{run['endpoint']} {run['label']}" if compare else run["label"]
        for e in run["errors"]:
            err.print(
                f"[red]{name}: {e['count']} x {e['kind']}[/] e.g. {e['example']}",
                highlight=False,
                soft_wrap=True,
            )
        if run["without_usage"]:
            err.print(
                f"[yellow]warning:[/] {name}: {run['without_usage']} response(s) without "
                "usage: token counts need stream_options.include_usage support",
                highlight=False,
            )
    if report.get("chart"):
        out.print(f"chart: {report['chart']}", highlight=False)


def _run_columns(table: Table, compare: bool) -> None:
    table.add_column("run")
    if compare:
        table.add_column("endpoint")


def _run_cells(run: dict[str, Any], compare: bool) -> list[str]:
    return [run["label"], run["endpoint"]] if compare else [run["label"]]


def _throughput_table(report: dict[str, Any], compare: bool) -> Table:
    slo = report["slo"]
    given = [f"{k.removesuffix('_ms').upper()}<={v:g}ms" for k, v in slo.items() if v is not None]
    table = Table(title="throughput", title_justify="left")
    _run_columns(table, compare)
    headers = ["ok", "failed", "time s", "req/s", "out tok/s", "in/out tok"]
    if given:
        headers.append(f"goodput req/s ({', '.join(given)})")
    for header in headers:
        table.add_column(header, justify="right")
    for run in report["runs"]:
        cells = _run_cells(run, compare) + [
            str(run["ok"]),
            f"[red]{run['failed']}[/]" if run["failed"] else "0",
            fmt(run["duration_s"], "{:.2f}"),
            fmt(run["request_throughput"], "{:.2f}"),
            fmt(run["output_throughput"]),
            _tokens(run),
        ]
        if given:
            cells.append(f"{fmt(run['goodput'], '{:.2f}')} ({run['good']}/{run['requests']})")
        table.add_row(*cells)
    return table


def _tokens(run: dict[str, Any]) -> str:
    """Mean prompt/completion tokens per request, as the server counted them."""
    return f"{fmt(run['mean_input_tokens'], '{:.0f}')}/{fmt(run['mean_output_tokens'], '{:.0f}')}"


def _latency_table(report: dict[str, Any], compare: bool) -> Table:
    table = Table(title="latency (ms)", title_justify="left")
    _run_columns(table, compare)
    table.add_column("metric")
    for header in ("mean", "p50", "p90", "p95", "p99"):
        table.add_column(header, justify="right")
    for index, run in enumerate(report["runs"]):
        if index:
            table.add_section()
        for name, key in LATENCIES:
            s = run[key]
            table.add_row(
                *_run_cells(run, compare),
                name,
                *(fmt(s[q]) for q in ("mean", "p50", "p90", "p95", "p99")),
            )
    return table


def _ratio_table(report: dict[str, Any]) -> Table:
    table = Table(
        title="B / A (throughput: above 1 is B faster; latency: below 1 is B faster)",
        title_justify="left",
    )
    table.add_column("run")
    for header, _ in RATIO_COLUMNS:
        table.add_column(header, justify="right")
    for row in report["comparisons"]:
        ratios = row["ratios"]
        table.add_row(row["label"], *(fmt(ratios[key], "{:.2f}") for _, key in RATIO_COLUMNS))
    return table
