"""`gpucluster status`: one screen of what runs and how it is doing.

Nodes and Serve deployments come from Ray's dashboard API; load, latency and autoscaling
from Prometheus (the guide's names). Whatever cannot be read is reported, not fatal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import httpx

from gpucluster.config.names import LLM_DEPLOYMENT_MATCHER
from gpucluster.observability.key_metrics import KEY_COMPLETION_TOKENS, KEY_REQUESTS
from gpucluster.ops.prom import Prometheus, PrometheusUnavailable
from gpucluster.ops.target import Target

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class NodeStatus:
    address: str
    state: str
    cpus: float
    gpus: float
    cpu_percent: float | None
    mem_used_gib: float | None
    mem_total_gib: float | None


@dataclass(frozen=True)
class DeploymentStatus:
    application: str
    deployment: str
    status: str
    replicas: float | None
    target: float | None
    starts_15m: float | None


@dataclass(frozen=True)
class ModelStatus:
    model: str
    kv_cache_percent: float | None
    running: float | None
    waiting: float | None
    requests_per_s: float | None
    p95_latency_ms: float | None
    p95_ttft_s: float | None
    tokens_per_s: float | None
    base: str | None = None  # a LoRA adapter's base model (`<base>:<adapter>`)


@dataclass
class PlatformStatus:
    nodes: list[NodeStatus] = field(default_factory=list)
    deployments: list[DeploymentStatus] = field(default_factory=list)
    models: list[ModelStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _nodes(target: Target) -> list[NodeStatus]:
    response = httpx.get(
        f"{target.endpoints.ray_dashboard}/nodes?view=summary",
        headers=target.ray_headers(),
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    nodes = []
    for node in response.json()["data"]["summary"]:
        raylet = node.get("raylet", {})
        resources = raylet.get("resourcesTotal", {})
        mem = node.get("mem") or [None, None, None, None]
        nodes.append(
            NodeStatus(
                address=node.get("ip") or raylet.get("nodeManagerAddress", "?"),
                state=raylet.get("state", "?"),
                cpus=resources.get("CPU", 0.0),
                gpus=resources.get("GPU", 0.0),
                cpu_percent=node.get("cpu"),
                mem_used_gib=mem[3] / 2**30 if mem[3] is not None else None,
                mem_total_gib=mem[0] / 2**30 if mem[0] is not None else None,
            )
        )
    return nodes


def _serve_statuses(target: Target) -> dict[tuple[str, str], str]:
    response = httpx.get(
        f"{target.endpoints.ray_dashboard}/api/serve/applications/",
        headers=target.ray_headers(),
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    statuses = {}
    for app_name, app in (response.json().get("applications") or {}).items():
        for name, deployment in (app.get("deployments") or {}).items():
            statuses[(app_name, name)] = deployment.get("status", "?")
    return statuses


def _deployments(prom: Prometheus, statuses: dict[tuple[str, str], str]) -> list[DeploymentStatus]:
    def keyed(expr: str) -> dict[tuple[str, str], float]:
        return {(l.get("application", ""), l.get("deployment", "")): v for l, v in prom.query(expr)}

    current = keyed("ray_serve_num_deployment_replicas")
    target = keyed("max by (application, deployment) (ray_serve_autoscaling_target_replicas)")
    starts = keyed(
        "sum by (application, deployment) (increase(ray_serve_deployment_replica_starts_total[15m]))"
    )
    keys = sorted(set(statuses) | set(current) | set(target))
    return [
        DeploymentStatus(app, dep, statuses.get((app, dep), "?"), current.get((app, dep)),
                         target.get((app, dep)), starts.get((app, dep)))
        for app, dep in keys
    ]


def _models(prom: Prometheus, models: list[str]) -> list[ModelStatus]:
    kv = prom.by_label("100 * avg by (model_name) (vllm:gpu_cache_usage_perc)", "model_name")
    running = prom.by_label("sum by (model_name) (vllm:num_requests_running)", "model_name")
    waiting = prom.by_label("sum by (model_name) (vllm:num_requests_waiting)", "model_name")
    ttft = prom.by_label(
        "histogram_quantile(0.95, sum by (le, model_name) (vllm:time_to_first_token_seconds))",
        "model_name",
    )
    tokens = prom.by_label(
        "sum by (model_name) (rate(vllm:generation_tokens_total[5m]))", "model_name"
    )
    rate = prom.scalar(f"sum(rate(ray_serve_num_router_requests_total{{{LLM_DEPLOYMENT_MATCHER}}}[5m]))")
    latency = prom.scalar(
        "max(histogram_quantile(0.95, serve_deployment_processing_latency_ms"
        f"{{{LLM_DEPLOYMENT_MATCHER}}}))"
    )
    single = len(models) == 1
    return [
        ModelStatus(
            model=m, kv_cache_percent=kv.get(m), running=running.get(m), waiting=waiting.get(m),
            requests_per_s=rate if single else None, p95_latency_ms=latency if single else None,
            p95_ttft_s=ttft.get(m), tokens_per_s=tokens.get(m),
        )
        for m in models
    ]


def _adapters(prom: Prometheus, adapters: dict[str, str]) -> list[ModelStatus]:
    """A row per configured LoRA adapter (`adapters`: its id -> its base): its requests and
    tokens, from the edge's per-key counters (vLLM counts them under the base model)."""
    if not adapters:
        return []
    rate = prom.by_label(f"sum by (model) (rate({KEY_REQUESTS}[5m]))", "model")
    tokens = prom.by_label(f"sum by (model) (rate({KEY_COMPLETION_TOKENS}[5m]))", "model")
    return [
        ModelStatus(
            model=adapter, kv_cache_percent=None, running=None, waiting=None,
            requests_per_s=rate.get(adapter, 0.0), p95_latency_ms=None, p95_ttft_s=None,
            tokens_per_s=tokens.get(adapter, 0.0), base=base,
        )
        for adapter, base in adapters.items()
    ]


def collect_status(target: Target) -> PlatformStatus:
    """Everything `status` shows; unreachable sources become `problems`."""
    status = PlatformStatus()
    statuses: dict[tuple[str, str], str] = {}
    try:
        status.nodes = _nodes(target)
        statuses = _serve_statuses(target)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        status.problems.append(f"Ray dashboard API unreadable ({type(exc).__name__}): gpucluster health")
    prom = Prometheus(target.endpoints.prometheus)
    try:
        status.deployments = _deployments(prom, statuses)
        status.models = _models(prom, target.models)
        adapters = {a: m.id for m in target.config.models for a in m.adapter_ids()}
        status.models += _adapters(prom, adapters)
    except PrometheusUnavailable as exc:
        status.problems.append(f"Prometheus unavailable ({exc}): gpucluster logs prometheus")
        status.deployments = [DeploymentStatus(a, d, s, None, None, None) for (a, d), s in statuses.items()]
    return status
