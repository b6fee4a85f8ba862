"""A small Prometheus HTTP API client for the operator tools."""

from __future__ import annotations

import math

import httpx


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer."""


class Prometheus:
    """Instant queries against one Prometheus."""

    def __init__(self, base_url: str, client: httpx.Client | None = None, timeout_s: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout_s)

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
