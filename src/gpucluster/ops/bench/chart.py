"""Throughput against latency across a sweep, as a PNG (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpucluster.errors import InputError

METRICS = {"ttft": ("ttft_ms", "TTFT"), "e2e": ("e2e_ms", "end-to-end latency")}
MARKERS = {"A": "o", "B": "s"}


class ChartError(InputError, RuntimeError):
    """The chart cannot be drawn (matplotlib missing, nothing to plot)."""


def check_chart_support() -> None:
    """Raise ChartError now, before a long run, if matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ChartError("--chart needs matplotlib: pip install matplotlib") from None


def write_chart(report: dict[str, Any], path: Path, metric: str = "ttft") -> Path:
    """Plot, per endpoint, output tokens/s (x) against p50 and p95 `metric` (y, ms), each point
    labelled with its concurrency or rate."""
    check_chart_support()
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    key, title = METRICS[metric]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    plotted = False
    for endpoint in report["endpoints"]:
        runs = [
            r
            for r in report["runs"]
            if r["endpoint"] == endpoint["name"]
            and r["output_throughput"] is not None
            and r[key]["p50"] is not None
        ]
        runs.sort(key=lambda r: r["value"])
        if not runs:
            continue
        plotted = True
        x = [r["output_throughput"] for r in runs]
        name = f"{endpoint['name']} {endpoint.get('model') or ''} ({endpoint['url']})"
        marker = MARKERS.get(endpoint["name"], "^")
        (p50,) = axes.plot(x, [r[key]["p50"] for r in runs], marker=marker, label=f"{name} p50")
        axes.plot(
            x,
            [r[key]["p95"] for r in runs],
            marker=marker,
            linestyle="--",
            color=p50.get_color(),  # one colour per endpoint: solid p50, dashed p95
            label=f"{name} p95",
        )
        for run, px, py in zip(runs, x, (r[key]["p50"] for r in runs)):
            axes.annotate(
                run["label"], (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    if not plotted:
        plt.close(figure)
        raise ChartError("no successful run to plot")
    axes.set_xlabel("output tokens/s")
    axes.set_ylabel(f"{title} (ms)")
    axes.set_title(f"gpucluster bench: throughput vs {title}")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
