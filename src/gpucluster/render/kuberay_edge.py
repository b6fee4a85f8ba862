"""The platform's nginx edge on Kubernetes (the way to it, a Gateway API route or an Ingress,
is render/kuberay_routes.py).

The edge is the one local mode and compose run: deploy/nginx/nginx.conf.template rendered with
the values `container_nginx_values` gives compose's nginx container (render/container.py), from
the same config, then pointed at the RayService's Services instead of containers:

- nginx (the image compose runs, NGINX_IMAGE) proxies `/v1`, `/tokenize`, `/detokenize` and
  `/health` to Serve's HTTP proxy through KubeRay's Service `gpu-cluster-serve-svc`, and
  `/dashboard/` (basic auth from a Secret, read-only as everywhere) to the head's dashboard
  through `gpu-cluster-head-svc`. Kubernetes keeps those Services current, so no upstream
  watcher runs: the upstreams file holds the Service, as local mode's holds Serve's proxy
  until a replica's own port opens.
- the gatekeeper (runtime.gatekeeper: keys, per-key rate limits and quotas, usage log and
  metrics) runs beside it in the pod, from the platform image, as a native sidecar: it starts
  before nginx and stops after nginx has drained. The replicas report usage to it through the
  edge's Service, as they do to the one on the head host elsewhere.

One edge pod: the gatekeeper's limits and quotas are counted per gatekeeper (see the operator
guide, "One count for the whole platform"). No Ray import: the CLI renders these.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from gpucluster.config import Config
from gpucluster.render.container import container_nginx_values
from gpucluster.render.kuberay import (
    API_KEYS_DIR,
    API_KEYS_FILE,
    API_KEYS_SECRET,
    DASHBOARD_PORT,
    EDGE_SERVICE,
    FS_GROUP,
    HEAD_SERVICE,
    IMAGE,
    MODEL_CACHE,
    NAME,
    POD_LABELS,
    RAY_TOKEN_SECRET,
    SERVE_SERVICE,
)
from gpucluster.render.kuberay_monitoring import PROMETHEUS_SELECTOR
from gpucluster.runtime.edge import render_nginx_conf
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.upstreams import upstream_servers

EDGE_NAME = EDGE_SERVICE  # the ConfigMap, Deployment, Service and PodMonitor of the edge
EDGE_LABELS = {**POD_LABELS, "app.kubernetes.io/component": "edge"}
# The nginx image deploy/compose runs (its `nginx` service); it has envsubst (docker-library).
NGINX_IMAGE = "nginx:1.27.3-alpine"
NGINX_UID = 101  # the image's user `nginx`
PLATFORM_UID = 1000  # the platform image's user `ray` (deploy/docker/Dockerfile), group FS_GROUP

# The ConfigMap's files, mounted read-only.
CONFIG_DIR = "/etc/gpucluster/edge"
NGINX_CONF_KEY = "nginx.conf"
UPSTREAMS_KEY = "upstreams.conf"
GATEKEEPER_CONFIG_KEY = "platform.json"
# /dashboard's logins: nginx's auth_basic_user_file (`user:{SHA-512 crypt}` lines), read at each
# request, so a changed Secret takes effect once the kubelet refreshes the mounted file.
DASHBOARD_LOGINS_SECRET = f"{NAME}-dashboard-logins"
DASHBOARD_LOGINS_KEY = "htpasswd"
DASHBOARD_LOGINS_DIR = "/etc/gpucluster/dashboard-logins"
# The gatekeeper's state (usage log, keys' last use): the pod's own, gone with the pod.
POD_STATE_DIR = "/var/lib/gpucluster"
# nginx gets Ray's token from the Secret KubeRay reads too, substituted into the rendered
# config when the container starts (the token is not in the ConfigMap).
RAY_TOKEN_ENV = "GPUCLUSTER_RAY_TOKEN"
RAY_TOKEN_PLACEHOLDER = "${" + RAY_TOKEN_ENV + "}"
RUNTIME_CONF = "/tmp/nginx.conf"  # the config with the token, in the pod's own /tmp (0600)
# The Prometheus job of the gatekeeper's metrics elsewhere (deploy/prometheus/prometheus.yml).
EDGE_JOB = "gpucluster-edge"

NGINX_RESOURCES = {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
GATEKEEPER_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "128Mi"},  # about 50 MiB when it starts
    "limits": {"memory": "512Mi"},
}
# Start: Ray's token into the rendered config, then wait until nginx accepts it: `nginx -t`
# fails while KubeRay has not yet created the Services its upstreams name (they are resolved
# once, at start; a Service's address does not change). nginx stays PID 1 for the signals.
NGINX_START = f"""\
set -e
umask 077
envsubst '{RAY_TOKEN_PLACEHOLDER}' < {CONFIG_DIR}/{NGINX_CONF_KEY} > {RUNTIME_CONF}
until nginx -t -q -e /dev/stderr -c {RUNTIME_CONF}; do
  echo "waiting for the Services {SERVE_SERVICE} and {HEAD_SERVICE} (the RayService's)" >&2
  sleep 5
done
exec nginx -e /dev/stderr -c {RUNTIME_CONF} -g 'daemon off;'
"""
# Stop: a few seconds for the endpoint removal to reach the Gateway, then nginx's graceful
# shutdown (SIGQUIT to its master, PID 1: stop accepting, finish open streams), as local mode's
# `down` and compose do; the kubelet's SIGTERM (a fast stop) comes once this returns.
NGINX_PRE_STOP = "sleep 5; kill -QUIT 1; while kill -0 1 2> /dev/null; do sleep 1; done"


def kubernetes_nginx_values(config: Config) -> dict[str, str]:
    """The template's values for the edge pod: compose's nginx container's, pointed at the
    RayService's Services, the gatekeeper beside it and the mounted Secret and ConfigMap."""
    ports = config.platform.ports
    values = container_nginx_values(
        config, StateDir(Path(POD_STATE_DIR)), RAY_TOKEN_PLACEHOLDER, HEAD_SERVICE
    )
    return {
        **values,
        "GATEKEEPER_UPSTREAM": f"127.0.0.1:{ports.gatekeeper}",  # the sidecar
        "DASHBOARD_UPSTREAM": f"{HEAD_SERVICE}:{DASHBOARD_PORT}",
        "NGINX_HTPASSWD_FILE": f"{DASHBOARD_LOGINS_DIR}/{DASHBOARD_LOGINS_KEY}",
        "SERVE_UPSTREAMS_FILE": f"{CONFIG_DIR}/{UPSTREAMS_KEY}",
    }


def gatekeeper_config(config: Config) -> Config:
    """The config the edge's gatekeeper runs with: `config` with the pod's paths, none of the
    host that renders (the committed file is the same wherever it is rendered).

    Keys come from the Secret (as the replicas read them), not from `api_keys_file`; the named
    key store would be the pod's own (POD_STATE_DIR, gone with the pod), so there is none.
    """
    platform = config.platform
    security = platform.security.model_copy(update={"api_keys_file": None, "keys_file": None})
    platform = platform.model_copy(
        update={
            "state_dir": Path(POD_STATE_DIR),
            "model_cache_dir": Path(MODEL_CACHE),  # unused by the gatekeeper; the pods' path
            "security": security,
        }
    )
    return config.model_copy(update={"platform": platform})


def edge_config_map(config: Config) -> dict[str, Any]:
    """The rendered nginx config (Ray's token as a placeholder), its upstreams file and the
    gatekeeper's effective config."""
    ports = config.platform.ports
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": EDGE_NAME, "labels": dict(EDGE_LABELS)},
        "data": {
            NGINX_CONF_KEY: render_nginx_conf(kubernetes_nginx_values(config)),
            UPSTREAMS_KEY: upstream_servers(SERVE_SERVICE, [], ports.serve_http),
            GATEKEEPER_CONFIG_KEY: gatekeeper_config(config).model_dump_json(indent=2) + "\n",
        },
    }


def _nginx_container(config: Config) -> dict[str, Any]:
    return {
        "name": "nginx",
        "image": NGINX_IMAGE,
        "command": ["sh", "-c", NGINX_START],
        "env": [
            {
                "name": RAY_TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": RAY_TOKEN_SECRET, "key": "auth_token"}},
            }
        ],
        "ports": [
            {"name": "http", "containerPort": config.platform.ports.nginx_http, "protocol": "TCP"}
        ],
        # nginx itself answers; whether the models do is /health's business (through it)
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", NGINX_PRE_STOP]}}},
        "resources": NGINX_RESOURCES,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NGINX_UID,
            "runAsGroup": NGINX_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,  # pid, temp files and the config live in /tmp
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "edge-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "dashboard-logins", "mountPath": DASHBOARD_LOGINS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _gatekeeper_container(config: Config, image: str) -> dict[str, Any]:
    port = config.platform.ports.gatekeeper
    health = {"httpGet": {"path": "/healthz", "port": "gatekeeper"}}
    return {
        "name": "gatekeeper",
        "image": image,
        # a native sidecar (an init container that keeps running): up before nginx, stopped
        # after it
        "restartPolicy": "Always",
        "command": ["python", "-m", "gpucluster.runtime.gatekeeper"],
        "args": [
            "--config-json",
            f"{CONFIG_DIR}/{GATEKEEPER_CONFIG_KEY}",
            # all interfaces: the replicas' usage reports and Prometheus come through the pod IP
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--key-file",
            API_KEYS_FILE,  # the replicas' keys: the same Secret, the same names
        ],
        "ports": [{"name": "gatekeeper", "containerPort": port, "protocol": "TCP"}],
        "startupProbe": {**health, "periodSeconds": 2, "failureThreshold": 90},
        "readinessProbe": {**health, "periodSeconds": 10},
        "livenessProbe": {**health, "periodSeconds": 10, "failureThreshold": 6},
        "resources": GATEKEEPER_RESOURCES,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PLATFORM_UID,
            "runAsGroup": FS_GROUP,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "edge-config", "mountPath": CONFIG_DIR, "readOnly": True},
            # the whole Secret as a directory (no subPath), so a rotated key reaches the pod
            {"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True},
            {"name": "state", "mountPath": POD_STATE_DIR},
        ],
    }


def edge_deployment(config: Config, *, image: str = IMAGE) -> dict[str, Any]:
    """One edge pod: nginx, with the gatekeeper as its sidecar. A changed ConfigMap changes the
    pod template's checksum annotation, so `kubectl apply` rolls the pod."""
    data = edge_config_map(config)["data"]
    checksum = hashlib.sha256(
        "".join(f"{k}\0{v}\0" for k, v in sorted(data.items())).encode()
    ).hexdigest()
    # local mode's `down` drains for shutdown_grace_s; the preStop sleep and a margin on top
    grace = math.ceil(config.platform.shutdown_grace_s) + 30
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": EDGE_NAME, "labels": dict(EDGE_LABELS)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(EDGE_LABELS)},
            # the new pod serves before the old one drains
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": dict(EDGE_LABELS),
                    "annotations": {"checksum/config": checksum},
                },
                "spec": {
                    "securityContext": {"fsGroup": FS_GROUP},
                    "terminationGracePeriodSeconds": grace,
                    "initContainers": [_gatekeeper_container(config, image)],
                    "containers": [_nginx_container(config)],
                    "volumes": [
                        {"name": "edge-config", "configMap": {"name": EDGE_NAME}},
                        {"name": "api-keys", "secret": {"secretName": API_KEYS_SECRET}},
                        {
                            "name": "dashboard-logins",
                            "secret": {"secretName": DASHBOARD_LOGINS_SECRET},
                        },
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }


def edge_service(config: Config) -> dict[str, Any]:
    """The edge's Service: nginx for the Gateway (or Ingress), the gatekeeper for the replicas'
    usage reports."""
    ports = config.platform.ports
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": EDGE_SERVICE, "labels": dict(EDGE_LABELS)},
        "spec": {
            "selector": dict(EDGE_LABELS),
            "ports": [
                {
                    "name": "http",
                    "port": ports.nginx_http,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
                {
                    "name": "gatekeeper",
                    "port": ports.gatekeeper,
                    "targetPort": "gatekeeper",
                    "protocol": "TCP",
                },
            ],
        },
    }


def edge_objects(config: Config, *, image: str = IMAGE) -> list[dict[str, Any]]:
    """edge.yaml: the ConfigMap, the Service and the Deployment of the edge."""
    return [edge_config_map(config), edge_service(config), edge_deployment(config, image=image)]


def edge_pod_monitor(*, interval: str = "10s") -> dict[str, Any]:
    """A PodMonitor scraping the gatekeeper's /metrics as job `gpucluster-edge`, the job the
    platform's dashboards and rules know (deploy/prometheus/prometheus.yml)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": EDGE_NAME, "labels": {**POD_LABELS, **PROMETHEUS_SELECTOR}},
        "spec": {
            "selector": {"matchLabels": dict(EDGE_LABELS)},
            "podMetricsEndpoints": [
                {
                    "port": "gatekeeper",
                    "path": "/metrics",
                    "interval": interval,
                    "relabelings": [{"targetLabel": "job", "replacement": EDGE_JOB}],
                }
            ],
        },
    }
