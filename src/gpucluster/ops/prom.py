"""A small Prometheus HTTP API client for the operator tools."""

from __future__ import annotations

import math
from typing import Any

import httpx

from gpucluster.errors import GpuClusterError

TARGETS_PATH = "/api/v1/targets"
RAY_JOB = "ray"  # the scrape job of Ray's metrics (deploy/prometheus/prometheus.yml)


class PrometheusUnavailable(GpuClusterError, RuntimeError):
    """Prometheus did not answer; `reason` is the error's type (for reports that keep it short)."""

    next_step = "`gpucluster logs prometheus`"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class Prometheus:
    """Instant queries and the HTTP API of one Prometheus."""

    def __init__(self, base_url: str, client: httpx.Client | None = None, timeout_s: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout_s)

    def api(self, path: str) -> Any:
        """The JSON body of `GET <path>` (such as /api/v1/alerts), as Prometheus sent it."""
        url = f"{self.base_url}{path}"
        try:
            return self.client.get(url).json()
        except (httpx.HTTPError, ValueError) as exc:
            reason = type(exc).__name__
            raise PrometheusUnavailable(f"{url}: {reason}", reason) from None

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (`/api/v1/targets`: labels, scrapeUrl, health, lastError)."""
        body = self.api(TARGETS_PATH)
        try:
            return body["data"]["activeTargets"]
        except (KeyError, TypeError):
            message = body.get("error") if isinstance(body, dict) else None
            raise PrometheusUnavailable(
                f"{self.base_url}{TARGETS_PATH}: {message or 'no activeTargets in the answer'}"
            ) from None

    def ray_targets(self) -> list[dict[str, Any]]:
        """The active targets of Ray's metrics job: one per Ray node's metrics port."""
        return [t for t in self.targets() if t["labels"].get("job") == RAY_JOB]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series `expr` returns now; NaN values are dropped."""
        try:
            response = self.client.get(f"{self.base_url}/api/v1/query", params={"query": expr})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusUnavailable(f"{self.base_url}: {type(exc).__name__}") from None
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"{expr}: {body.get('error', 'query failed')}")
        series = []
        for item in body["data"]["result"]:
            value = float(item["value"][1])
            if not math.isnan(value):
                series.append((item["metric"], value))
        return series

    def scalar(self, expr: str) -> float | None:
        """The single value `expr` returns (the first, if several), or None when it returns none."""
        series = self.query(expr)
        return series[0][1] if series else None

    def by_label(self, expr: str, label: str) -> dict[str, float]:
        """Values of `expr` keyed by one label."""
        return {labels.get(label, ""): value for labels, value in self.query(expr)}
