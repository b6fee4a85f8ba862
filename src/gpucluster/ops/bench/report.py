"""The benchmark report: one JSON-ready object with a list of runs and, with two endpoints,
the ratios B/A per sweep point."""

from __future__ import annotations

from typing import Any

from gpucluster.ops.bench.runner import Endpoint, RunResult
from gpucluster.ops.bench.stats import Slo, request_detail, run_stats
from gpucluster.ops.bench.workload import Workload

# ratio name -> (run figure, percentile key or None for a plain number)
RATIOS: dict[str, tuple[str, str | None]] = {
    "request_throughput": ("request_throughput", None),
    "output_throughput": ("output_throughput", None),
    "goodput": ("goodput", None),
    "ttft_p50": ("ttft_ms", "p50"),
    "tpot_p50": ("tpot_ms", "p50"),
    "itl_p50": ("itl_ms", "p50"),
    "e2e_p50": ("e2e_ms", "p50"),
}


def run_entry(result: RunResult, slo: Slo, details: bool = False) -> dict[str, Any]:
    """One run as reported: which endpoint and sweep point, and every figure of `run_stats`."""
    spec = result.spec
    entry: dict[str, Any] = {
        "endpoint": result.endpoint.name,
        "url": result.endpoint.base_url,
        "model": result.endpoint.model,
        "label": spec.label,
        "mode": spec.mode,
        "value": spec.value,
        **run_stats(result.records, result.duration, slo),
    }
    if details:
        entry["details"] = [request_detail(r, result.start) for r in result.records]
    return entry


def build_report(
    results: list[RunResult],
    endpoints: list[Endpoint],
    workload: Workload,
    slo: Slo,
    *,
    ignore_eos: bool,
    details: bool = False,
) -> dict[str, Any]:
    """The whole benchmark: settings, runs in the order they ran, comparisons when two endpoints."""
    runs = [run_entry(result, slo, details) for result in results]
    return {
        "ok": all(run["failed"] == 0 for run in runs),
        "endpoints": [e.describe() for e in endpoints],
        "workload": {**workload.describe(), "ignore_eos": ignore_eos},
        "slo": slo.as_dict(),
        "runs": runs,
        "comparisons": comparisons(runs) if len(endpoints) > 1 else [],
    }


def comparisons(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sweep point, B's figure over A's for throughput and p50 latencies."""
    by_point: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_point.setdefault((run["mode"], run["value"]), {})[run["endpoint"]] = run
    rows = []
    for (mode, value), pair in by_point.items():
        a, b = pair.get("A"), pair.get("B")
        if a is None or b is None:
            continue
        rows.append(
            {
                "label": a["label"],
                "mode": mode,
                "value": value,
                "ratios": {
                    name: ratio(_figure(b, key, q), _figure(a, key, q))
                    for name, (key, q) in RATIOS.items()
                },
            }
        )
    return rows


def ratio(b: float | None, a: float | None) -> float | None:
    """b / a, or None when either is missing or a is zero."""
    if a is None or b is None or a == 0:
        return None
    return b / a


def _figure(run: dict[str, Any], key: str, quantile: str | None) -> float | None:
    value = run.get(key)
    return value.get(quantile) if quantile and isinstance(value, dict) else value
