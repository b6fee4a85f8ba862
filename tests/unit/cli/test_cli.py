"""The gpucluster command's contract: --json, exit codes, messages (no platform needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpucluster.cli.main import app
from gpucluster.runtime.logs import COMPONENTS

SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    return str(path)


def test_prepare_prints_a_local_model_dir(run, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    result = run(
        "prepare",
        "--json",
        "-c",
        config_file(tmp_path, f"models:\n  - id: m\n    source: {model}\n"),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "models": {"m": str(model)}}


def test_prepare_names_a_missing_source(run, tmp_path):
    missing = tmp_path / "nowhere"
    result = run(
        "prepare",
        "--json",
        "-c",
        config_file(tmp_path, f"models:\n  - id: m\n    source: {missing}\n"),
    )
    assert result.exit_code == 1
    assert str(missing) in json.loads(result.stdout)["error"]


def test_bad_config_is_a_usage_error_naming_the_key(run, tmp_path):
    result = run("up", "--json", "-c", config_file(tmp_path, "platform:\n  portz: {}\n"))
    assert result.exit_code == 2
    assert "platform.portz: unknown key" in json.loads(result.stdout)["error"]


def test_down_with_nothing_running(run):
    result = run("down", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["was_running"] is False


def test_logs_of_an_unknown_component_is_a_usage_error(run):
    result = run("logs", "nope")
    assert result.exit_code == 2
    assert "unknown component 'nope'" in result.output


def test_logs_help_lists_every_component(run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line, however many components
    result = run("logs", "--help")
    assert result.exit_code == 0
    assert f"One of: {', '.join(COMPONENTS)}." in result.output


def test_config_check_and_show(run, tmp_path, monkeypatch):
    monkeypatch.setenv("NGINX_HTTP_PORT", "28080")
    path = config_file(tmp_path, "models:\n  - id: a\n    max_num_seqs: 4\n")
    assert run("config", "check", "-c", path).exit_code == 0
    shown = json.loads(run("config", "show", "--json", "-c", path).stdout)
    assert shown["models"][0]["max_num_seqs"] == 4
    assert shown["platform"]["ports"]["nginx_http"] == 28080


def test_piped_output_does_not_wrap(tmp_path):
    state = tmp_path / ("a-state-dir-with-a-long-name-" * 4)
    (state / "logs").mkdir(parents=True)
    line = "INFO " + " ".join(f"word{i}" for i in range(60))  # some 400 characters
    (state / "logs" / "platform.log").write_text(line + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "GPUCLUSTER_CONFIG")}
    env.update(GPUCLUSTER_STATE_DIR=str(state), PYTHONPATH=str(SRC))
    result = subprocess.run(
        [sys.executable, "-m", "gpucluster", "logs", "platform"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # stdout is a pipe, as in `gpucluster logs | grep`
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"==> {state / 'logs' / 'platform.log'} <==", line]
