"""Prometheus-operator and Grafana-sidecar objects for the KubeRay deployment.

They carry what local and compose mode use, read from deploy/: the rule files of
deploy/prometheus/rules (recording rules with the guide's names, and the alerts) and the
dashboards of deploy/grafana/dashboards, so nothing is written twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpucluster.render.kuberay import NAME, POD_LABELS

# kube-prometheus-stack's Prometheus selects PodMonitors and PrometheusRules by its Helm release
# label; change it (or the Prometheus selectors) to match another installation.
PROMETHEUS_SELECTOR = {"release": "kube-prometheus-stack"}
# The Grafana sidecar of kube-prometheus-stack loads ConfigMaps labelled so.
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
DASHBOARD_FOLDER = NAME


def pod_monitor(*, interval: str = "10s") -> dict[str, Any]:
    """A PodMonitor scraping Ray's metrics export port on the head and every worker."""
    node_labels = {"ray_io_cluster": "ray.io/cluster", "ray_io_node_type": "ray.io/node-type"}
    relabelings = [
        {
            "sourceLabels": [f"__meta_kubernetes_pod_label_{_label_name(pod_label)}"],
            "targetLabel": target,
        }
        for target, pod_label in node_labels.items()
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": f"{NAME}-ray", "labels": {**POD_LABELS, **PROMETHEUS_SELECTOR}},
        "spec": {
            "selector": {"matchLabels": dict(POD_LABELS)},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": interval,
                    "relabelings": relabelings,
                }
            ],
        },
    }


def _label_name(pod_label: str) -> str:
    """How Kubernetes service discovery spells a pod label in a meta label name."""
    return "".join(c if c.isalnum() else "_" for c in pod_label)


def prometheus_rule(rule_files: list[Path]) -> dict[str, Any]:
    """One PrometheusRule holding every group of `rule_files` (Prometheus rule files)."""
    groups: list[dict[str, Any]] = []
    for path in rule_files:
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": NAME, "labels": {**POD_LABELS, **PROMETHEUS_SELECTOR}},
        "spec": {"groups": groups},
    }


def dashboard_config_maps(dashboard_files: list[Path]) -> list[dict[str, Any]]:
    """One ConfigMap per Grafana dashboard JSON file, labelled for the Grafana sidecar."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{NAME}-dashboard-{path.stem}",
                "labels": {**POD_LABELS, **DASHBOARD_LABEL},
                # the sidecar's folderAnnotation (kube-prometheus-stack: grafana_folder)
                "annotations": {"grafana_folder": DASHBOARD_FOLDER},
            },
            "data": {path.name: path.read_text(encoding="utf-8")},
        }
        for path in dashboard_files
    ]
