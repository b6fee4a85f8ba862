"""The platform's Grafana dashboards as code.

`python -m gpucluster.observability.generate` writes them to deploy/grafana/dashboards/, where
Grafana's file provider loads them (deploy/grafana/provisioning/). A unit test fails when the
committed JSON differs from what this module builds. Generic builders live in `grafana.py`.

Queries use the guide's names (catalogue.GUIDE_METRICS, several provided by our recording
rules) and a few names Ray 2.60 exports as they are. The guide's latency histograms are recorded
as per-bucket series that already hold the 5-minute CDF, so they are read without rate():
`histogram_quantile(q, sum by (le, ...) (NAME))`. A counter that appears only after its first
event is written `... or vector(0)`, so that its panels show 0 rather than "No data".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpucluster.observability.catalogue import RATE_WINDOW
from gpucluster.observability.grafana import (
    dashboard,
    percentile_label,
    query_variable,
    resolve_variables,
    row,
    stat,
    timeseries,
)
from gpucluster.observability.llm_dashboard import llm_dashboard

SERVE_UID = "rayServeDashboard"  # the guide links http://localhost:13000/d/rayServeDashboard
DEPLOYMENT_UID = "rayServeDeploymentDashboard"
# The deployment dashboard's filter; `=~` so that "All" (a regex) keeps the query valid.
CHOSEN_DEPLOYMENTS = 'application=~"$application", deployment=~"$deployment"'
USER_ROUTES = 'route!~"/-/.*"'  # Serve's own health routes (/-/healthz, /-/routes)
DEPLOYMENT_LEGEND = "{{application}} / {{deployment}}"  # legend of per-deployment series
SUM_BY_DEPLOYMENT = "sum by (application, deployment)"


def _selected(name: str, selector: str = "") -> str:
    """`name` with an optional label selector."""
    return f"{name}{{{selector}}}" if selector else name


# Panels both Serve dashboards show; `selector` narrows them to the chosen deployments.


def _latency(selector: str, width: int = 12) -> dict[str, Any]:
    series = _selected("serve_deployment_processing_latency_ms", selector)
    return timeseries(
        "Processing latency p50 / p95 / p99",
        [
            (
                f"histogram_quantile({quantile}, sum by (le, application, deployment) ({series}))",
                f"{percentile_label(quantile)} {DEPLOYMENT_LEGEND}",
            )
            for quantile in (0.5, 0.95, 0.99)
        ],
        description="Time the deployments' replicas spent on a request (5-minute window).",
        unit="ms",
        width=width,
    )


def _throughput(selector: str, width: int = 12) -> dict[str, Any]:
    expr = f"{SUM_BY_DEPLOYMENT} (rate({_selected('ray_serve_num_router_requests_total', selector)}[{RATE_WINDOW}]))"
    return timeseries(
        "Request throughput",
        [(expr, DEPLOYMENT_LEGEND)],
        description="Requests routed to each deployment.",
        unit="reqps",
        width=width,
    )


def _replica_panels(selector: str, desired: bool) -> list[dict[str, Any]]:
    replicas = [
        (
            f"{SUM_BY_DEPLOYMENT} ({_selected('ray_serve_num_deployment_replicas', selector)})",
            f"current {DEPLOYMENT_LEGEND}",
        ),
        (
            f"{SUM_BY_DEPLOYMENT} ({_selected('ray_serve_autoscaling_target_replicas', selector)})",
            f"target {DEPLOYMENT_LEGEND}",
        ),
    ]
    description = "Healthy replicas, and the number the controller is scaling to."
    if desired:
        replicas.append(
            (
                f"{SUM_BY_DEPLOYMENT} ({_selected('ray_serve_autoscaling_desired_replicas', selector)})",
                f"desired {DEPLOYMENT_LEGEND}",
            )
        )
        description += " Desired: the autoscaling policy's decision before min/max bounds."
    starts = f"60 * {SUM_BY_DEPLOYMENT} (rate({_selected('ray_serve_deployment_replica_starts_total', selector)}[{RATE_WINDOW}]))"
    failures = f"60 * {SUM_BY_DEPLOYMENT} (rate({_selected('ray_serve_deployment_replica_failures_total', selector)}[{RATE_WINDOW}]))"
    return [
        row("Replicas and autoscaling"),
        timeseries(
            "Replicas: current / target" + (" / desired" if desired else ""),
            replicas,
            description=description,
            width=8,
        ),
        timeseries(
            "Autoscaling activity (replica starts/min)",
            [(starts, DEPLOYMENT_LEGEND)],
            description="Replicas started per minute: scale-ups and replacements.",
            width=8,
        ),
        timeseries(
            "Replica failures (failed health checks/min)",
            [(failures, DEPLOYMENT_LEGEND)],
            description="Failed replica health checks per minute (a crashed replica fails one).",
            width=8,
            red_at=0.5,
        ),
    ]


def _cluster_panels() -> list[dict[str, Any]]:
    memory_percent = "100 * sum by (ip) (ray_node_mem_used) / sum by (ip) (ray_node_mem_total)"
    return [
        row("Cluster"),
        timeseries(
            "Active nodes",
            [("sum by (node_type) (ray_cluster_active_nodes)", "{{node_type}}")],
            description="Alive Ray nodes by node type.",
            width=6,
        ),
        timeseries(
            "Node CPU and memory (%)",
            [
                ("avg by (ip) (ray_node_cpu_utilization)", "CPU {{ip}}"),
                (memory_percent, "memory {{ip}}"),
            ],
            description="CPU utilization and memory used of each node.",
            unit="percent",
            width=6,
        ),
        timeseries(
            "Component CPU (% of one core)",
            [("topk(10, sum by (Component) (ray_component_cpu_percentage))", "{{Component}}")],
            description="The 10 busiest Ray processes; above 100 a process uses more than a core.",
            unit="percent",
            width=6,
        ),
        timeseries(
            "Component shared memory",
            [("topk(10, sum by (Component) (ray_component_mem_shared_bytes))", "{{Component}}")],
            description="Shared memory of the 10 largest Ray processes.",
            unit="bytes",
            width=6,
        ),
    ]


def serve_dashboard() -> dict[str, Any]:
    """Ray Serve Dashboard: traffic, errors, latency and replicas of every deployment."""
    errors = f"rate(ray_serve_num_router_requests_errors_total{{{USER_ROUTES}}}[{RATE_WINDOW}])"
    requests = f"rate(ray_serve_num_http_requests_total{{{USER_ROUTES}}}[{RATE_WINDOW}])"
    http_latency = f"rate(ray_serve_http_request_latency_ms_bucket{{{USER_ROUTES}}}[{RATE_WINDOW}])"
    panels = [
        row("Overview"),
        stat(
            "Requests/s",
            f"sum(rate(ray_serve_num_router_requests_total[{RATE_WINDOW}]))",
            unit="reqps",
        ),
        stat(
            "5xx error ratio",
            f"100 * sum({errors}) / clamp_min(sum({requests}), 1e-9)",
            description="Share of HTTP requests answered with a 5xx (5-minute window).",
            unit="percent",
            red_at=1,
        ),
        stat(
            "Slowest deployment p95",
            f"max({_latency('')['targets'][1]['expr']})",
            description="The highest p95 processing latency among the deployments.",
            unit="ms",
        ),
        stat("Healthy replicas", "sum(ray_serve_num_deployment_replicas)"),
        stat("Target replicas", "sum(ray_serve_autoscaling_target_replicas)"),
        stat("Ongoing HTTP requests", "sum(ray_serve_num_ongoing_http_requests) or vector(0)"),
        row("Traffic and errors"),
        _throughput(""),
        timeseries(
            "Error rate (5xx)",
            [(f"sum by (application, route) ({errors})", "{{application}} {{route}}")],
            description="HTTP requests answered with a 5xx, by application and route.",
            unit="reqps",
        ),
        row("Latency"),
        _latency(""),
        timeseries(
            "HTTP request latency p50 / p95 / p99",
            [
                (
                    f"histogram_quantile({quantile}, sum by (le, application) ({http_latency}))",
                    f"{percentile_label(quantile)} {{{{application}}}}",
                )
                for quantile in (0.5, 0.95, 0.99)
            ],
            description="Latency seen by Serve's HTTP proxy, per application.",
            unit="ms",
        ),
        *_replica_panels("", desired=False),
        *_cluster_panels(),
    ]
    return dashboard(
        SERVE_UID,
        "Ray Serve Dashboard",
        panels,
        tags=("ray-serve",),
        description="Request throughput, errors, latency percentiles and replicas of Ray Serve.",
    )


def deployment_dashboard() -> dict[str, Any]:
    """Ray Serve Deployment Dashboard: the same signals for the chosen application/deployment."""
    replicas = "ray_serve_num_deployment_replicas"
    variables = [
        query_variable("application", "Application", f"label_values({replicas}, application)"),
        query_variable(
            "deployment",
            "Deployment",
            f'label_values({replicas}{{application=~"$application"}}, deployment)',
        ),
    ]
    app_errors = 'ray_serve_num_router_requests_errors_total{application=~"$application"}'
    app_error_rate = f"sum by (application, route) (rate({app_errors}[{RATE_WINDOW}]))"
    panels = [
        row("Overview"),
        stat("Healthy replicas", f"sum({_selected(replicas, CHOSEN_DEPLOYMENTS)})"),
        stat(
            "Target replicas",
            f"sum({_selected('ray_serve_autoscaling_target_replicas', CHOSEN_DEPLOYMENTS)})",
        ),
        stat(
            "Requests/s",
            f"sum(rate({_selected('ray_serve_num_router_requests_total', CHOSEN_DEPLOYMENTS)}[{RATE_WINDOW}]))",
            unit="reqps",
        ),
        stat(
            "Slowest p95",
            f"max({_latency(CHOSEN_DEPLOYMENTS)['targets'][1]['expr']})",
            description="The highest p95 processing latency among the chosen deployments.",
            unit="ms",
        ),
        stat(
            "Replica starts (1h)",
            f"sum(increase({_selected('ray_serve_deployment_replica_starts_total', CHOSEN_DEPLOYMENTS)}[1h]))",
        ),
        stat(
            "Replica failures (1h)",
            f"sum(increase({_selected('ray_serve_deployment_replica_failures_total', CHOSEN_DEPLOYMENTS)}[1h]))",
            red_at=1,
        ),
        row("Traffic and latency"),
        _throughput(CHOSEN_DEPLOYMENTS, width=8),
        _latency(CHOSEN_DEPLOYMENTS, width=8),
        timeseries(
            "Application 5xx errors",
            [(app_error_rate, "{{application}} {{route}}")],
            description="5xx answers of the chosen applications (no deployment label on errors).",
            unit="reqps",
            width=8,
        ),
        *_replica_panels(CHOSEN_DEPLOYMENTS, desired=True),
    ]
    return dashboard(
        DEPLOYMENT_UID,
        "Ray Serve Deployment Dashboard",
        panels,
        variables=variables,
        tags=("ray-serve",),
        description="Chosen Serve deployments in detail.",
    )


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard, by the file name it is written to."""
    return {
        "ray-serve.json": serve_dashboard(),
        "ray-serve-deployment.json": deployment_dashboard(),
        "llm.json": llm_dashboard(),
    }


def render_dashboards() -> dict[str, str]:
    """Every dashboard's file text (stable: sorted keys, indent 2, trailing newline)."""
    return {
        name: json.dumps(board, indent=2, sort_keys=True) + "\n"
        for name, board in dashboards().items()
    }


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) of every target, runnable as is against Prometheus.

    Template variables become a regex matching every value, as Grafana's "All" does (panels use
    them only in `=~` matchers).
    """
    queries = []
    for board in dashboards().values():
        names = {variable["name"] for variable in board["templating"]["list"]}
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = resolve_variables(target["expr"], names)
                queries.append((board["uid"], panel["title"], expr))
    return queries


def write_dashboards(directory: Path) -> list[Path]:
    """Write every dashboard into `directory` (created if missing); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_dashboards().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
