"""The platform's LLM dashboard (uid gpuclusterLLM): per model TTFT, time per output token, KV
cache, queues, tokens, the autoscaling policy's view, and the tenants' row."""

from __future__ import annotations

from typing import Any

from gpucluster.config.names import LLM_DEPLOYMENT_MATCHER
from gpucluster.observability.catalogue import RATE_WINDOW
from gpucluster.observability.grafana import (
    dashboard,
    percentile_label,
    row,
    stat,
    timeseries,
)
from gpucluster.observability.tenant_panels import tenant_panels

LLM_UID = "gpuclusterLLM"


def _model_quantiles(metric: str, recorded: bool = True) -> list[tuple[str, str]]:
    """p50/p95 per model of a vLLM histogram: a recorded guide name, or an exported _bucket."""
    series = metric if recorded else f"rate({metric}[{RATE_WINDOW}])"
    return [
        (
            f"histogram_quantile({quantile}, sum by (le, model_name) ({series}))",
            f"{percentile_label(quantile)} {{{{model_name}}}}",
        )
        for quantile in (0.5, 0.95)
    ]


def _autoscaling_panels() -> list[dict[str, Any]]:
    """What the LLM autoscaling policy (serving.autoscaling) sees and decides."""
    llm_deployments = f"{{{LLM_DEPLOYMENT_MATCHER}}}"
    changes = "changes(max by (deployment) (ray_gpucluster_autoscaling_desired_replicas)[15m:])"
    return [
        row("Autoscaling"),
        timeseries(
            "LLM replicas: running / desired",
            [
                (
                    f"sum by (deployment) (ray_serve_num_deployment_replicas{llm_deployments})",
                    "running {{deployment}}",
                ),
                (
                    "max by (deployment) (ray_gpucluster_autoscaling_desired_replicas)",
                    "desired {{deployment}}",
                ),
            ],
            description="Healthy LLM replicas, and the count the LLM autoscaling policy wants.",
            width=8,
        ),
        timeseries(
            "Autoscaling signal",
            [
                (
                    "max by (deployment, signal) (ray_gpucluster_autoscaling_signal) == 1",
                    "{{signal}}",
                )
            ],
            description="What drives the policy now: kv_cache, waiting or ongoing (scale-up "
            "pressure), idle (scale-down), steady (between the thresholds), starting.",
            width=8,
        ),
        timeseries(
            "Replica count changes (15 min)",
            [(changes, "{{deployment}}")],
            description="How often the policy changed its decision lately; the decisions "
            "themselves are counted by ray_gpucluster_autoscaling_decisions_total and logged.",
            width=8,
        ),
    ]


def llm_dashboard() -> dict[str, Any]:
    """LLM Dashboard: vLLM engine latency, load, KV cache and token throughput per model, and
    the Tenants row (usage per API key name)."""
    kv_cache = "avg(vllm:gpu_cache_usage_perc) * 100"  # the guide's example panel
    ttft = _model_quantiles("vllm:time_to_first_token_seconds")
    preemptions = f"sum(rate(ray_vllm_num_preemptions_total[{RATE_WINDOW}])) or vector(0)"
    tokens = "sum by (model_name) (rate(vllm:{}_tokens_total[" + RATE_WINDOW + "]))"
    finished = f"sum by (model_name, finished_reason) (rate(ray_vllm_request_success_total[{RATE_WINDOW}]))"
    panels = [
        row("Overview"),
        stat(
            "KV cache usage (%)",
            kv_cache,
            unit="percent",
            red_at=80,
            description="Average KV cache use of the engines; alert threshold 80%.",
        ),
        stat(
            "TTFT p95",
            f"max({ttft[1][0]})",
            unit="s",
            red_at=2,
            description="Time to first token, p95 of the slowest model; alert threshold 2 s.",
        ),
        stat("Running requests", "sum(vllm:num_requests_running)"),
        stat("Waiting requests", "sum(vllm:num_requests_waiting)", red_at=1),
        stat("Generation tokens/s", f"sum(rate(vllm:generation_tokens_total[{RATE_WINDOW}]))"),
        stat(
            "Preemptions/s",
            preemptions,
            red_at=0.01,
            description="Requests preempted for lack of KV cache; above 0 the cache is too small.",
        ),
        row("Latency"),
        timeseries("Time to first token p50 / p95", ttft, unit="s", width=8, red_at=2),
        timeseries(
            "Time per output token p50 / p95",
            _model_quantiles("vllm:time_per_output_token_seconds"),
            description="Time between generated tokens after the first.",
            unit="s",
            width=8,
        ),
        timeseries(
            "End-to-end request latency p50 / p95",
            _model_quantiles("ray_vllm_e2e_request_latency_seconds_bucket", recorded=False),
            description="Time each request spent in the engine, from arrival to its last token.",
            unit="s",
            width=8,
        ),
        row("Load and KV cache"),
        timeseries(
            "KV cache usage by replica (%)",
            [
                (kv_cache, "average"),
                (
                    "100 * max by (model_name, ReplicaId) (vllm:gpu_cache_usage_perc)",
                    "{{model_name}} {{ReplicaId}}",
                ),
            ],
            description="KV cache use of each engine replica; near 100% requests wait or are "
            "preempted.",
            unit="percent",
            width=8,
            red_at=80,
        ),
        timeseries(
            "Requests running / waiting",
            [
                ("sum by (model_name) (vllm:num_requests_running)", "running {{model_name}}"),
                ("sum by (model_name) (vllm:num_requests_waiting)", "waiting {{model_name}}"),
            ],
            description="Requests in the engines' batches, and queued for a slot or KV cache.",
            width=8,
        ),
        timeseries(
            "KV cache preemptions/s",
            [(preemptions, "preemptions")],
            width=8,
            description="Requests preempted (their KV cache evicted) per second.",
        ),
        *_autoscaling_panels(),
        row("Throughput"),
        timeseries(
            "Tokens/s: prompt and generation",
            [
                (tokens.format("prompt"), "prompt {{model_name}}"),
                (tokens.format("generation"), "generation {{model_name}}"),
            ],
            description="Prompt tokens processed and tokens generated per second.",
        ),
        timeseries(
            "Finished requests/s by reason",
            [(finished, "{{model_name}} {{finished_reason}}")],
            description="Requests the engines finished, by reason (stop, length, abort).",
            unit="reqps",
        ),
        *tenant_panels(),
    ]
    return dashboard(
        LLM_UID,
        "LLM Dashboard",
        panels,
        tags=("llm", "vllm"),
        description="vLLM engines: latency, load, KV cache and token throughput per model; "
        "usage per API key.",
    )
