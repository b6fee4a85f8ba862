"""Observability: the metric catalogue, recording rules and dashboards as code."""
