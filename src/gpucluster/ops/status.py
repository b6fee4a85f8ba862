"""`gpucluster status`: one screen of what runs and how it is doing.

Nodes come from Ray's State API (ops.ray_api) and Serve deployments from Ray's dashboard API;
each node's CPU and memory use, load, latency and autoscaling from Prometheus (Ray's node
metrics and the guide's names). Whatever cannot be read is reported, not fatal.

Every request goes through one `httpx.Client` (`collect_status`'s, else one of its own); tests
give a client on an httpx.MockTransport.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import httpx

from gpucluster.config.names import LLM_DEPLOYMENT_MATCHER
from gpucluster.observability.key_metrics import KEY_COMPLETION_TOKENS, KEY_REQUESTS
from gpucluster.ops.prom import Prometheus, PrometheusUnavailable
from gpucluster.ops.ray_api import ray_nodes
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


# Ray's per-node metrics (its reporter agent, labelled with the node's `ip`): the CPU and memory
# figures the dashboard shows. A host running two Ray nodes reports the same figures twice.
NODE_CPU_PERCENT = "avg by (ip) (ray_node_cpu_utilization)"
NODE_MEM_USED = "avg by (ip) (ray_node_mem_used)"
NODE_MEM_TOTAL = "avg by (ip) (ray_node_mem_total)"


def _nodes(target: Target, prom: Prometheus, client: httpx.Client) -> list[NodeStatus]:
    nodes = ray_nodes(target.endpoints.ray_dashboard, target.ray_headers(), TIMEOUT_S, client)
    try:
        cpu = prom.by_label(NODE_CPU_PERCENT, "ip")
        used = prom.by_label(NODE_MEM_USED, "ip")
        total = prom.by_label(NODE_MEM_TOTAL, "ip")
    except PrometheusUnavailable:  # reported with the deployments below
        cpu, used, total = {}, {}, {}
    return [
        NodeStatus(
            address=node.address,
            state=node.state,
            cpus=node.resources.get("CPU", 0.0),
            gpus=node.resources.get("GPU", 0.0),
            cpu_percent=cpu.get(node.address),
            mem_used_gib=_gib(used.get(node.address)),
            mem_total_gib=_gib(total.get(node.address)),
        )
        for node in nodes
    ]


def _gib(value: float | None) -> float | None:
    return None if value is None else value / 2**30


def _serve_statuses(target: Target, client: httpx.Client) -> dict[tuple[str, str], str]:
    response = client.get(
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
        DeploymentStatus(
            app,
            dep,
            statuses.get((app, dep), "?"),
            current.get((app, dep)),
            target.get((app, dep)),
            starts.get((app, dep)),
        )
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
    rate = prom.scalar(
        f"sum(rate(ray_serve_num_router_requests_total{{{LLM_DEPLOYMENT_MATCHER}}}[5m]))"
    )
    latency = prom.scalar(
        "max(histogram_quantile(0.95, serve_deployment_processing_latency_ms"
        f"{{{LLM_DEPLOYMENT_MATCHER}}}))"
    )
    single = len(models) == 1
    return [
        ModelStatus(
            model=m,
            kv_cache_percent=kv.get(m),
            running=running.get(m),
            waiting=waiting.get(m),
            requests_per_s=rate if single else None,
            p95_latency_ms=latency if single else None,
            p95_ttft_s=ttft.get(m),
            tokens_per_s=tokens.get(m),
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
            model=adapter,
            kv_cache_percent=None,
            running=None,
            waiting=None,
            requests_per_s=rate.get(adapter, 0.0),
            p95_latency_ms=None,
            p95_ttft_s=None,
            tokens_per_s=tokens.get(adapter, 0.0),
            base=base,
        )
        for adapter, base in adapters.items()
    ]


def collect_status(target: Target, client: httpx.Client | None = None) -> PlatformStatus:
    """Everything `status` shows, read through `client` (default: one of its own, closed at the
    end); unreachable sources become `problems`."""
    if client is None:
        with httpx.Client(timeout=TIMEOUT_S) as own:
            return collect_status(target, own)
    status = PlatformStatus()
    statuses: dict[tuple[str, str], str] = {}
    prom = Prometheus(target.endpoints.prometheus, client)
    try:
        status.nodes = _nodes(target, prom, client)
        statuses = _serve_statuses(target, client)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        status.problems.append(
            f"Ray dashboard API unreadable ({type(exc).__name__}): gpucluster health"
        )
    try:
        status.deployments = _deployments(prom, statuses)
        status.models = _models(prom, target.models)
        adapters = {a: m.id for m in target.config.models for a in m.adapter_ids()}
        status.models += _adapters(prom, adapters)
    except PrometheusUnavailable as exc:
        status.problems.append(f"Prometheus unavailable ({exc}): gpucluster logs prometheus")
        status.deployments = [
            DeploymentStatus(a, d, s, None, None, None) for (a, d), s in statuses.items()
        ]
    return status
