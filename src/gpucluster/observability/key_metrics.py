"""Per-key usage metrics: the names and label values the gatekeeper exports.

The gatekeeper (runtime.gatekeeper) serves them on its /metrics; Prometheus scrapes it as job
`gpucluster-edge`; dashboards and rules query them by these names. Label values are bounded:
`key` is a configured key name or NO_KEY, `model` a configured model or adapter id
(`<model>:<adapter>`) or OTHER_MODEL, and the other labels take the values listed here only, so
that no client can add series.
"""

from __future__ import annotations

SCRAPE_JOB = "gpucluster-edge"

KEY_REQUESTS = "gpucluster_key_requests_total"
KEY_PROMPT_TOKENS = "gpucluster_key_prompt_tokens_total"
KEY_COMPLETION_TOKENS = "gpucluster_key_completion_tokens_total"
KEY_ERRORS = "gpucluster_key_errors_total"
KEY_REQUEST_DURATION = "gpucluster_key_request_duration_seconds"
KEY_QUOTA_REFUSALS = "gpucluster_key_quota_refusals_total"
EDGE_REFUSALS = "gpucluster_edge_refusals_total"

NO_KEY = "-"  # requests without a valid key (authentication off, or refused)
OTHER_MODEL = "other"  # a model id that is not configured, or none known (refused at the edge)

STATUS_CLASSES = ("2xx", "4xx", "5xx")
ERROR_CLASSES = ("unauthorized", "rate_limited", "quota_exceeded", "client_error", "server_error")
QUOTAS = ("requests_per_minute", "tokens_per_minute", "concurrent_requests")
EDGE_REFUSAL_REASONS = ("missing_api_key", "invalid_api_key", "rate_limit_exceeded")

# Request duration buckets, seconds: from a cached short answer to a long generation.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def status_class(status: int) -> str:
    """The `status_class` label of an HTTP status (anything below 400 counts as 2xx)."""
    if status >= 500:
        return "5xx"
    return "4xx" if status >= 400 else "2xx"


def error_class(status: int) -> str | None:
    """The `class` label of a failed request's status; None for a success.

    429 from the engine (a full model) is `rate_limited`; `quota_exceeded` comes only from the
    gatekeeper's own quota refusals.
    """
    if status == 401:
        return "unauthorized"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else None
