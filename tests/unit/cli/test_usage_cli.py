"""`gpucluster usage` as people and scripts see it: tables, --json, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from gpucluster.cli.main import app


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    return tmp_path / "state"


@pytest.fixture
def run(state):
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["usage", *args])


@pytest.fixture
def logged(state, write_usage, make_usage_record):
    """Three teams' traffic in the last hours, one old request, refusals and an error."""
    now = datetime.now(UTC)
    write_usage(
        state / "logs" / "usage.jsonl.1",
        [
            make_usage_record(now - timedelta(days=2), key="team-c", prompt_tokens=999),
            make_usage_record(now - timedelta(hours=3), key="team-b", prompt_tokens=100),
        ],
    )
    write_usage(
        state / "logs" / "usage.jsonl",
        [
            make_usage_record(now - timedelta(minutes=20)),
            make_usage_record(
                now - timedelta(minutes=10),
                status=429,
                refused="quota_exceeded",
                prompt_tokens=0,
                completion_tokens=0,
                ttft_ms=None,
                duration_ms=0.3,
            ),
            make_usage_record(
                now - timedelta(minutes=5),
                key="team-b",
                model="other",
                status=500,
                prompt_tokens=0,
                completion_tokens=0,
                ttft_ms=None,
            ),
        ],
    )
    return state


def test_json_totals_per_key_over_the_default_day(run, logged):
    result = run("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["by"] == "key" and data["since"] == "24h"
    rows = {row["name"]: row for row in data["groups"]}
    assert set(rows) == {"team-a", "team-b"}  # team-c's request is two days old
    assert rows["team-b"]["total_tokens"] == 120 and rows["team-b"]["errors"] == 1
    assert rows["team-a"]["refused_by_code"] == {"quota_exceeded": 1}
    total = data["total"]
    assert (total["requests"], total["refused"], total["errors"], total["total_tokens"]) == (
        4,
        1,
        1,
        150,
    )
    assert data["note"] is None and data["unreadable_lines"] == 0


def test_since_and_by_narrow_and_regroup(run, logged):
    data = json.loads(run("--since", "1h", "--by", "model", "--json").stdout)
    assert [(row["name"], row["requests"]) for row in data["groups"]] == [("m", 2), ("other", 1)]
    week = json.loads(run("--since", "7d", "--json").stdout)
    assert week["total"]["prompt_tokens"] == 999 + 100 + 10 + 0 + 0


def test_people_get_a_table_with_a_total_row_and_the_refusal_codes(run, logged):
    result = run("--since", "1h")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "Usage by key, last 1h" in result.stdout
    assert any(line.split()[:3] == ["team-a", "2", "1"] for line in lines)
    assert any(line.split()[:2] == ["total", "3"] for line in lines)
    assert "refused by code: team-a: quota_exceeded 1" in result.stdout


def test_a_config_file_names_the_state_dir(tmp_path, monkeypatch, write_usage, make_usage_record):
    monkeypatch.delenv("GPUCLUSTER_STATE_DIR", raising=False)
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    elsewhere = tmp_path / "elsewhere"
    write_usage(elsewhere / "logs" / "usage.jsonl", [make_usage_record(datetime.now(UTC))])
    config = tmp_path / "platform.yaml"
    config.write_text(f"platform:\n  state_dir: {elsewhere}\n")
    result = CliRunner().invoke(app, ["usage", "-c", str(config), "--json"])
    assert json.loads(result.stdout)["total"]["requests"] == 1


def test_no_log_yet_is_said_plainly_and_is_not_a_failure(run, state):
    result = run()
    assert result.exit_code == 0
    assert "No usage recorded yet" in result.stdout and "usage.jsonl" in result.stdout
    data = json.loads(run("--json").stdout)
    assert data["ok"] is True and data["groups"] == [] and data["total"]["requests"] == 0
    assert data["note"].startswith("No usage recorded yet")


def test_an_empty_window_is_said_plainly(run, state, write_usage, make_usage_record):
    write_usage(
        state / "logs" / "usage.jsonl",
        [
            make_usage_record(datetime.now(UTC) - timedelta(hours=2)),
        ],
    )
    result = run("--since", "30m")
    assert result.exit_code == 0
    assert "No requests in the last 30m" in result.stdout


def test_only_old_rotated_files_mean_an_empty_window_not_an_empty_log(
    run, state, write_usage, make_usage_record
):
    write_usage(
        state / "logs" / "usage.jsonl.1",
        [
            make_usage_record(datetime.now(UTC) - timedelta(days=3)),
        ],
    )  # the current file is being rotated: only .1 exists
    assert "No requests in the last 1h" in run("--since", "1h").stdout


def test_lines_that_are_not_records_are_reported(run, state, write_usage, make_usage_record):
    write_usage(
        state / "logs" / "usage.jsonl",
        [make_usage_record(datetime.now(UTC))],
        tail='garbage\n{"time": "2025-',
    )
    result = run()
    assert result.exit_code == 0
    assert "1 line(s) of the usage log were not usage records" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since: 'yesterday' is not a duration"),
        (["--by", "team"], "--by: 'team' is not a grouping"),
    ],
)
def test_bad_options_exit_2_and_say_what_to_write(run, state, args, message):
    result = run(*args, "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["error"].startswith(message)


def test_an_unreadable_log_exits_1(run, state, write_usage, make_usage_record):
    write_usage(state / "logs" / "usage.jsonl", [make_usage_record(datetime.now(UTC))])
    (state / "logs" / "usage.jsonl.1").mkdir()
    result = run("--json")
    assert result.exit_code == 1
    assert "cannot read the usage log" in json.loads(result.stdout)["error"]
