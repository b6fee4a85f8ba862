"""The LLM dashboard's "Tenants" row: usage, errors, refusals and latency per API key name.

Read from the gatekeeper's metrics (catalogue.EDGE_METRICS, Prometheus job gpucluster-edge).
Their `key` label is a key name from the key store or config, never a raw key, so the number of
series is bounded by the number of keys. Counters that exist only after their first event are
written `... or vector(0)`, as elsewhere, so that a quiet platform shows 0, not "No data".
"""

from __future__ import annotations

from typing import Any

from gpucluster.observability.catalogue import RATE_WINDOW
from gpucluster.observability.grafana import row, timeseries

PROMPT = "gpucluster_key_prompt_tokens_total"
COMPLETION = "gpucluster_key_completion_tokens_total"


def tokens_per_hour_by_key() -> str:
    """Prompt + completion tokens of the trailing hour, per key name.

    `a + b` keeps only series present in both; `or a or b` keeps a key whose requests so far
    reported only one of the two counters (an embedding has no completion tokens).
    """
    prompt, completion = f"increase({PROMPT}[1h])", f"increase({COMPLETION}[1h])"
    return f"sum by (key) (({prompt} + {completion}) or {prompt} or {completion})"


def tenant_panels() -> list[dict[str, Any]]:
    """The row header and its six panels (two lines of three)."""
    requests = f"sum by (key) (rate(gpucluster_key_requests_total[{RATE_WINDOW}]))"
    duration = f"rate(gpucluster_key_request_duration_seconds_bucket[{RATE_WINDOW}])"
    errors = f"sum by (key, class) (rate(gpucluster_key_errors_total[{RATE_WINDOW}])) or vector(0)"
    quota = f"sum by (key, quota) (rate(gpucluster_key_quota_refusals_total[{RATE_WINDOW}])) or vector(0)"
    keyless = f"sum by (reason) (rate(gpucluster_edge_refusals_total[{RATE_WINDOW}])) or vector(0)"
    return [
        row("Tenants"),
        timeseries(
            "Tokens per hour by key",
            [(tokens_per_hour_by_key(), "{{key}}")],
            description="Prompt + completion tokens of the trailing hour per API key name "
            "(the engine's usage, as `gpucluster usage --by key` counts them).",
            width=8,
        ),
        timeseries(
            "Requests/s by key",
            [(requests, "{{key}}")],
            description="Requests per API key name, refused ones included; `-` is traffic "
            "without a valid key.",
            unit="reqps",
            width=8,
        ),
        timeseries(
            "Request duration p95 by key",
            [(f"histogram_quantile(0.95, sum by (le, key) ({duration}))", "{{key}}")],
            description="p95 of the time from admission to the last byte, per API key name.",
            unit="s",
            width=8,
        ),
        timeseries(
            "Errors/s by key and class",
            [(errors, "{{key}} {{class}}")],
            description="Failed or refused requests per key name: unauthorized, rate_limited, "
            "quota_exceeded, client_error (other 4xx), server_error (5xx).",
            unit="reqps",
            width=8,
        ),
        timeseries(
            "Quota refusals/s by key",
            [(quota, "{{key}} {{quota}}")],
            description="429s for a key's quota (requests_per_minute, tokens_per_minute, "
            "concurrent_requests); a refusal lasting 5 minutes fires KeyQuotaExhausted.",
            unit="reqps",
            width=8,
            red_at=0.01,
        ),
        timeseries(
            "Refusals/s without a valid key",
            [(keyless, "{{reason}}")],
            description="Traffic with no or an unknown key: 401s (missing_api_key, "
            "invalid_api_key) and 429s of the per-address limit (rate_limit_exceeded).",
            unit="reqps",
            width=8,
        ),
    ]
