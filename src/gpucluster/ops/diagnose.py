"""`gpucluster diagnose`: the guide's troubleshooting procedures, as rules over evidence.

`gather()` reads the platform over HTTP, Prometheus and the host (ports, GPU, logs) into a
Snapshot; each rule is a pure function of the Snapshot returning findings with the evidence
(value and the query or command) and the step to take. Findings come out most severe first.

`gather()` sends every request through one `httpx.Client` (its caller's, else one of its own);
tests give a client on an httpx.MockTransport.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx

from gpucluster.config.guide_errors import GUIDE_ERROR_LINES, fixes_for
from gpucluster.config.names import llm_deployment_name
from gpucluster.ops.health import RAY_HEAD_RECOVERY
from gpucluster.ops.prom import TARGETS_PATH, Prometheus, PrometheusUnavailable
from gpucluster.ops.target import Target
from gpucluster.runtime.gpus import nvidia_smi_installed
from gpucluster.runtime.logs import component_files, find_lines
from gpucluster.runtime.processes import held_ports
from gpucluster.runtime.readiness import health_status, port_accepts
from gpucluster.runtime.state import RAY_SD_FILE

RUNBOOK = "docs/runbooks/alerts.md"
TIMEOUT_S = 3.0  # each request's (the Ray dashboard probe: port_accepts's 2 s)
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
P95_LATENCY = "histogram_quantile(0.95, serve_deployment_processing_latency_ms)"
P95_TTFT = "histogram_quantile(0.95, vllm:time_to_first_token_seconds)"
P95_TPOT = "histogram_quantile(0.95, vllm:time_per_output_token_seconds)"
KV_HIGH = 0.8
# The guide's request-latency bound. An LLM request's time includes every output token, so
# diagnose also reads the two latencies a user feels: the wait for the first token (the bound
# of the HighTimeToFirstToken alert) and the pace of the rest (2 tokens/s: slower than reading).
LATENCY_HIGH_MS = 5000
TTFT_HIGH_S = 2.0
TPOT_HIGH_S = 0.5


@dataclass(frozen=True)
class Finding:
    severity: str  # critical | warning | info
    title: str
    evidence: str
    step: str


@dataclass
class Snapshot:
    """What diagnose saw. None means "could not be read"."""

    running: bool = False
    # where it looked, for the evidence: the platform's Prometheus and Ray metrics URLs
    prometheus_url: str = ""
    ray_metrics_url: str = ""
    api_status: int | None = None
    busy_ports: dict[str, str] = field(default_factory=dict)  # "name (port)" -> owner
    wants_gpu: bool = False
    gpu_tool: bool = False
    sd_targets: int | None = None
    prometheus_up: bool = False
    ray_targets_down: list[str] = field(default_factory=list)
    metrics_port_up: bool = False
    ray_head_up: bool = True
    kv_cache: float | None = None
    waiting: float | None = None
    p95_latency_ms: float | None = None
    p95_ttft_s: float | None = None
    p95_tpot_s: float | None = None
    replicas: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # deployment -> (now, max)
    error_lines: list[str] = field(default_factory=list)


def gather(target: Target, client: httpx.Client | None = None) -> Snapshot:
    """Read every source diagnose uses, over HTTP through `client` (default: one of its own,
    closed at the end)."""
    if client is None:
        with httpx.Client(timeout=TIMEOUT_S) as own:
            return gather(target, own)
    snap = Snapshot(
        running=target.running,
        prometheus_url=target.endpoints.prometheus,
        ray_metrics_url=target.endpoints.ray_metrics,
    )
    snap.api_status = health_status(
        f"{target.endpoints.openai_api}/models",
        timeout_s=TIMEOUT_S,
        headers=target.auth_headers,
        client=client,
    )
    if snap.api_status is None:
        for held in held_ports(target.config.platform):
            snap.busy_ports[f"{held.name} ({held.port})"] = held.owner or "another process"
    snap.wants_gpu = any(m.accelerator == "gpu" for m in target.config.models)
    snap.gpu_tool = nvidia_smi_installed()
    try:
        snap.sd_targets = sum(
            len(g.get("targets", [])) for g in json.loads(RAY_SD_FILE.read_text())
        )
    except (OSError, ValueError):
        snap.sd_targets = None
    snap.metrics_port_up = (
        health_status(target.endpoints.ray_metrics, timeout_s=TIMEOUT_S, client=client) == 200
    )
    snap.ray_head_up = port_accepts(target.endpoints.ray_dashboard, client=client)
    _gather_metrics(snap, Prometheus(target.endpoints.prometheus, client), target)
    files = component_files(target.state, "serve") + component_files(target.state, "platform")
    snap.error_lines = find_lines(files, GUIDE_ERROR_LINES, limit=5)
    return snap


def _gather_metrics(snap: Snapshot, prom: Prometheus, target: Target) -> None:
    try:
        ray_targets = prom.ray_targets()
    except PrometheusUnavailable:
        return
    snap.prometheus_up = True
    snap.ray_targets_down = [t["scrapeUrl"] for t in ray_targets if t["health"] != "up"]
    try:
        snap.kv_cache = prom.scalar("avg(vllm:gpu_cache_usage_perc)")
        snap.waiting = prom.scalar("sum(vllm:num_requests_waiting)")
        snap.p95_latency_ms = prom.scalar(f"max({P95_LATENCY})")
        snap.p95_ttft_s = prom.scalar(f"max({P95_TTFT})")
        snap.p95_tpot_s = prom.scalar(f"max({P95_TPOT})")
        current = prom.by_label("ray_serve_num_deployment_replicas", "deployment")
    except PrometheusUnavailable:
        return
    bounds = {llm_deployment_name(m.id): m.replicas.max for m in target.config.models}
    snap.replicas = {d: (now, bounds[d]) for d, now in current.items() if d in bounds}


# --- rules: Snapshot -> findings ---------------------------------------------------------


def rule_ray_head(s: Snapshot) -> list[Finding]:
    if not s.running or s.ray_head_up:
        return []
    return [
        Finding(
            "critical",
            "The Ray head is down",
            "the Ray dashboard port does not accept connections while the platform "
            "record says it runs; Serve and the models went with it",
            f"gpucluster logs ray (why it stopped); then {RAY_HEAD_RECOVERY}: Serve and "
            "the models come back with it",
        )
    ]


def rule_not_running(s: Snapshot) -> list[Finding]:
    if s.api_status is not None:
        return []
    ports = "; ".join(f"{p} held by {owner}" for p, owner in s.busy_ports.items())
    if s.busy_ports and not s.running:
        return [
            Finding(
                "critical",
                "Ports the platform needs are taken",
                f"busy: {ports} (platform not running)",
                "Stop what holds them (lsof -i :PORT) or set other ports in the config "
                "(NGINX_HTTP_PORT, RAY_DASHBOARD_PORT, platform.ports.*); then gpucluster up",
            )
        ]
    return [
        Finding(
            "critical",
            "The API does not answer",
            "GET /v1/models through nginx: no answer",
            "gpucluster logs platform; gpucluster logs serve; then gpucluster down && gpucluster up",
        )
    ]


def rule_gpu(s: Snapshot) -> list[Finding]:
    if s.wants_gpu and not s.gpu_tool:
        return [
            Finding(
                "critical",
                "A model asks for GPUs but none is visible",
                "accelerator: gpu in the config; nvidia-smi not found",
                "Install the NVIDIA driver / expose GPUs to this host, or set accelerator: cpu",
            )
        ]
    return []


def rule_engine_errors(s: Snapshot) -> list[Finding]:
    if not s.error_lines:
        return []
    fixes = "; ".join(fixes_for(s.error_lines[-3:]))
    return [
        Finding(
            "critical",
            "The engine logged start-up errors",
            " | ".join(s.error_lines[-3:]),
            f"{fixes}; gpucluster logs engine; see docs/operator-guide.md#out-of-memory",
        )
    ]


def rule_metrics(s: Snapshot) -> list[Finding]:
    findings = []
    if not s.prometheus_up:
        findings.append(
            Finding(
                "critical",
                "Metrics not appearing: Prometheus does not answer",
                f"GET {s.prometheus_url}{TARGETS_PATH} failed",
                "gpucluster logs prometheus; gpucluster logs supervisor (it restarts Prometheus)",
            )
        )
    if s.sd_targets is None or s.sd_targets == 0:
        findings.append(
            Finding(
                "critical",
                "Metrics not appearing: no service discovery targets",
                f"{RAY_SD_FILE}: {'missing' if s.sd_targets is None else 'no targets'}",
                "Ray writes it at start: check gpucluster logs ray; restart the platform",
            )
        )
    if s.ray_targets_down:
        findings.append(
            Finding(
                "critical",
                "Metrics not appearing: Ray targets down",
                f'up{{job="ray"}} == 0 for {", ".join(s.ray_targets_down)}',
                f"curl {s.ray_targets_down[0]}; {RUNBOOK}#raytargetdown",
            )
        )
    if not s.metrics_port_up and s.api_status is not None:
        findings.append(
            Finding(
                "critical",
                "Metrics not appearing: Ray metrics port does not answer",
                f"GET {s.ray_metrics_url} failed",
                "gpucluster logs ray",
            )
        )
    return findings


def rule_saturation(s: Snapshot) -> list[Finding]:
    findings = []
    if s.kv_cache is not None and s.kv_cache > KV_HIGH:
        findings.append(
            Finding(
                "warning",
                "KV cache nearly full",
                f"avg(vllm:gpu_cache_usage_perc) = {s.kv_cache:.2f} (> {KV_HIGH})",
                f"{RUNBOOK}#kvcachesaturation: add replicas (replicas.max), more KV cache "
                "(cpu_kvcache_gib / gpu_memory_utilization) or a shorter max_model_len",
            )
        )
    if s.waiting is not None and s.waiting > 0:
        at_max = [d for d, (now, most) in s.replicas.items() if now >= most]
        scale = (
            f"; {', '.join(at_max)} already at replicas.max: raise it"
            if at_max
            else "; the autoscaler should add replicas"
        )
        findings.append(
            Finding(
                "warning",
                "Requests are queueing",
                f"sum(vllm:num_requests_waiting) = {s.waiting:g}",
                f"{RUNBOOK}#requestswaiting{scale}",
            )
        )
    return findings + _latency(s)


def _latency(s: Snapshot) -> list[Finding]:
    """The guide's High Latency check, read the way LLM traffic needs: a request's time grows
    with its output, so a slow request is one whose first token or whose pace is slow."""
    slow_first = s.p95_ttft_s is not None and s.p95_ttft_s > TTFT_HIGH_S
    slow_pace = s.p95_tpot_s is not None and s.p95_tpot_s > TPOT_HIGH_S
    long_requests = s.p95_latency_ms is not None and s.p95_latency_ms > LATENCY_HIGH_MS
    if not (slow_first or slow_pace or long_requests):
        return []
    evidence = "; ".join(
        f"{query} = {value}"
        for query, value in (
            (P95_LATENCY, _or_none(s.p95_latency_ms, "{:.0f} ms")),
            (P95_TTFT, _or_none(s.p95_ttft_s, "{:.2f} s")),
            (P95_TPOT, _or_none(s.p95_tpot_s, "{:.3f} s")),
        )
    )
    unknown = s.p95_ttft_s is None or s.p95_tpot_s is None
    if slow_first or slow_pace or unknown:
        what = (
            "first tokens are slow"
            if slow_first
            else "tokens come slowly"
            if slow_pace
            else "the token latencies are unknown"
        )
        return [
            Finding(
                "warning",
                f"High latency: {what}",
                evidence,
                f"{RUNBOOK}#highprocessinglatency: check KV cache and waiting requests "
                f"first (time to first token > {TTFT_HIGH_S:g} s or time per output "
                f"token > {TPOT_HIGH_S:g} s at p95)",
            )
        ]
    return [
        Finding(
            "info",
            "Long generations, not slow ones",
            f"{evidence}: requests take over {LATENCY_HIGH_MS} ms because they generate "
            "many tokens, while the first token and the pace are fine",
            f"Nothing to fix. HighProcessingLatency may fire for them "
            f"({RUNBOOK}#highprocessinglatency); clients can lower max_tokens",
        )
    ]


def _or_none(value: float | None, pattern: str) -> str:
    return "no data" if value is None else pattern.format(value)


RULES: list[Callable[[Snapshot], list[Finding]]] = [
    rule_not_running,
    rule_ray_head,
    rule_gpu,
    rule_engine_errors,
    rule_metrics,
    rule_saturation,
]


def diagnose(snapshot: Snapshot) -> list[Finding]:
    """Every rule's findings, most severe first."""
    findings = [finding for rule in RULES for finding in rule(snapshot)]
    return sorted(findings, key=lambda f: SEVERITY_ORDER[f.severity])


def needs_action(findings: list[Finding]) -> bool:
    """Whether any finding is a warning or worse (`diagnose` then exits 1); info is context."""
    return any(f.severity != "info" for f in findings)


def as_dicts(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]
