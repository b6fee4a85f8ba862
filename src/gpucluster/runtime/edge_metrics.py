"""The gatekeeper's Prometheus counters (names in observability.key_metrics).

Each EdgeMetrics has its own CollectorRegistry: nothing is registered process-wide, so that
tests build as many as they like. Callers pass label values already bounded (key names, model
ids, NO_KEY, OTHER_MODEL).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from gpucluster.observability import key_metrics as names

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _base(name: str) -> str:
    return name.removesuffix("_total")  # prometheus_client adds the suffix itself


class EdgeMetrics:
    """Requests, tokens, errors and latency by key name and model; refusals by reason."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        key_model = ["key", "model"]
        self._requests = Counter(
            _base(names.KEY_REQUESTS),
            "API requests by key name, model and status class.",
            [*key_model, "status_class"],
            registry=self.registry,
        )
        self._prompt = Counter(
            _base(names.KEY_PROMPT_TOKENS),
            "Prompt tokens the engine reported, by key and model.",
            key_model,
            registry=self.registry,
        )
        self._completion = Counter(
            _base(names.KEY_COMPLETION_TOKENS),
            "Completion tokens the engine reported, by key and model.",
            key_model,
            registry=self.registry,
        )
        self._errors = Counter(
            _base(names.KEY_ERRORS),
            "Failed or refused API requests by key, model and class.",
            [*key_model, "class"],
            registry=self.registry,
        )
        self._duration = Histogram(
            names.KEY_REQUEST_DURATION,
            "Duration of API requests that reached a model, seconds.",
            key_model,
            buckets=names.DURATION_BUCKETS,
            registry=self.registry,
        )
        self._quota = Counter(
            _base(names.KEY_QUOTA_REFUSALS),
            "Requests refused for a key's quota, by quota.",
            ["key", "quota"],
            registry=self.registry,
        )
        self._edge = Counter(
            _base(names.EDGE_REFUSALS),
            "Requests without a valid key refused at the edge.",
            ["reason"],
            registry=self.registry,
        )
        for reason in names.EDGE_REFUSAL_REASONS:  # series from the start: rate() sees the first
            self._edge.labels(reason)

    def request(
        self,
        key: str,
        model: str,
        status: int,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        duration_s: float | None = None,
        error: str | None = None,
    ) -> None:
        """Count one finished or refused request; `error` overrides the class its status gives."""
        self._requests.labels(key, model, names.status_class(status)).inc()
        self._prompt.labels(key, model).inc(prompt_tokens)
        self._completion.labels(key, model).inc(completion_tokens)
        error = error or names.error_class(status)
        if error is not None:
            self._errors.labels(key, model, error).inc()
        if duration_s is not None:
            self._duration.labels(key, model).observe(duration_s)

    def quota_refusal(self, key: str, quota: str) -> None:
        self._quota.labels(key, quota).inc()

    def edge_refusal(self, reason: str) -> None:
        self._edge.labels(reason).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every series."""
        return generate_latest(self.registry)
