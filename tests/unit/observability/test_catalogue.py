"""The catalogue covers every name the guide queries; the committed rules match it; promtool agrees."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from gpucluster.observability.catalogue import (
    EDGE_METRICS,
    GUIDE_METRICS,
    GUIDE_QUERIES,
    edge_series,
    exported_sources,
)
from gpucluster.observability.generate import RECORDING_RULES
from gpucluster.observability.rules import render_recording_rules

PROMQL_WORDS = {"rate", "avg", "sum", "histogram_quantile", "by", "bool", "up", "job", "ray"}


def names_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    return {
        token
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges)
        if token not in PROMQL_WORDS
    }


def test_every_guide_query_uses_only_catalogued_names():
    known = {m.name for m in GUIDE_METRICS}
    for expr in GUIDE_QUERIES:
        assert names_in(expr) <= known, expr


def test_every_catalogued_name_is_queried_by_the_guide():
    used = set().union(*(names_in(q) for q in GUIDE_QUERIES))
    assert {m.name for m in GUIDE_METRICS} <= used


def test_names_are_unique_and_sources_are_exported_ray_names():
    names = [m.name for m in GUIDE_METRICS]
    assert len(names) == len(set(names))
    assert all(source.startswith("ray_") for source in exported_sources())


def test_committed_recording_rules_match_the_catalogue():
    assert RECORDING_RULES.read_text() == render_recording_rules(), (
        "run `python -m gpucluster.observability.generate`"
    )


def test_promtool_accepts_the_recording_rules():
    result = subprocess.run(
        ["promtool", "check", "rules", str(RECORDING_RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_recording_rules_compute_quantile_and_mean_from_raw_series(tmp_path: Path):
    """promtool evaluates the rules on a synthetic histogram: the guide's forms give textbook values."""
    # 10 observations per minute: 6 at <=0.1 s, 3 in (0.1, 1], 1 in (1, 10]; sum grows 5 s/min
    series = {"0.1": 6, "1": 9, "10": 10, "+Inf": 10}
    lines = [
        f'      - series: \'ray_vllm_time_to_first_token_seconds_bucket{{model_name="m", le="{le}"}}\'\n'
        f"        values: '0+{per_min}x20'"
        for le, per_min in series.items()
    ]
    lines.append(
        "      - series: 'ray_vllm_time_to_first_token_seconds_count{model_name=\"m\"}'\n        values: '0+10x20'"
    )
    lines.append(
        "      - series: 'ray_vllm_time_to_first_token_seconds_sum{model_name=\"m\"}'\n        values: '0+5x20'"
    )
    test = (
        f"rule_files: [{RECORDING_RULES}]\nevaluation_interval: 1m\ntests:\n"
        "  - interval: 1m\n    input_series:\n" + "\n".join(lines) + "\n"
        "    promql_expr_test:\n"
        # mean: 5 s / 10 observations; median: rank 5 of the 6 in (0, 0.1] -> 0.1 * 5/6
        "      - expr: round(avg(vllm:time_to_first_token_seconds), 0.0001)\n        eval_time: 10m\n"
        "        exp_samples: [{labels: '{}', value: 0.5}]\n"
        "      - expr: round(histogram_quantile(0.5, vllm:time_to_first_token_seconds), 0.0001)\n"
        "        eval_time: 10m\n"
        "        exp_samples: [{labels: '{model_name=\"m\"}', value: 0.0833}]\n"
    )
    path = tmp_path / "test.yml"
    path.write_text(test)
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Labels whose values the gatekeeper bounds: key names, model ids, fixed classes. A label that
# carried a raw header value would let clients grow the series without limit.
BOUNDED_LABELS = {"key", "model", "status_class", "class", "quota", "reason"}


def test_edge_metrics_are_named_like_prometheus_metrics_with_bounded_labels():
    names = [m.name for m in EDGE_METRICS]
    assert len(names) == len(set(names))
    for metric in EDGE_METRICS:
        assert metric.name.startswith("gpucluster_"), metric.name
        assert metric.kind in ("counter", "histogram"), metric.name
        assert metric.name.endswith("_total" if metric.kind == "counter" else "_seconds")
        assert set(metric.labels) <= BOUNDED_LABELS, metric.name
        assert metric.meaning
    assert "gpucluster_key_request_duration_seconds_bucket" in edge_series()
    assert not set(edge_series()) & set(exported_sources())  # not Ray's
