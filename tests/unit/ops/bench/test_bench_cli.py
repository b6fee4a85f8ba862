"""`gpucluster bench` as a command: --json, tables, exit codes 0/1/2, the chart (fake server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import gpucluster.cli.bench as bench_cli
from gpucluster.cli.bench import bench
from gpucluster.cli.errors import Typer

URL = "http://a.test/v1"


@pytest.fixture
def servers(make_fake):
    return {"a.test": make_fake(), "b.test": make_fake(model="other-model")}


@pytest.fixture
def run(servers, make_client, monkeypatch, tmp_path):
    # The command's only network access is the shared client: point it at the fakes.
    monkeypatch.setattr(bench_cli, "open_client", lambda connections, timeout: make_client(servers))
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "160")
    app = Typer()  # the CLI's: its commands end on a GpuClusterError with its exit code
    app.command("bench")(bench)
    app.callback()(lambda: None)  # keep `bench` a subcommand, as in the real app
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["bench", *args])


def test_json_report_of_a_concurrency_sweep(run, servers):
    result = run("--url", URL, "--concurrency", "1,4", "-n", "8", "--output-tokens", "5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["endpoints"] == [{"name": "A", "url": URL, "model": "fake-model"}]
    assert [r["label"] for r in report["runs"]] == ["c=1", "c=4"]
    assert all(r["output_tokens"] == 8 * 5 for r in report["runs"])
    assert len(servers["a.test"].bodies) == 1 + 16  # one warm-up request, then the runs


def test_failed_requests_exit_1(run, servers, make_fake):
    servers["a.test"] = make_fake(fail_every=3)
    result = run("--url", URL, "-n", "9", "--warmup", "0", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["runs"][0]["failed"] == 3


def test_tables_show_throughput_latency_goodput_and_ratios(run):
    # The real clock runs here: high rates keep the Poisson waits short.
    result = run(
        "--url",
        URL,
        "--rate",
        "50,100",
        "-n",
        "6",
        "--slo-ttft-ms",
        "500",
        "--compare",
        "http://b.test/v1",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    for text in (
        "throughput",
        "latency (ms)",
        "goodput req/s (TTFT<=500ms)",
        "B / A",
        "r=50",
        "r=100",
        "TPOT",
        "ITL",
        "E2E",
        "other-model",
    ):
        assert text in result.stdout, text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "2", "--rate", "1"], "not both"),
        (["--concurrency", "1,x"], "--concurrency: 'x' is not valid"),
        (["--rate", "0"], "--rate: '0' is not valid"),
        (["--rate", "1,inf"], "--rate: 'inf' is not valid"),
        (["--compare-model", "m"], "need --compare URL"),
        (["--chart", "out.svg"], "should end in .png"),
        (["--chart", "out.png", "--chart-metric", "itl"], "--chart-metric"),
        (["--compare", "b.test"], "not an http(s) URL"),
    ],
)
def test_usage_errors_exit_2(run, args, message):
    result = run("--url", URL, *args, "--json")
    assert result.exit_code == 2
    assert message in json.loads(result.stdout)["error"]


def test_a_bad_prompts_file_names_the_line(run, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": 5}\n')
    result = run("--url", URL, "--prompts", str(path), "--json")
    assert result.exit_code == 2
    assert f"{path}:2:" in json.loads(result.stdout)["error"]


def test_prompts_file_sets_max_tokens_per_line(run, servers, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "a b c", "max_tokens": 3}\n{"messages": [{"role": "user", "content": "d"}]}\n'
    )
    result = run("--url", URL, "--prompts", str(path), "-n", "4", "--output-tokens", "7", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"][0]["output_tokens"] == 3 + 7 + 3 + 7


def test_an_unreachable_endpoint_exits_1_with_the_reason(run):
    result = run("--url", "http://down.test/v1", "--json")
    assert result.exit_code == 1
    assert "cannot reach http://down.test/v1/models" in json.loads(result.stdout)["error"]


def test_a_refused_warmup_suggests_no_ignore_eos(run, servers, make_fake):
    servers["a.test"] = make_fake(fail_every=1, fail_status=400)
    result = run("--url", URL, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "warm-up request to A (http://a.test/v1, model fake-model) failed: HTTP 400" in error
    assert "pass --no-ignore-eos" in error


def test_chart_is_a_png(run, tmp_path):
    chart = tmp_path / "sweep.png"
    result = run(
        "--url",
        URL,
        "--concurrency",
        "1,2,4",
        "-n",
        "4",
        "--chart",
        str(chart),
        "--compare",
        "http://b.test/v1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chart"] == str(chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_default_endpoint_is_the_platforms_openai_api(run, monkeypatch):
    from gpucluster.config import load_config
    from gpucluster.ops.target import load_target

    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    expected = load_target(load_config(None)).endpoints.openai_api.rstrip("/")
    result = run("--json")  # the fake client knows no such host: nothing leaves the process
    assert result.exit_code == 1
    assert f"cannot reach {expected}/models" in json.loads(result.stdout)["error"]


def test_every_option_is_documented():
    doc = (Path(__file__).resolve().parents[4] / "docs" / "bench.md").read_text()
    app = typer.Typer(add_completion=False)
    app.command()(bench)
    command = typer.main.get_command(app)  # one command: the command itself
    options = {
        opt
        for param in command.params
        for opt in (*param.opts, *getattr(param, "secondary_opts", ()))
        if opt.startswith("--")
    }
    assert len(options) > 20
    assert sorted(o for o in options if f"`{o}" not in doc and f" {o}" not in doc) == []
