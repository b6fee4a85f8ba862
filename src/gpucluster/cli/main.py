"""The `gpucluster` command: parse, call runtime/ops, render (rich for people, --json for scripts).

Each command lives in a module of this package; this one puts them together in the order
`gpucluster --help` lists them (commands, then the groups of subcommands).

Exit codes: 0 ok, 1 a check or action failed, 2 usage or configuration error.
"""

from __future__ import annotations

from gpucluster.cli.bench import bench
from gpucluster.cli.capacity import capacity
from gpucluster.cli.chat import chat
from gpucluster.cli.config import config_app
from gpucluster.cli.dashboard_users import dashboard_password, dashboard_users_app
from gpucluster.cli.errors import Typer
from gpucluster.cli.health import diagnose, health, status, support_bundle
from gpucluster.cli.keys import keys_app
from gpucluster.cli.logs import alerts, logs
from gpucluster.cli.models import models_app, prepare, pull
from gpucluster.cli.render import render_app
from gpucluster.cli.up import down, up
from gpucluster.cli.usage import usage
from gpucluster.cli.workers import join, leave

app = Typer(
    help="gpu-cluster: serve LLMs with vLLM on Ray Serve. Start with `gpucluster up`.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("capacity")(capacity)
app.command("bench")(bench)
app.command("chat")(chat)
app.command("pull")(pull)
app.command("usage")(usage)
app.command("up")(up)
app.command("join")(join)
app.command("leave")(leave)
app.command("down")(down)
app.command("dashboard-password")(dashboard_password)
app.command("prepare")(prepare)
app.command("health")(health)
app.command("status")(status)
app.command("diagnose")(diagnose)
app.command("support-bundle")(support_bundle)
app.command("logs")(logs)
app.command("alerts")(alerts)
app.add_typer(render_app, name="render")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(dashboard_users_app, name="dashboard-users")
app.add_typer(config_app, name="config")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
