"""The `gpucluster` command: parse, call runtime/ops, render (rich for people, --json for scripts).

Exit codes: 0 ok, 1 a check or action failed, 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from gpucluster.config import Config, ConfigError, load_config

app = typer.Typer(
    help="gpu-cluster: serve LLMs with vLLM on Ray Serve. Start with `gpucluster up`.",
    no_args_is_help=True,
    add_completion=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Platform config file (YAML). Default: $GPUCLUSTER_CONFIG, else "
        "the built-in model on CPU.", dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int, as_json: bool) -> NoReturn:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _config(path: Path | None, as_json: bool) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc), 2, as_json)


def _emit(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2))


@app.command()
def up(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Start the platform (Ray head, Serve app, models); returns once every model answers."""
    from gpucluster.runtime.platform import UpError
    from gpucluster.runtime.platform import up as start

    cfg = _config(config, as_json)
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
        _fail(str(exc), 1, as_json)
    finally:
        if status is not None:
            status.stop()
    endpoints = result.record.endpoints
    if as_json:
        _emit(
            {
                "ok": True,
                "already_running": result.already_running,
                "seconds": round(result.seconds, 1),
                "models": result.record.models,
                "endpoints": endpoints.as_dict(),
                "dashboard_user": cfg.platform.security.dashboard_user,
                "dashboard_password": result.dashboard_password,
                "warnings": list(result.warnings),
            }
        )
        return
    if result.already_running:
        out.print("[yellow]The platform is already running[/] (use `gpucluster down` to stop it).")
    else:
        out.print(f"[green]Platform up[/] in {result.seconds:.0f} s.")
    _print_endpoints(endpoints.as_dict(), result.record.models)
    if result.dashboard_password:
        out.print(
            f"\n[bold]Dashboard login[/] (shown once; reset with `gpucluster dashboard-password`): "
            f"{cfg.platform.security.dashboard_user} / {result.dashboard_password}",
            highlight=False,
        )
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


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

    cfg = _config(config, as_json)
    result = stop(cfg)
    if as_json:
        _emit({"ok": not result.leftovers, **result.__dict__})
    elif not result.was_running:
        out.print("Nothing was running.")
    elif result.leftovers:
        err.print(f"[red]Some processes would not stop:[/] {', '.join(result.leftovers)}")
    else:
        out.print(f"[green]Stopped[/] ({len(result.stopped)} processes).")
    if result.leftovers:
        raise typer.Exit(1)


@app.command("dashboard-password")
def dashboard_password(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Set a new random password for /dashboard (nginx reads it on the next request)."""
    from gpucluster.runtime.edge import reset_dashboard_password
    from gpucluster.runtime.state import StateDir

    cfg = _config(config, as_json)
    state = StateDir(cfg.platform.state_dir)
    state.ensure()
    user = cfg.platform.security.dashboard_user
    password = reset_dashboard_password(state, user)
    if as_json:
        _emit({"ok": True, "user": user, "password": password})
    else:
        out.print(f"{user} / {password}", highlight=False)


@app.command()
def prepare(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Prepare every configured model's weights in the model cache (done by `up` too)."""
    from gpucluster.models import ModelError, prepare_model

    cfg = _config(config, as_json)
    prepared = {}
    for model in cfg.models:
        try:
            prepared[model.id] = prepare_model(
                model.source,
                cfg.platform.model_cache_dir,
                progress=lambda m: err.print(m, highlight=False),
            )
        except ModelError as exc:
            _fail(str(exc), 1, as_json)
    if as_json:
        _emit({"ok": True, "models": prepared})
    else:
        for model_id, path in prepared.items():
            out.print(f"{model_id}: {path}", highlight=False)


config_app = typer.Typer(help="Check or show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Validate a config file (and the environment overrides); exit 2 naming each bad key."""
    cfg = _config(config, as_json)
    if as_json:
        _emit({"ok": True, "models": [m.id for m in cfg.models]})
    else:
        out.print(f"[green]valid[/]: {len(cfg.models)} model(s): {', '.join(m.id for m in cfg.models)}")


@config_app.command("show")
def config_show(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective configuration: defaults, file and environment combined."""
    cfg = _config(config, as_json)
    data = json.loads(cfg.model_dump_json())
    if as_json:
        _emit(data)
    else:
        import yaml

        out.print(yaml.safe_dump(data, sort_keys=False), highlight=False, markup=False)


@app.command()
def logs(
    component: Annotated[str, typer.Argument(help="platform, ray, deploy, serve or engine.")] = "platform",
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines per file.", min=1)] = 100,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a component's logs (kept under the state dir and Ray's session dir)."""
    from gpucluster.runtime.logs import COMPONENTS, UnknownComponent, component_files, tail
    from gpucluster.runtime.state import StateDir

    cfg = _config(config, as_json)
    try:
        files = component_files(StateDir(cfg.platform.state_dir), component)
    except UnknownComponent as exc:
        _fail(str(exc), 2, as_json)
    if as_json:
        _emit({"ok": True, "component": component, "files": {str(f): tail(f, lines) for f in files}})
        return
    if not files:
        err.print(f"No {component} logs yet ({COMPONENTS[component]}).")
        return
    for path in files:
        out.print(f"[bold]==> {path} <==[/]", highlight=False)
        for line in tail(path, lines):
            out.print(line, highlight=False, markup=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
