"""The deploy/ files the package renders from (nginx template, Prometheus, Alertmanager, Grafana).

They ship inside the package as `gpucluster/_deploy` (in a checkout a link to the repository's
deploy/), so an installed package renders the same files an editable checkout does.
"""

from __future__ import annotations

from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent / "_deploy"
NGINX_TEMPLATE = DEPLOY_DIR / "nginx" / "nginx.conf.template"
PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
ALERTMANAGER_CONFIG = DEPLOY_DIR / "alertmanager" / "alertmanager.yml"
DASHBOARDS_DIR = DEPLOY_DIR / "grafana" / "dashboards"
