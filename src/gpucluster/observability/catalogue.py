"""The metric catalogue: every name the operator guide (and our dashboards) query, where it comes from.

Ray 2.60 with vLLM 0.29 exports other names than the guide uses (vLLM's metrics come prefixed
`ray_vllm_`, some guide names are not exported at all). Each guide name that Ray does not
export itself is provided by a Prometheus recording rule generated from this catalogue
(`deploy/prometheus/rules/guide-names.yml`).

Histograms: the guide reads them as `histogram_quantile(0.95, NAME)` (no `rate`) and also as
`avg(NAME)`. The recorded series for such a NAME carry one sample per bucket (`le`): the
bucket's share of the last 5 minutes' observations (the rate-based CDF), scaled by the mean
over that window divided by the average of those shares. Quantiles are scale-invariant, so
`histogram_quantile(q, NAME)` is the correct windowed quantile; and averaging over the buckets
cancels the scaling, so `avg(NAME)` is the mean. Without observations in the window the name
has no series (not NaN). docs/operator-guide.md shows the textbook forms next to the guide's.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE_WINDOW = "5m"


@dataclass(frozen=True)
class GuideMetric:
    """One name the guide uses."""

    name: str
    meaning: str
    sources: tuple[str, ...]  # exported series it is computed from (or the name itself)
    expr: str | None = None  # recording rule; None when Ray exports the name as is
    lazy_sources: tuple[str, ...] = ()  # exported only once something happens (a failure)

    @property
    def recorded(self) -> bool:
        return self.expr is not None


def _scaled_cdf(source: str, by: str) -> str:
    """Per-bucket series whose quantiles and average are the windowed quantiles and mean."""
    w = RATE_WINDOW
    cdf = (
        f"sum by ({by}, le) (rate({source}_bucket[{w}]))"
        f" / ignoring(le) group_left() sum by ({by}) (rate({source}_count[{w}]))"
    )
    mean = f"sum by ({by}) (rate({source}_sum[{w}])) / sum by ({by}) (rate({source}_count[{w}]))"
    share_avg = (
        f"avg by ({by}) (sum by ({by}, le) (rate({source}_bucket[{w}]))"
        f" / ignoring(le) group_left() sum by ({by}) (rate({source}_count[{w}])))"
    )
    # no observations in the window: no series (rather than NaN, which histogram_quantile would
    # read as the top bucket and fire latency alerts on an idle platform)
    seen = f"sum by ({by}) (rate({source}_count[{w}])) > 0"
    return f"(({cdf}) * ignoring(le) group_left() ({mean} / {share_avg})) and ignoring(le) ({seen})"


def _gauge_or_idle_zero(source: str) -> str:
    """An engine gauge, or 0 for each live replica whose engine has not stepped lately.

    vLLM sets its gauges only when the engine steps, and Ray drops a gauge that was not set for
    two export intervals: an idle engine's `running`, `waiting` and KV cache gauges vanish. For
    a live replica (healthy per the Serve controller) whose engine has served before (its
    counters exist), no recent step means idle, so the value is 0.
    """
    live = 'label_replace(ray_serve_deployment_replica_healthy == 1, "ReplicaId", "$1", "replica", "(.*)")'
    idle = f"0 * max by (ReplicaId, model_name) (ray_vllm_prompt_tokens_total) and on(ReplicaId) {live}"
    return f"{source} or on(ReplicaId) ({idle})"


def _or_zero(expr: str, like: str) -> str:
    """`expr`, or 0 for every series of `like` when `expr` has none yet (lazy counters)."""
    return f"({expr}) or ({like} * 0)"


GUIDE_METRICS: tuple[GuideMetric, ...] = (
    GuideMetric("ray_cluster_active_nodes", "Alive Ray nodes.", ("ray_cluster_active_nodes",)),
    GuideMetric(
        "ray_component_cpu_percentage",
        "CPU use of each Ray component process, percent of one core.",
        ("ray_component_cpu_percentage",),
    ),
    GuideMetric(
        "ray_component_mem_shared_bytes",
        "Shared memory of each Ray component process (Ray exports it as ray_component_shared_bytes).",
        ("ray_component_shared_bytes",),
        "ray_component_shared_bytes",
    ),
    GuideMetric(
        "ray_serve_num_router_requests_total",
        "Requests routed to each deployment (counter; read with rate()).",
        ("ray_serve_num_router_requests_total",),
    ),
    GuideMetric(
        "ray_serve_num_router_requests_errors_total",
        "Requests answered with a 5xx, by application, route and method (counter; 0 until one fails).",
        ("ray_serve_num_http_requests_total",),
        _or_zero(
            'sum by (application, route, method) (ray_serve_num_http_requests_total{status_code=~"5.."})',
            "sum by (application, route, method) (ray_serve_num_http_requests_total)",
        ),
    ),
    GuideMetric(
        "ray_serve_num_deployment_replicas",
        "Healthy running replicas of each deployment.",
        ("ray_serve_deployment_replica_healthy",),
        "sum by (application, deployment) (ray_serve_deployment_replica_healthy)",
    ),
    GuideMetric(
        "ray_serve_deployment_replica_starts_total",
        "Replica starts of each LLM deployment (scale-ups and replacements), counted by the "
        "autoscaling policy. Ray's own series of this name, one per replica and born at 1, stay "
        "beside it; rate() over them is 0.",
        ("ray_gpucluster_replica_starts_total",),
        "sum by (application, deployment) (ray_gpucluster_replica_starts_total)",
    ),
    GuideMetric(
        "ray_serve_deployment_replica_failures_total",
        "Failed replica health checks by deployment (counter; 0 until one fails). A crashed "
        "replica fails its next health check.",
        ("ray_serve_deployment_replica_healthy",),
        _or_zero(
            "sum by (application, deployment) (ray_serve_health_check_failures_total)",
            "sum by (application, deployment) (ray_serve_deployment_replica_healthy)",
        ),
        lazy_sources=("ray_serve_health_check_failures_total",),
    ),
    GuideMetric(
        "serve_deployment_processing_latency_ms",
        "Time each deployment's replicas spent on a request, ms (5-minute window; see the module "
        "docstring for how quantiles and avg() read it).",
        (
            "ray_serve_deployment_processing_latency_ms_bucket",
            "ray_serve_deployment_processing_latency_ms_sum",
            "ray_serve_deployment_processing_latency_ms_count",
        ),
        _scaled_cdf("ray_serve_deployment_processing_latency_ms", "application, deployment"),
    ),
    GuideMetric(
        "vllm:time_to_first_token_seconds",
        "Time to first token, s (5-minute window, per model).",
        (
            "ray_vllm_time_to_first_token_seconds_bucket",
            "ray_vllm_time_to_first_token_seconds_sum",
            "ray_vllm_time_to_first_token_seconds_count",
        ),
        _scaled_cdf("ray_vllm_time_to_first_token_seconds", "model_name"),
    ),
    GuideMetric(
        "vllm:time_per_output_token_seconds",
        "Time per output token after the first, s (5-minute window, per model).",
        (
            "ray_vllm_request_time_per_output_token_seconds_bucket",
            "ray_vllm_request_time_per_output_token_seconds_sum",
            "ray_vllm_request_time_per_output_token_seconds_count",
        ),
        _scaled_cdf("ray_vllm_request_time_per_output_token_seconds", "model_name"),
    ),
    GuideMetric(
        "vllm:gpu_cache_usage_perc",
        "KV cache use of each engine, 0-1 (GPU or, on CPU, the VLLM_CPU_KVCACHE_SPACE cache).",
        (
            "ray_vllm_kv_cache_usage_perc",
            "ray_vllm_prompt_tokens_total",
            "ray_serve_deployment_replica_healthy",
        ),
        _gauge_or_idle_zero("ray_vllm_kv_cache_usage_perc"),
    ),
    GuideMetric(
        "vllm:num_requests_running",
        "Requests each engine is running.",
        (
            "ray_vllm_num_requests_running",
            "ray_vllm_prompt_tokens_total",
            "ray_serve_deployment_replica_healthy",
        ),
        _gauge_or_idle_zero("ray_vllm_num_requests_running"),
    ),
    GuideMetric(
        "vllm:num_requests_waiting",
        "Requests queued in each engine, waiting for KV cache or a batch slot.",
        (
            "ray_vllm_num_requests_waiting",
            "ray_vllm_prompt_tokens_total",
            "ray_serve_deployment_replica_healthy",
        ),
        _gauge_or_idle_zero("ray_vllm_num_requests_waiting"),
    ),
    GuideMetric(
        "vllm:prompt_tokens_total",
        "Prompt tokens processed (counter).",
        ("ray_vllm_prompt_tokens_total",),
        "ray_vllm_prompt_tokens_total",
    ),
    GuideMetric(
        "vllm:generation_tokens_total",
        "Tokens generated (counter).",
        ("ray_vllm_generation_tokens_total",),
        "ray_vllm_generation_tokens_total",
    ),
)


@dataclass(frozen=True)
class PlatformMetric:
    """A metric the platform's own services export (not Ray's or vLLM's), with its labels."""

    name: str
    kind: str  # "counter" or "histogram"
    labels: tuple[str, ...]
    meaning: str
    # A labelled series exists only after its first event (prometheus_client creates a label
    # set on first use): panels read it with `or vector(0)`.
    lazy: bool = False

    @property
    def series(self) -> tuple[str, ...]:
        """The names Prometheus stores: a histogram's _bucket, _sum and _count."""
        if self.kind == "histogram":
            return tuple(f"{self.name}_{part}" for part in ("bucket", "sum", "count"))
        return (self.name,)


# The gatekeeper's /metrics, scraped as job EDGE_JOB. Label values are bounded: `key` is a
# configured key name or "-" (no valid key), `model` a configured model id or "other".
EDGE_JOB = "gpucluster-edge"
EDGE_METRICS: tuple[PlatformMetric, ...] = (
    PlatformMetric(
        "gpucluster_key_requests_total",
        "counter",
        ("key", "model", "status_class"),
        "Requests per key name and model by status class (2xx, 4xx, 5xx), refusals included.",
    ),
    PlatformMetric(
        "gpucluster_key_prompt_tokens_total",
        "counter",
        ("key", "model"),
        "Prompt tokens per key name and model, from the engine's usage.",
    ),
    PlatformMetric(
        "gpucluster_key_completion_tokens_total",
        "counter",
        ("key", "model"),
        "Completion tokens per key name and model, from the engine's usage.",
    ),
    PlatformMetric(
        "gpucluster_key_errors_total",
        "counter",
        ("key", "model", "class"),
        "Failed or refused requests by class: unauthorized, rate_limited, quota_exceeded, "
        "client_error, server_error.",
        lazy=True,
    ),
    PlatformMetric(
        "gpucluster_key_request_duration_seconds",
        "histogram",
        ("key", "model"),
        "Request duration per key name and model, s.",
    ),
    PlatformMetric(
        "gpucluster_key_quota_refusals_total",
        "counter",
        ("key", "quota"),
        "Requests refused for a key's quota: requests_per_minute, tokens_per_minute or "
        "concurrent_requests.",
        lazy=True,
    ),
    PlatformMetric(
        "gpucluster_edge_refusals_total",
        "counter",
        ("reason",),
        "Refusals of traffic without a valid key: missing_api_key, invalid_api_key, "
        "rate_limit_exceeded (per client address).",
        lazy=True,
    ),
)


def edge_series() -> list[str]:
    """Every series name the gatekeeper exports (what dashboards and alerts may read)."""
    return sorted({series for metric in EDGE_METRICS for series in metric.series})


def guide_metric(name: str) -> GuideMetric:
    """The catalogue entry of `name`; KeyError when the guide does not use it."""
    for metric in GUIDE_METRICS:
        if metric.name == name:
            return metric
    raise KeyError(name)


def exported_sources() -> list[str]:
    """Every exported series name the catalogue relies on (a rename must fail CI)."""
    return sorted({source for metric in GUIDE_METRICS for source in metric.sources})


# Every PromQL expression the operator guide gives, typed as written (alert conditions included).
GUIDE_QUERIES: tuple[str, ...] = (
    "ray_cluster_active_nodes",
    "ray_component_cpu_percentage",
    "ray_component_mem_shared_bytes",
    "ray_serve_num_router_requests_total",
    "ray_serve_num_deployment_replicas",
    "serve_deployment_processing_latency_ms",
    "ray_serve_deployment_replica_starts_total",
    "vllm:time_to_first_token_seconds",
    "vllm:time_per_output_token_seconds",
    "vllm:gpu_cache_usage_perc",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "rate(ray_serve_num_router_requests_total[5m])",
    "histogram_quantile(0.95, serve_deployment_processing_latency_ms)",
    "avg(vllm:gpu_cache_usage_perc)",
    "avg(vllm:gpu_cache_usage_perc) * 100",
    "avg(vllm:time_to_first_token_seconds)",
    "histogram_quantile(0.95, vllm:time_to_first_token_seconds)",
    "rate(ray_serve_num_router_requests_errors_total[5m])",
    "rate(vllm:generation_tokens_total[5m])",
    "rate(ray_serve_deployment_replica_starts_total[5m])",
    "avg(vllm:gpu_cache_usage_perc) > 0.8",
    "vllm:num_requests_waiting > 0",
    "histogram_quantile(0.95, serve_deployment_processing_latency_ms) > 5000",
    'up{job="ray"} == 0',
    "rate(ray_serve_deployment_replica_failures_total[5m]) > 0",
)
