"""What every `gpucluster` command shares: options, consoles, failing and emitting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from gpucluster.config import Config, ConfigError, load_config

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


def fail(message: str, code: int, as_json: bool) -> NoReturn:
    """Report `message` (JSON or red text) and exit with `code`."""
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def config_or_exit(path: Path | None, as_json: bool) -> Config:
    """The configuration, or exit 2 naming the bad key."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), 2, as_json)


def emit(data: dict[str, Any]) -> None:
    """Print `data` as JSON for scripts."""
    print(json.dumps(data, indent=2))
