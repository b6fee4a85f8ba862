"""One handler for the errors of every `gpucluster` command.

A command lets a gpucluster.errors.GpuClusterError go (ConfigError, UpError, ChatError...); the
handler ends the command as `fail` does (cli/common.py): the message and the error's next step
(`error:` and `next:` on stderr; `{"ok": false, "error": ..., "next": ...}` on stdout with
--json), then exit with the error's exit code (1 an operation failed, 2 bad input).

Every Typer of the CLI is a `Typer` of this module: its commands and groups (a group's callback
runs commands too: bare `gpucluster models`) run under the handler. The CLI's tests
(tests/unit/cli/test_errors_cli.py) walk the whole command tree: a command left out fails there.

Where a command's exit code for an error differs from the error class's, the command says so
around the call with `exiting_with`: `prepare` and `pull` exit 1 on any model error, a source the
hub does not know (HubNotFoundError, bad input elsewhere) included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from gpucluster.cli.common import fail
from gpucluster.errors import GpuClusterError


@contextmanager
def handled(ctx: typer.Context) -> Iterator[None]:
    """Run a command's body: a GpuClusterError ends it with its message, next step and exit
    code; JSON when the command was given --json (its `as_json` parameter)."""
    try:
        yield
    except GpuClusterError as exc:
        fail(str(exc), exc.exit_code, bool(ctx.params.get("as_json")), exc.next_step)


@contextmanager
def exiting_with(code: int) -> Iterator[None]:
    """A GpuClusterError raised in the block ends the command with `code`, whatever its class's."""
    try:
        yield
    except GpuClusterError as exc:
        exc.exit_code = code
        raise


class HandledCommand(TyperCommand):
    """A command run under `handled`."""

    def invoke(self, ctx: typer.Context) -> Any:
        with handled(ctx):
            return super().invoke(ctx)


class HandledGroup(TyperGroup):
    """A group whose callback runs under `handled` (its subcommands are HandledCommands)."""

    def invoke(self, ctx: typer.Context) -> Any:
        with handled(ctx):
            return super().invoke(ctx)


class Typer(typer.Typer):
    """typer.Typer whose commands and groups end on a GpuClusterError through `handled`."""

    def __init__(self, *args: Any, cls: type[TyperGroup] = HandledGroup, **kwargs: Any) -> None:
        super().__init__(*args, cls=cls, **kwargs)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] = HandledCommand, **kwargs: Any
    ) -> Any:
        return super().command(name, cls=cls, **kwargs)
