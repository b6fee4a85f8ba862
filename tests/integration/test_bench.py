"""A tiny `gpucluster bench` against the live platform: the report is complete and consistent."""

from __future__ import annotations

import json

import pytest


@pytest.mark.timeout(900)  # its own waits: bench 600
def test_tiny_bench_reports_consistent_figures(live, tmp_path):
    result = live.cli(
        "bench",
        "--json",
        "--concurrency",
        "1,2",
        "-n",
        "4",
        "--input-tokens",
        "16",
        "--output-tokens",
        "8",
        "--slo-ttft-ms",
        "60000",
        "--chart",
        str(tmp_path / "sweep.png"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["ok"] and report["workload"]["ignore_eos"] is True
    assert [run["label"] for run in report["runs"]] == ["c=1", "c=2"]
    for run in report["runs"]:
        assert (run["requests"], run["ok"], run["failed"]) == (4, 4, 0)
        assert run["output_tokens"] == 4 * 8  # counted from usage; exact with ignore_eos
        assert run["input_tokens"] >= 4 * 16
        assert run["output_throughput"] > 0 and run["goodput"] == run["request_throughput"]
        for metric in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            figures = run[metric]
            assert figures["p50"] <= figures["p90"] <= figures["p95"] <= figures["p99"]
        assert run["ttft_ms"]["p50"] <= run["e2e_ms"]["p50"]
    assert (tmp_path / "sweep.png").stat().st_size > 1000
