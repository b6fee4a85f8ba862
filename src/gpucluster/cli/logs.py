"""`gpucluster logs` and `gpucluster alerts`: a component's log files, and each alert's state
(Alertmanager now, the alert log before)."""

from __future__ import annotations

from typing import Annotated

import typer

from gpucluster.cli.common import ConfigOption, JsonOption, emit, err, out
from gpucluster.config import load_config
from gpucluster.runtime.logs import COMPONENTS


def logs(
    component: Annotated[
        str, typer.Argument(help=f"One of: {', '.join(COMPONENTS)}.")
    ] = "platform",
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines per file.", min=1)] = 100,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a component's logs (kept under the state dir and Ray's session dir)."""
    from gpucluster.runtime.logs import component_files, tail
    from gpucluster.runtime.state import StateDir

    cfg = load_config(config)
    files = component_files(StateDir(cfg.platform.state_dir), component)  # UnknownComponent: 2
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


def alerts(
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", help="How many alerts of the log to show, newest first.", min=1
        ),
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

    target = load_target(load_config(config))
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
        out.print(
            f"[green]No alert fires now[/] (Alertmanager, {escape(report.alertmanager)}).",
            highlight=False,
        )
    else:
        firing = Table(title=f"Firing now (Alertmanager, {escape(report.alertmanager)})")
        for column in ("alert", "severity", "labels", "state", "since", "summary"):
            firing.add_column(column, overflow="fold")
        for a in report.active:
            style = "red" if a.severity == "critical" else "yellow"
            firing.add_row(
                escape(a.alertname),
                f"[{style}]{escape(a.severity)}[/]",
                escape(_labels_text(a.labels)),
                a.state,
                a.since or "-",
                escape(a.summary),
            )
        out.print(firing)
    if not report.recent:
        out.print(f"No alert logged yet ({escape(report.log)}).", highlight=False)
    else:
        logged = Table(title=f"Last logged state, newest first ({escape(report.log)})")
        for column in (
            "alert",
            "severity",
            "labels",
            "last status",
            "logged",
            "firing now",
            "detail",
        ):
            logged.add_column(column, overflow="fold")
        now = {True: "[red]yes[/]", False: "no", None: "?"}
        for a in report.recent:
            status = "[red]firing[/]" if a.status == "firing" else escape(a.status)
            logged.add_row(
                escape(a.alertname),
                escape(a.severity),
                escape(_labels_text(a.labels)),
                status,
                a.logged or "-",
                now[a.active_now],
                escape(a.detail),
            )
        out.print(logged)
    if report.problems:
        raise typer.Exit(1)
