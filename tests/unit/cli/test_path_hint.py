"""After `make run` the CLI is in .venv/bin, which a new shell does not have on PATH: `up` ends
with how to put it there, unless `gpucluster` already runs this one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gpucluster.cli.common import NO_PATH_HINT_ENV, path_hint
from gpucluster.cli.main import app
from gpucluster.config import load_config
from gpucluster.runtime import platform
from gpucluster.runtime.state import PlatformRecord


@pytest.fixture
def venv(tmp_path):
    """A virtualenv's bin with the gpucluster script, python and activate."""
    bin_dir = tmp_path / "checkout" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("gpucluster", "python", "activate"):
        (bin_dir / name).write_text("#!/bin/sh\n")
    return bin_dir


def test_not_on_path_says_what_to_export(venv):
    hint = path_hint(str(venv / "gpucluster"), which=lambda name: None)
    assert hint == (
        f'gpucluster is not on PATH: export PATH="{venv}:$PATH" (or: source {venv}/activate)'
    )


def test_no_hint_when_path_finds_this_one(venv):
    assert path_hint(str(venv / "gpucluster"), which=lambda name: str(venv / "gpucluster")) is None


def test_another_gpucluster_on_path_is_named(venv, tmp_path):
    other = tmp_path / "other" / "gpucluster"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    hint = path_hint(str(venv / "gpucluster"), which=lambda name: str(other))
    assert hint.startswith(
        f'gpucluster on PATH is {other}, not this one: export PATH="{venv}:$PATH"'
    )


def test_relative_script_and_python_dash_m(venv, monkeypatch):
    monkeypatch.chdir(venv.parent.parent)
    hint = path_hint(".venv/bin/gpucluster", which=lambda name: None)
    assert f'export PATH="{venv}:$PATH"' in hint  # absolute, to paste anywhere
    # `python -m gpucluster`: the script beside the interpreter
    hint = path_hint(
        "/x/gpucluster/__main__.py", which=lambda n: None, executable=str(venv / "python")
    )
    assert f'export PATH="{venv}:$PATH"' in hint
    (venv / "activate").unlink()
    assert path_hint(str(venv / "gpucluster"), which=lambda n: None).endswith(f'"{venv}:$PATH"')


def test_nothing_to_point_at_without_the_script(tmp_path):
    assert (
        path_hint(
            "/x/gpucluster/__main__.py", which=lambda n: None, executable=str(tmp_path / "python")
        )
        is None
    )


@pytest.fixture
def started(tmp_path, monkeypatch, venv):
    """`up` with the platform's start replaced by a result, run as the venv's gpucluster that
    PATH does not find."""
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    monkeypatch.delenv(NO_PATH_HINT_ENV, raising=False)
    monkeypatch.setattr("sys.argv", [str(venv / "gpucluster"), "up"])
    monkeypatch.setattr("gpucluster.cli.common.shutil.which", lambda name: None)
    endpoints = platform.endpoints_for(load_config(None, env={}))
    record = PlatformRecord(0.0, "127.0.0.1:6379", {}, endpoints, models=["m"])
    result = platform.UpResult(already_running=True, record=record, seconds=0.0)
    monkeypatch.setattr(platform, "up", lambda cfg, progress: result)
    return venv


def test_up_ends_with_the_hint_for_people_only(started):
    result = CliRunner().invoke(app, ["up", "--no-fit-check"])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().splitlines()[-1] == (
        f'gpucluster is not on PATH: export PATH="{started}:$PATH" (or: source {started}/activate)'
    )
    result = CliRunner().invoke(app, ["up", "--no-fit-check", "--json"])
    assert result.exit_code == 0, result.output
    assert "PATH" not in result.stdout and json.loads(result.stdout)["ok"] is True


def test_make_run_prints_the_hint_itself(started, monkeypatch):
    monkeypatch.setenv(NO_PATH_HINT_ENV, "1")
    result = CliRunner().invoke(app, ["up", "--no-fit-check"])
    assert result.exit_code == 0, result.output
    assert "not on PATH" not in result.stdout
