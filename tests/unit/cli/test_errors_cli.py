"""The CLI's one error handler (cli/errors.py): a GpuClusterError a command lets go ends it with
its message, its next step and its class's exit code, in words or in JSON; every command of the
app runs under it."""

from __future__ import annotations

import json

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from gpucluster.cli.common import JsonOption
from gpucluster.cli.errors import HandledCommand, HandledGroup, Typer, exiting_with
from gpucluster.cli.main import app
from gpucluster.errors import GpuClusterError, InputError
from gpucluster.models.hub_errors import HubNotFoundError
from gpucluster.runtime import platform


def commands(command: typer.core.click.Command, path: str = "gpucluster"):
    """(path, command) of `command` and everything under it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, f"{path} {name}")


def test_every_command_and_group_runs_under_the_handler():
    tree = list(commands(typer.main.get_command(app)))
    assert len(tree) > 30
    unhandled = [
        path
        for path, command in tree
        if isinstance(command, TyperGroup)
        and not isinstance(command, HandledGroup)
        or isinstance(command, TyperCommand)
        and not isinstance(command, HandledCommand)
    ]
    assert unhandled == []


class Broken(GpuClusterError):
    next_step = "`gpucluster logs platform`"


@pytest.fixture
def run():
    """An app of the CLI's Typer whose command raises what the test gives it."""
    raised: list[BaseException] = []
    fake = Typer()

    @fake.command("do")
    def do(as_json: JsonOption = False) -> None:
        raise raised[0]

    @fake.command("prepare")
    def prepare(as_json: JsonOption = False) -> None:
        with exiting_with(1):
            raise raised[0]

    def invoke(exc: BaseException, *args: str):
        raised[:] = [exc]
        return CliRunner().invoke(fake, list(args))

    return invoke


def test_an_error_ends_with_its_message_next_step_and_exit_code(run):
    result = run(Broken("the head did not start"), "do")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: the head did not start",
        "next: `gpucluster logs platform`",
    ]
    assert result.stdout == ""
    result = run(Broken("the head did not start"), "do", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": "the head did not start",
        "next": "`gpucluster logs platform`",
    }


def test_bad_input_exits_2_and_an_error_without_a_next_step_says_none(run):
    result = run(InputError("--since: 'x' is not a duration"), "do", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": "--since: 'x' is not a duration",
        "next": None,
    }
    result = run(InputError("no next step"), "do")
    assert (result.exit_code, result.stderr) == (2, "error: no next step\n")


def test_a_raise_sites_next_step_wins_and_a_command_may_set_the_exit_code(run):
    result = run(Broken("x", next_step="gpucluster logs ray"), "do")
    assert "next: gpucluster logs ray" in result.stderr
    # prepare and pull: every model error is a failed operation, a source the hub lacks too
    result = run(HubNotFoundError("org/none is not on the hub"), "prepare", "--json")
    assert result.exit_code == 1 and HubNotFoundError.exit_code == 2
    assert json.loads(result.stdout)["error"] == "org/none is not on the hub"


def test_a_message_is_printed_as_written_not_as_markup(run):
    result = run(Broken("messages[bold] is not [/] markup"), "do")
    assert result.stderr.splitlines()[0] == "error: messages[bold] is not [/] markup"


def test_other_exceptions_are_not_the_handlers(run):
    result = run(KeyError("a bug"), "do")
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


def test_a_groups_callback_runs_under_the_handler():
    group = Typer(invoke_without_command=True)

    @group.callback()
    def listing(ctx: typer.Context, as_json: JsonOption = False) -> None:
        if ctx.invoked_subcommand is None:
            raise InputError("the model cache is not a directory")

    @group.command("du")
    def du() -> None:
        pass

    result = CliRunner().invoke(group, ["--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "the model cache is not a directory"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_up_that_fails_names_the_log_and_stops_its_spinner(cli, monkeypatch):
    def fail(cfg, progress):
        progress("starting Ray")
        progress("loading models (3 s)")
        raise platform.UpError("models did not load within 600 s; see `gpucluster logs serve`")

    monkeypatch.setattr(platform, "up", fail)
    result = cli("up", "--no-fit-check", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": "models did not load within 600 s; see `gpucluster logs serve`",
        "next": "`gpucluster logs platform` shows what `up` did",
    }
    assert result.stderr.splitlines() == ["starting Ray", "loading models (3 s)"]
    result = cli("up", "--no-fit-check")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == [
        "error: models did not load within 600 s; see `gpucluster logs serve`",
        "next: `gpucluster logs platform` shows what `up` did",
    ]


def test_a_bad_config_says_how_to_check_it_again(cli, tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text("platform:\n  portz: {}\n")
    result = cli("status", "-c", str(path))
    assert result.exit_code == 2
    assert "platform.portz: unknown key" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "next: fix what it names, then check with `gpucluster config check`"
    )


def test_an_unset_variable_in_the_config_says_how_to_set_it(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_PORT", raising=False)
    path = tmp_path / "platform.yaml"
    path.write_text("platform:\n  ports:\n    nginx_http: ${NO_SUCH_PORT}\n")
    result = cli("config", "check", "-c", str(path), "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert "environment variable NO_SUCH_PORT is not set" in data["error"]
    assert data["next"].startswith("export the variable")
