"""`gpucluster health`, `status`, `diagnose` and `support-bundle`: how the running platform is
doing, read over HTTP as an operator would (ops.health, ops.status, ops.diagnose, ops.bundle)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from gpucluster.cli.common import ConfigOption, JsonOption, emit, err, fmt, out
from gpucluster.config import load_config


def health(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Check every component and generate one token end to end; exit 1 if a check fails."""
    from rich.table import Table

    from gpucluster.ops.health import FAIL, OK, run_health
    from gpucluster.ops.target import load_target

    cfg = load_config(config)
    started = time.perf_counter()
    results = run_health(load_target(cfg))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if r.status == FAIL]
    if as_json:
        emit(
            {
                "ok": not failed,
                "seconds": round(elapsed, 2),
                "checks": [r.as_dict() for r in results],
            }
        )
    else:
        table = Table(title=f"gpu-cluster health ({elapsed:.1f} s)")
        for column in ("check", "status", "detail", "ms", "next step"):
            table.add_column(column, overflow="fold")
        colour = {OK: "green", FAIL: "red"}
        for r in results:
            style = colour.get(r.status, "yellow")
            table.add_row(
                r.name, f"[{style}]{r.status}[/]", r.detail, f"{r.latency_ms:.0f}", r.hint
            )
        out.print(table)
    if failed:
        raise typer.Exit(1)


def _status_tables(status) -> list:
    from rich.table import Table

    nodes = Table(title="Nodes")
    for column in ("address", "state", "CPUs", "GPUs", "CPU %", "memory GiB"):
        nodes.add_column(column)
    for n in status.nodes:
        memory = f"{fmt(n.mem_used_gib)} / {fmt(n.mem_total_gib)}"
        nodes.add_row(n.address, n.state, f"{n.cpus:g}", f"{n.gpus:g}", fmt(n.cpu_percent), memory)
    deployments = Table(title="Deployments")
    for column in ("application", "deployment", "status", "replicas", "target", "starts 15m"):
        deployments.add_column(column)
    for d in status.deployments:
        deployments.add_row(
            d.application,
            d.deployment,
            d.status,
            fmt(d.replicas, "{:g}"),
            fmt(d.target, "{:g}"),
            fmt(d.starts_15m, "{:.0f}"),
        )
    models = Table(title="Models (last 5 minutes)")
    for column in (
        "model",
        "KV cache %",
        "running",
        "waiting",
        "req/s",
        "p95 latency ms",
        "p95 TTFT s",
        "tokens/s",
    ):
        models.add_column(column)
    for m in status.models:
        name = f"{m.model} (adapter)" if m.base else m.model
        models.add_row(
            name,
            fmt(m.kv_cache_percent),
            fmt(m.running, "{:g}"),
            fmt(m.waiting, "{:g}"),
            fmt(m.requests_per_s, "{:.2f}"),
            fmt(m.p95_latency_ms, "{:.0f}"),
            fmt(m.p95_ttft_s, "{:.2f}"),
            fmt(m.tokens_per_s),
        )
    return [nodes, deployments, models, *(f"[yellow]problem:[/] {p}" for p in status.problems)]


def status(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh every --interval s.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=1)] = 5,
) -> None:
    """Nodes, deployments (replicas vs target), KV cache, queues, rates and latency on one screen."""
    from rich.console import Group
    from rich.live import Live

    from gpucluster.ops.status import collect_status
    from gpucluster.ops.target import load_target

    cfg = load_config(config)
    target = load_target(cfg)
    if as_json:
        result = collect_status(target)
        emit({"ok": not result.problems, **result.as_dict()})
        if result.problems:
            raise typer.Exit(1)
        return
    if not watch:
        result = collect_status(target)
        for item in _status_tables(result):
            out.print(item)
        if result.problems:
            raise typer.Exit(1)
        return
    with Live(console=out, refresh_per_second=1) as live:
        while True:
            live.update(Group(*_status_tables(collect_status(target))))
            time.sleep(interval)


def diagnose(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Run the guide's troubleshooting checks; findings most severe first; exit 1 on any warning
    or critical finding (info findings explain what looks odd but needs nothing)."""
    from rich.table import Table

    from gpucluster.ops.diagnose import as_dicts, gather, needs_action
    from gpucluster.ops.diagnose import diagnose as run_rules
    from gpucluster.ops.target import load_target

    cfg = load_config(config)
    findings = run_rules(gather(load_target(cfg)))
    failed = needs_action(findings)
    if as_json:
        emit({"ok": not failed, "findings": as_dicts(findings)})
    elif not findings:
        out.print(
            "[green]No findings[/]: the platform answers, metrics flow, nothing is saturated."
        )
    else:
        table = Table(title=f"gpu-cluster diagnose: {len(findings)} finding(s)")
        for column in ("severity", "finding", "evidence", "what to do"):
            table.add_column(column, overflow="fold")
        for f in findings:
            style = {"critical": "red", "warning": "yellow"}.get(f.severity, "cyan")
            table.add_row(f"[{style}]{f.severity}[/]", f.title, f.evidence, f.step)
        out.print(table)
    if failed:
        raise typer.Exit(1)


def support_bundle(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write into.", file_okay=False)
    ] = Path("."),
) -> None:
    """Write one tar.gz with config (redacted), versions, health/status/diagnose, metrics, logs."""
    from gpucluster.ops.bundle import write_bundle
    from gpucluster.ops.target import load_target

    cfg = load_config(config)
    output.mkdir(parents=True, exist_ok=True)
    with err.status("collecting (health, status, diagnose, metrics, logs)"):
        path = write_bundle(load_target(cfg), output)
    if as_json:
        emit({"ok": True, "path": str(path.resolve()), "bytes": path.stat().st_size})
    else:
        out.print(
            f"Support bundle: {path.resolve()} ({path.stat().st_size / 1024:.0f} KiB)",
            highlight=False,
        )
