"""What every `gpucluster` command shares: options, consoles, failing and emitting."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from gpucluster.config import load_config

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Platform config file (YAML). Default: $GPUCLUSTER_CONFIG, else "
        "the built-in model on CPU.",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="OpenAI-compatible base URL ending in /v1. Default: this platform's /v1."
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="Bearer key for --url. Default with no --url: the platform's key."
    ),
]

PIPED_WIDTH = 10_000  # wide enough that no line of ours wraps


def _console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr). Into a pipe or a file it does not wrap at 80 columns
    (rich's default there): a path or a log line split in two breaks whatever reads it. COLUMNS,
    when set, still decides."""
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, width=PIPED_WIDTH)


out = _console()
err = _console(stderr=True)


def fmt(value: float | None, pattern: str = "{:.1f}") -> str:
    """A table cell: `value` in `pattern`, or "-" when it is unknown."""
    return "-" if value is None else pattern.format(value)


def fail(message: str, code: int, as_json: bool, next_step: str | None = None) -> NoReturn:
    """Report `message` and what to do next (JSON on stdout, or red text on stderr) and exit with
    `code`. A GpuClusterError comes here through the commands' handler (cli/errors.py)."""
    if as_json:
        print(json.dumps(error_json(message, next_step)))
    else:
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        if next_step:
            err.print(f"[bold]next:[/] {escape(next_step)}", highlight=False)
    raise typer.Exit(code)


def error_json(message: str, next_step: str | None = None) -> dict[str, Any]:
    """An error for scripts: `{"ok": false, "error": message, "next": next_step}`."""
    return {"ok": False, "error": message, "next": next_step}


def emit(data: dict[str, Any]) -> None:
    """Print `data` as JSON for scripts."""
    print(json.dumps(data, indent=2))


def base_url_or_exit(url: str, option: str, as_json: bool) -> str:
    """`url` without its trailing slash, or exit 2 when it is not an http(s) URL."""
    if not url.startswith(("http://", "https://")):
        fail(
            f"{option}: {url!r} is not an http(s) URL; give the base URL, e.g. http://host:8000/v1",
            2,
            as_json,
        )
    return url.rstrip("/")


def api_endpoint(
    url: str | None, api_key: str | None, config: Path | None, as_json: bool
) -> tuple[str, str | None]:
    """The OpenAI base URL (ending in /v1) and bearer key a client command talks to.

    `--url` as given (with `--api-key`, if any); else this platform's /v1 and, unless `--api-key`
    overrides it, the platform's key (from the keys file `up` used, else $GPUCLUSTER_API_KEYS).
    """
    if url is not None:
        return base_url_or_exit(url, "--url", as_json), api_key
    from gpucluster.ops.target import load_target  # reads the state dir: only when needed

    target = load_target(load_config(config))
    return target.endpoints.openai_api.rstrip("/"), api_key or target.api_key


NO_PATH_HINT_ENV = "GPUCLUSTER_NO_PATH_HINT"  # set by `make run`, which prints the hint itself


def path_hint(
    argv0: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
    executable: str | None = None,
) -> str | None:
    """How to make `gpucluster` typed in a shell run this one, when it would not (it lives in
    the virtualenv's bin, which a new shell does not have on PATH); None when it would.

    `argv0` is how this process was started (default sys.argv[0]): the `gpucluster` script, or
    with `python -m gpucluster` the `gpucluster` beside `executable` (default sys.executable).
    """
    script = Path(argv0 if argv0 is not None else sys.argv[0])
    if script.name != "gpucluster":
        script = Path(executable or sys.executable).parent / "gpucluster"
    if not script.is_file():
        return None  # nothing to point at
    found = which("gpucluster")
    if found and os.path.samefile(found, script):
        return None
    bin_dir = script.absolute().parent
    where = (
        "gpucluster is not on PATH" if not found else f"gpucluster on PATH is {found}, not this one"
    )
    hint = f'{where}: export PATH="{bin_dir}:$PATH"'
    if (bin_dir / "activate").is_file():
        hint += f" (or: source {bin_dir / 'activate'})"
    return hint
