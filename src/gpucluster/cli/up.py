"""`gpucluster up` and `gpucluster down`: start the platform on this host, and stop it.

`up` is four parts: `start_platform` runs runtime.platform's `up` behind `progress_shown` (the
spinner for people, plain lines on stderr for scripts) and returns its result; `up_json` is the
result for --json, `print_up` for people. `down` stops what `up` started.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gpucluster.cli.common import (
    NO_PATH_HINT_ENV,
    ConfigOption,
    JsonOption,
    emit,
    err,
    out,
    path_hint,
)
from gpucluster.cli.config import refuse_unfit
from gpucluster.config import load_config

if TYPE_CHECKING:
    from gpucluster.config import Config
    from gpucluster.runtime.platform import UpResult

Progress = Callable[[str], None]


def up(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    head: Annotated[
        bool,
        typer.Option(
            "--head",
            help="Let Ray worker nodes of other hosts join (`gpucluster join`): Ray's "
            "ports then listen on this host's network address, token-protected.",
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
    cfg = load_config(config)
    if fit_check:
        for unchecked in (f for f in refuse_unfit(cfg, None, as_json) if f.fits is None):
            err.print(
                f"[yellow]fit not checked[/] for {unchecked.model}: {unchecked.detail}",
                highlight=False,
            )
    if head:
        cfg = taking_workers(cfg, head_host)
    result = start_platform(cfg, as_json)  # UpError: the handler (cli/errors.py) reports it
    if as_json:
        emit(up_json(cfg, result))
    else:
        print_up(cfg, result)


def taking_workers(cfg: Config, head_host: str | None) -> Config:
    """`cfg` for a head that worker hosts join (--head): Ray listens on `head_host`, else the
    configured cluster host, else this host's address."""
    from gpucluster.runtime.worker_node import host_address

    host = head_host or cfg.platform.cluster_host or host_address()
    platform = cfg.platform.model_copy(update={"cluster_host": host})
    return cfg.model_copy(update={"platform": platform})


def start_platform(cfg: Config, as_json: bool) -> UpResult:
    """Run runtime.platform's `up`, its progress shown on stderr; its result (UpError when the
    platform could not start: everything it started is stopped again)."""
    from gpucluster.runtime.platform import up as start

    with progress_shown(as_json) as progress:
        return start(cfg, progress)


@contextmanager
def progress_shown(as_json: bool) -> Iterator[Progress]:
    """What `up` reports as it goes, on stderr: for scripts (--json) each message as a line; for
    people a spinner carrying the model loading's countdown, the other messages as timed lines
    above it. The spinner stops when the block ends, however it ends."""
    if as_json:
        yield lambda message: print(message, file=sys.stderr, flush=True)
        return
    with err.status("starting", spinner="dots") as status:

        def progress(message: str) -> None:
            if message.startswith("loading models"):
                status.update(message)
            else:
                err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)

        yield progress


def up_json(cfg: Config, result: UpResult) -> dict[str, Any]:
    """`up --json`: the result for scripts."""
    return {
        "ok": True,
        "already_running": result.already_running,
        "seconds": round(result.seconds, 1),
        "models": result.record.models,
        "endpoints": result.record.endpoints.as_dict(),
        "dashboard_user": cfg.platform.security.dashboard_user,
        "dashboard_password": result.dashboard_password,
        "warnings": list(result.warnings),
        "phases": dict(result.phases),
        "join": join_command(cfg),
    }


def print_up(cfg: Config, result: UpResult) -> None:
    """`up`'s result for people: how long each phase took, the endpoints and a request to try,
    the dashboard login (shown once), how workers join, warnings, and the PATH hint."""
    if result.already_running:
        out.print("[yellow]The platform is already running[/] (use `gpucluster down` to stop it).")
    else:
        out.print(f"[green]Platform up[/] in {result.seconds:.0f} s.")
        for name, seconds in result.phases:
            out.print(f"  {name:<40} {seconds:6.1f} s", highlight=False)
    print_endpoints(result.record.endpoints.as_dict(), result.record.models)
    if result.dashboard_password:
        out.print(
            f"\n[bold]Dashboard login[/] (shown once; reset with `gpucluster dashboard-password`): "
            f"{cfg.platform.security.dashboard_user} / {result.dashboard_password}",
            highlight=False,
        )
    if cfg.platform.cluster_host:
        out.print(f"\n[bold]Worker hosts join with[/] {join_command(cfg)}", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    hint = None if os.environ.get(NO_PATH_HINT_ENV) else path_hint()
    if hint:
        from rich.markup import escape

        out.print(f"\n[yellow]{escape(hint)}[/]", highlight=False, soft_wrap=True)


def join_command(cfg: Config) -> str | None:
    """How a worker host joins this head, or None when the head takes no workers."""
    from gpucluster.runtime.state import StateDir

    if not cfg.platform.cluster_host:
        return None
    token = StateDir(cfg.platform.state_dir).ray_token_file
    return (
        f"gpucluster join {cfg.platform.cluster_host}:{cfg.platform.ports.ray_gcs} "
        f"--token-file <a copy of {token}>"
    )


def print_endpoints(endpoints: dict[str, str], models: list[str]) -> None:
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


def down(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Stop everything `up` started (Ray, Serve, vLLM engine processes)."""
    from gpucluster.runtime.platform import down as stop

    cfg = load_config(config)
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
