"""The `gpucluster` command: parse, call runtime/ops, render (rich for people, --json for scripts).

Exit codes: 0 ok, 1 a check or action failed, 2 usage or configuration error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gpucluster.cli.bench import bench
from gpucluster.cli.capacity import capacity
from gpucluster.cli.chat import chat
from gpucluster.cli.common import (
    NO_PATH_HINT_ENV,
    ConfigOption,
    JsonOption,
    config_or_exit,
    emit,
    err,
    fail,
    fmt,
    out,
    path_hint,
)
from gpucluster.cli.dashboard_users import dashboard_password, dashboard_users_app
from gpucluster.cli.keys import keys_app
from gpucluster.cli.models import models_app, pull
from gpucluster.cli.render import render_app
from gpucluster.cli.usage import usage
from gpucluster.config import PortsConfig
from gpucluster.runtime.logs import COMPONENTS

if TYPE_CHECKING:
    from gpucluster.config import Config
    from gpucluster.ops.fit import Fit

app = typer.Typer(
    help="gpu-cluster: serve LLMs with vLLM on Ray Serve. Start with `gpucluster up`.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("capacity")(capacity)
app.command("bench")(bench)
app.command("chat")(chat)
app.add_typer(render_app, name="render")
app.command("pull")(pull)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(dashboard_users_app, name="dashboard-users")
app.command("usage")(usage)


@app.command()
def up(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    head: Annotated[
        bool,
        typer.Option(
            "--head", help="Let Ray worker nodes of other hosts join (`gpucluster join`): Ray's "
            "ports then listen on this host's network address, token-protected."
        ),
    ] = False,
    head_host: Annotated[
        str | None,
        typer.Option(help="With --head: the address workers reach (default: this host's)."),
    ] = None,
    fit_check: Annotated[
        bool,
        typer.Option(
            "--fit-check/--no-fit-check",
            help="Refuse models that cannot fit this host's devices before starting anything.",
        ),
    ] = True,
) -> None:
    """Start the platform (Ray head, Serve app, models); returns once every model answers."""
    from gpucluster.runtime.platform import UpError
    from gpucluster.runtime.platform import up as start
    from gpucluster.runtime.worker_node import host_address

    cfg = config_or_exit(config, as_json)
    if fit_check:
        for unchecked in (f for f in _refuse_unfit(cfg, None, as_json) if f.fits is None):
            err.print(f"[yellow]fit not checked[/] for {unchecked.model}: {unchecked.detail}",
                      highlight=False)
    if head:
        host = head_host or cfg.platform.cluster_host or host_address()
        platform = cfg.platform.model_copy(update={"cluster_host": host})
        cfg = cfg.model_copy(update={"platform": platform})
    status = err.status("starting", spinner="dots") if not as_json else None

    def progress(message: str) -> None:
        if as_json:
            print(message, file=sys.stderr, flush=True)
        elif message.startswith("loading models"):
            status.update(message)
        else:
            err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)

    try:
        if status is not None:
            status.start()
        result = start(cfg, progress)
    except UpError as exc:
        if status is not None:
            status.stop()
        fail(str(exc), 1, as_json)
    finally:
        if status is not None:
            status.stop()
    endpoints = result.record.endpoints
    if as_json:
        emit(
            {
                "ok": True,
                "already_running": result.already_running,
                "seconds": round(result.seconds, 1),
                "models": result.record.models,
                "endpoints": endpoints.as_dict(),
                "dashboard_user": cfg.platform.security.dashboard_user,
                "dashboard_password": result.dashboard_password,
                "warnings": list(result.warnings),
                "phases": dict(result.phases),
                "join": _join_command(cfg),
            }
        )
        return
    if result.already_running:
        out.print("[yellow]The platform is already running[/] (use `gpucluster down` to stop it).")
    else:
        out.print(f"[green]Platform up[/] in {result.seconds:.0f} s.")
        for name, seconds in result.phases:
            out.print(f"  {name:<40} {seconds:6.1f} s", highlight=False)
    _print_endpoints(endpoints.as_dict(), result.record.models)
    if result.dashboard_password:
        out.print(
            f"\n[bold]Dashboard login[/] (shown once; reset with `gpucluster dashboard-password`): "
            f"{cfg.platform.security.dashboard_user} / {result.dashboard_password}",
            highlight=False,
        )
    if cfg.platform.cluster_host:
        out.print(f"\n[bold]Worker hosts join with[/] {_join_command(cfg)}", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    hint = None if os.environ.get(NO_PATH_HINT_ENV) else path_hint()
    if hint:
        from rich.markup import escape

        out.print(f"\n[yellow]{escape(hint)}[/]", highlight=False, soft_wrap=True)


def _join_command(cfg) -> str | None:
    """How a worker host joins this head, or None when the head takes no workers."""
    from gpucluster.runtime.state import StateDir

    if not cfg.platform.cluster_host:
        return None
    token = StateDir(cfg.platform.state_dir).ray_token_file
    return (
        f"gpucluster join {cfg.platform.cluster_host}:{cfg.platform.ports.ray_gcs} "
        f"--token-file <a copy of {token}>"
    )


@app.command()
def join(
    head: Annotated[
        str,
        typer.Argument(
            help="The head's Ray address, HOST:PORT (its platform.ports.ray_gcs, "
            f"{PortsConfig.model_fields['ray_gcs'].default} by default)."
        ),
    ],
    token_file: Annotated[
        Path | None,
        typer.Option(help="A copy of the head's Ray token file (default: this host's own)."),
    ] = None,
    num_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs to offer (default: this host's cores).")
    ] = None,
    num_gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs to offer (default: those nvidia-smi lists).")
    ] = None,
    node_ip: Annotated[
        str | None, typer.Option(help="This node's address (default: the one facing the head).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Join this host to a platform's Ray cluster as a worker node; replicas may then run here."""
    from gpucluster.runtime.gpus import local_gpu_count
    from gpucluster.runtime.state import StateDir
    from gpucluster.runtime.worker_node import JoinError
    from gpucluster.runtime.worker_node import join as start_worker

    cfg = config_or_exit(config, as_json)
    token = token_file or StateDir(cfg.platform.state_dir).ray_token_file
    cpus = num_cpus or os.cpu_count() or 1
    gpus = local_gpu_count() if num_gpus is None else num_gpus
    try:
        result = start_worker(
            cfg, head, num_cpus=cpus, num_gpus=gpus, token_file=token, node_ip=node_ip
        )
    except JoinError as exc:
        fail(str(exc), 1, as_json)
    if as_json:
        emit({"ok": True, **dataclasses.asdict(result)})
        return
    out.print(
        f"[green]Joined[/] {result.head} as {result.node_ip}: {result.num_cpus} CPUs, "
        f"{result.num_gpus} GPUs; metrics on :{result.metrics_port}. "
        "`gpucluster leave` stops this node.",
        highlight=False,
    )


@app.command()
def leave(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Stop this host's worker node; the head moves its replicas elsewhere."""
    from gpucluster.runtime.worker_node import leave as stop_worker

    stopped = stop_worker(config_or_exit(config, as_json))
    if as_json:
        emit({"ok": True, "stopped": stopped})
    elif stopped:
        out.print(f"Worker node stopped ({len(stopped)} processes).")
    else:
        out.print("No worker node runs on this host.")


def _print_endpoints(endpoints: dict[str, str], models: list[str]) -> None:
    for name, url in endpoints.items():
        out.print(f"  {name.replace('_', ' '):<14} {url}", highlight=False)
    out.print(f"  {'models':<14} {', '.join(models)}", highlight=False)
    body = json.dumps({"model": models[0], "messages": [{"role": "user", "content": "Hello!"}]})
    out.print("\nTry it:", highlight=False)
    out.print(
        f"  curl {endpoints['openai_api']}/chat/completions -H 'Content-Type: application/json' "
        f"-d '{body}'",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def down(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Stop everything `up` started (Ray, Serve, vLLM engine processes)."""
    from gpucluster.runtime.platform import down as stop

    cfg = config_or_exit(config, as_json)
    result = stop(cfg)
    if as_json:
        emit({"ok": not result.leftovers, **result.__dict__})
    elif not result.was_running:
        out.print("Nothing was running.")
    elif result.leftovers:
        err.print(f"[red]Some processes would not stop:[/] {', '.join(result.leftovers)}")
    else:
        out.print(f"[green]Stopped[/] ({len(result.stopped)} processes).")
    if result.leftovers:
        raise typer.Exit(1)


app.command("dashboard-password")(dashboard_password)


@app.command()
def prepare(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Prepare every configured model's weights and LoRA adapters in the model cache (done by
    `up` too)."""
    from gpucluster.models import HubClient, ModelError, prepare_models

    cfg = config_or_exit(config, as_json)
    hub = HubClient(bars=not as_json and sys.stderr.isatty())
    try:
        prepared = prepare_models(cfg, lambda m: err.print(m, highlight=False), hub)
    except ModelError as exc:
        fail(str(exc), 1, as_json)
    if as_json:
        emit({"ok": True, "models": prepared})
    else:
        for model_id, path in prepared.items():
            out.print(f"{model_id}: {path}", highlight=False)


@app.command()
def health(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Check every component and generate one token end to end; exit 1 if a check fails."""
    from rich.table import Table

    from gpucluster.ops.health import FAIL, OK, run_health
    from gpucluster.ops.target import load_target

    cfg = config_or_exit(config, as_json)
    started = time.perf_counter()
    results = run_health(load_target(cfg))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if r.status == FAIL]
    if as_json:
        emit({"ok": not failed, "seconds": round(elapsed, 2), "checks": [r.as_dict() for r in results]})
    else:
        table = Table(title=f"gpu-cluster health ({elapsed:.1f} s)")
        for column in ("check", "status", "detail", "ms", "next step"):
            table.add_column(column, overflow="fold")
        colour = {OK: "green", FAIL: "red"}
        for r in results:
            style = colour.get(r.status, "yellow")
            table.add_row(r.name, f"[{style}]{r.status}[/]", r.detail, f"{r.latency_ms:.0f}", r.hint)
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
        deployments.add_row(d.application, d.deployment, d.status, fmt(d.replicas, "{:g}"),
                            fmt(d.target, "{:g}"), fmt(d.starts_15m, "{:.0f}"))
    models = Table(title="Models (last 5 minutes)")
    for column in ("model", "KV cache %", "running", "waiting", "req/s", "p95 latency ms", "p95 TTFT s", "tokens/s"):
        models.add_column(column)
    for m in status.models:
        name = f"{m.model} (adapter)" if m.base else m.model
        models.add_row(name, fmt(m.kv_cache_percent), fmt(m.running, "{:g}"), fmt(m.waiting, "{:g}"),
                       fmt(m.requests_per_s, "{:.2f}"), fmt(m.p95_latency_ms, "{:.0f}"),
                       fmt(m.p95_ttft_s, "{:.2f}"), fmt(m.tokens_per_s))
    return [nodes, deployments, models, *(f"[yellow]problem:[/] {p}" for p in status.problems)]


@app.command()
def status(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every --interval s.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=1)] = 5,
) -> None:
    """Nodes, deployments (replicas vs target), KV cache, queues, rates and latency on one screen."""
    from rich.console import Group
    from rich.live import Live

    from gpucluster.ops.status import collect_status
    from gpucluster.ops.target import load_target

    cfg = config_or_exit(config, as_json)
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


@app.command()
def diagnose(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Run the guide's troubleshooting checks; findings most severe first; exit 1 on any warning
    or critical finding (info findings explain what looks odd but needs nothing)."""
    from rich.table import Table

    from gpucluster.ops.diagnose import as_dicts, gather, needs_action
    from gpucluster.ops.diagnose import diagnose as run_rules
    from gpucluster.ops.target import load_target

    cfg = config_or_exit(config, as_json)
    findings = run_rules(gather(load_target(cfg)))
    failed = needs_action(findings)
    if as_json:
        emit({"ok": not failed, "findings": as_dicts(findings)})
    elif not findings:
        out.print("[green]No findings[/]: the platform answers, metrics flow, nothing is saturated.")
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


@app.command("support-bundle")
def support_bundle(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write into.", file_okay=False)] = Path("."),
) -> None:
    """Write one tar.gz with config (redacted), versions, health/status/diagnose, metrics, logs."""
    from gpucluster.ops.bundle import write_bundle
    from gpucluster.ops.target import load_target

    cfg = config_or_exit(config, as_json)
    output.mkdir(parents=True, exist_ok=True)
    with err.status("collecting (health, status, diagnose, metrics, logs)"):
        path = write_bundle(load_target(cfg), output)
    if as_json:
        emit({"ok": True, "path": str(path.resolve()), "bytes": path.stat().st_size})
    else:
        out.print(f"Support bundle: {path.resolve()} ({path.stat().st_size / 1024:.0f} KiB)", highlight=False)


config_app = typer.Typer(help="Check or show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu", help="Check GPU models against this GPU type (`gpucluster capacity "
            "--help` lists them) instead of the GPUs this host has.",
        ),
    ] = None,
) -> None:
    """Validate a config file (and the environment overrides), and check that every model fits
    its devices; exit 2 naming each bad key or each model that cannot fit, and the fix."""
    from gpucluster.ops.fit import as_dicts

    cfg = config_or_exit(config, as_json)
    fits = _refuse_unfit(cfg, gpu, as_json)
    if as_json:
        emit({"ok": True, "models": [m.id for m in cfg.models], "fit": as_dicts(fits)})
        return
    out.print(f"[green]valid[/]: {len(cfg.models)} model(s): {', '.join(m.id for m in cfg.models)}")
    for fit in fits:
        verdict = "[green]fits[/]" if fit.fits else "[yellow]not checked[/]"
        out.print(f"{verdict} {'all models' if fit.model == '*' else fit.model}: {fit.detail}",
                  highlight=False)


def _refuse_unfit(cfg: Config, gpu: str | None, as_json: bool) -> list[Fit]:
    """The fit checks of `cfg` (ops.fit); exit 2 with the numbers and the fix when one fails."""
    from gpucluster.ops.fit import as_dicts, check_fit, describe, problems
    from gpucluster.planning.hardware import UnknownNameError, find_gpu

    try:
        fits = check_fit(cfg, find_gpu(gpu) if gpu else None)
    except UnknownNameError as exc:
        fail(str(exc), 2, as_json)
    bad = problems(fits)
    if bad:
        message = "; ".join(describe(f) for f in bad)
        if as_json:
            print(json.dumps({"ok": False, "error": message, "fit": as_dicts(fits)}))
            raise typer.Exit(2)
        fail(message, 2, as_json)
    return fits


@config_app.command("show")
def config_show(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective configuration: defaults, file and environment combined."""
    cfg = config_or_exit(config, as_json)
    data = json.loads(cfg.model_dump_json())
    if as_json:
        emit(data)
    else:
        import yaml

        out.print(yaml.safe_dump(data, sort_keys=False), highlight=False, markup=False)


@app.command()
def logs(
    component: Annotated[
        str, typer.Argument(help=f"One of: {', '.join(COMPONENTS)}.")
    ] = "platform",
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines per file.", min=1)] = 100,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a component's logs (kept under the state dir and Ray's session dir)."""
    from gpucluster.runtime.logs import UnknownComponent, component_files, tail
    from gpucluster.runtime.state import StateDir

    cfg = config_or_exit(config, as_json)
    try:
        files = component_files(StateDir(cfg.platform.state_dir), component)
    except UnknownComponent as exc:
        fail(str(exc), 2, as_json)
    if as_json:
        emit({"ok": True, "component": component, "files": {str(f): tail(f, lines) for f in files}})
        return
    if not files:
        err.print(f"No {component} logs yet ({COMPONENTS[component]}).")
        return
    for path in files:
        out.print(f"[bold]==> {path} <==[/]", highlight=False)
        for line in tail(path, lines):
            out.print(line, highlight=False, markup=False, soft_wrap=True)
    if component == "alerts":
        err.print("[dim]Each alert's current state: gpucluster alerts[/]")


def _labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())


@app.command()
def alerts(
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="How many alerts of the log to show, newest first.", min=1)
    ] = 20,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each alert's current state: what fires now (Alertmanager), and each alert's last state
    in the alert log; exit 1 if Alertmanager does not answer."""
    from rich.markup import escape
    from rich.table import Table

    from gpucluster.ops.alerts import collect_alerts
    from gpucluster.ops.target import load_target

    target = load_target(config_or_exit(config, as_json))
    report = collect_alerts(target.endpoints.alertmanager, target.state.log("alerts"), limit)
    if as_json:
        emit({"ok": not report.problems, **report.as_dict()})
        if report.problems:
            raise typer.Exit(1)
        return
    if report.problems:
        for problem in report.problems:
            err.print(f"[yellow]problem:[/] {problem}", highlight=False)
    elif not report.active:
        out.print(f"[green]No alert fires now[/] (Alertmanager, {escape(report.alertmanager)}).",
                  highlight=False)
    else:
        firing = Table(title=f"Firing now (Alertmanager, {escape(report.alertmanager)})")
        for column in ("alert", "severity", "labels", "state", "since", "summary"):
            firing.add_column(column, overflow="fold")
        for a in report.active:
            style = "red" if a.severity == "critical" else "yellow"
            firing.add_row(escape(a.alertname), f"[{style}]{escape(a.severity)}[/]",
                           escape(_labels_text(a.labels)), a.state, a.since or "-", escape(a.summary))
        out.print(firing)
    if not report.recent:
        out.print(f"No alert logged yet ({escape(report.log)}).", highlight=False)
    else:
        logged = Table(title=f"Last logged state, newest first ({escape(report.log)})")
        for column in ("alert", "severity", "labels", "last status", "logged", "firing now", "detail"):
            logged.add_column(column, overflow="fold")
        now = {True: "[red]yes[/]", False: "no", None: "?"}
        for a in report.recent:
            status = "[red]firing[/]" if a.status == "firing" else escape(a.status)
            logged.add_row(escape(a.alertname), escape(a.severity), escape(_labels_text(a.labels)),
                           status, a.logged or "-", now[a.active_now], escape(a.detail))
        out.print(logged)
    if report.problems:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
