"""Kubernetes (KubeRay) manifests of the platform, built from the same config as local mode.

The RayService runs the Serve config `gpucluster render serve-config` renders (serveConfigV2),
on a head group and one GPU worker group per tensor parallel size. The platform's nginx edge
in front of it, and the route to the edge, are render/kuberay_edge.py's. No Ray import: the CLI
renders these.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import yaml

from gpucluster import __version__
from gpucluster.config import Config, ModelConfig, ray_node
from gpucluster.config.keys import KeySources
from gpucluster.errors import InputError
from gpucluster.models import resolve_source, weights_location
from gpucluster.models.adapter_sources import adapter_locations
from gpucluster.planning.platform_pods import head_size, worker_sizes
from gpucluster.planning.pod_sizes import PodSize, PodSizeError
from gpucluster.serving.serve_config import serve_config

NAME = "gpu-cluster"
IMAGE = f"gpu-cluster/ray-serve:{__version__}"
# Every pod of the platform carries this label; the PodMonitor selects on it.
POD_LABELS = {"app.kubernetes.io/part-of": NAME}
# KubeRay names the RayService's Services after it.
HEAD_SERVICE = f"{NAME}-head-svc"
SERVE_SERVICE = f"{NAME}-serve-svc"
# The nginx edge's Service (render/kuberay_edge.py): its gatekeeper takes the usage reports.
EDGE_SERVICE = f"{NAME}-edge"
# KubeRay's default; `kubectl port-forward svc/gpu-cluster-head-svc 18265:8265` keeps the URL
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001

MODEL_CACHE = "/models"
MODEL_CACHE_CLAIM = f"{NAME}-model-cache"
API_KEYS_SECRET = f"{NAME}-api-keys"
API_KEYS_KEY = "api-keys"
API_KEYS_DIR = "/etc/gpucluster/api-keys"
API_KEYS_FILE = f"{API_KEYS_DIR}/{API_KEYS_KEY}"
HF_TOKEN_SECRET = f"{NAME}-hf-token"
# KubeRay reads the token under the key `auth_token` and sets RAY_AUTH_MODE/RAY_AUTH_TOKEN on
# every Ray container; it sends the token itself when it submits serveConfigV2.
RAY_TOKEN_SECRET = f"{NAME}-ray-token"
KUBERAY_SETS_ENV = frozenset({"RAY_AUTH_MODE"})

# Pod CPU, memory and /dev/shm come from planning.pod_sizes (the capacity maths over each model;
# platform.kubernetes overrides them); deploy/kuberay/README.md, "Pod sizes", derives them.
GPU_RESOURCE = "nvidia.com/gpu"
# The image's user `ray` (uid 1000) is in group `users`: volumes become writable for it.
FS_GROUP = 100
# KubeRay adds a Serve-proxy check to a RayService worker's readiness probe unless the pod has
# its own; Serve's proxy runs on the head only (HeadOnly), so workers get the node check alone:
# the Ray node's health endpoint on the dashboard agent (Ray >= 2.53).
WORKER_READINESS = {
    "httpGet": {"path": "/api/healthz", "port": 52365},
    "initialDelaySeconds": 10,
    "periodSeconds": 5,
    "timeoutSeconds": 2,
    "failureThreshold": 10,
}


class KubeRayError(InputError, ValueError):
    """A config that the KubeRay manifests cannot serve; the message names the model."""


def worker_groups(config: Config, image: str = IMAGE) -> list[dict[str, Any]]:
    """One GPU worker group per tensor parallel size; a pod holds one replica of its models.

    Group bounds are the sums of the replica bounds of the models of that size, so the Ray
    autoscaler can add a pod for every replica Serve's autoscaler asks for.
    """
    by_size: dict[int, list[ModelConfig]] = {}
    for model in config.models:
        if model.accelerator != "gpu":
            raise KubeRayError(
                f"model {model.id}: accelerator is {model.accelerator!r}; the KubeRay "
                "deployment runs the platform's GPU image: set `accelerator: gpu`"
            )
        by_size.setdefault(model.tensor_parallel_size, []).append(model)
    try:
        pods = worker_sizes(config)
    except PodSizeError as exc:
        raise KubeRayError(str(exc)) from None
    return [
        _worker_group(size, models, config, image, pods[size])
        for size, models in sorted(by_size.items())
    ]


def _worker_group(
    gpus: int, models: list[ModelConfig], config: Config, image: str, pod: PodSize
) -> dict[str, Any]:
    metrics_port = config.platform.ports.ray_metrics
    minimum = sum(m.replicas.min for m in models)
    initial = sum(
        m.replicas.min if m.replicas.initial is None else m.replicas.initial for m in models
    )
    resources = {**_resources(pod), GPU_RESOURCE: str(gpus)}
    container = _container("ray-worker", image, resources, [_port("metrics", metrics_port)])
    container["readinessProbe"] = dict(WORKER_READINESS)
    return {
        "groupName": f"gpu-tp{gpus}",
        "replicas": initial,
        "minReplicas": minimum,
        "maxReplicas": sum(m.replicas.max for m in models),
        "rayStartParams": ray_node.start_params(config, head=False),
        "template": _pod_template(container, shm_gib=pod.shm_gib, gpu=True),
    }


def head_group(config: Config, image: str = IMAGE) -> dict[str, Any]:
    """The head: GCS, dashboard, Serve controller and the HTTP proxy (Serve runs it HeadOnly)."""
    ports = config.platform.ports
    pod = head_size(config)
    container = _container(
        "ray-head",
        image,
        _resources(pod),
        [
            _port("gcs-server", ports.ray_gcs),
            _port("dashboard", DASHBOARD_PORT),
            _port("client", CLIENT_PORT),
            _port("serve", ports.serve_http),
            _port("metrics", ports.ray_metrics),
        ],
    )
    return {
        "rayStartParams": {
            **ray_node.start_params(config, head=True),
            "dashboard-host": "0.0.0.0",
            "dashboard-port": str(DASHBOARD_PORT),
        },
        "template": _pod_template(container, shm_gib=pod.shm_gib, gpu=False),
    }


def _resources(pod: PodSize) -> dict[str, str]:
    """A pod's CPU (whole cores) and memory (GiB) as Kubernetes quantities."""
    return {"cpu": str(pod.cpu), "memory": f"{pod.memory_gib}Gi"}


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "containerPort": number, "protocol": "TCP"}


def _container(
    name: str, image: str, resources: dict[str, str], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "env": [
            *(
                {"name": name, "value": value}
                for name, value in ray_node.node_env(None).items()
                if name not in KUBERAY_SETS_ENV
            ),
            {"name": "HF_HOME", "value": f"{MODEL_CACHE}/huggingface"},
            {
                "name": "HF_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": HF_TOKEN_SECRET, "key": "token", "optional": True}
                },
            },
        ],
        "ports": ports,
        # requests = limits: the Ray node advertises exactly what the pod is guaranteed
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [
            {"name": "model-cache", "mountPath": MODEL_CACHE},
            {"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }


def _pod_template(container: dict[str, Any], *, shm_gib: int, gpu: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": {"fsGroup": FS_GROUP},
        "containers": [container],
        "volumes": [
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": MODEL_CACHE_CLAIM}},
            # the whole Secret as a directory (no subPath), so a rotated key reaches the pods
            {"name": "api-keys", "secret": {"secretName": API_KEYS_SECRET}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib}Gi"}},
        ],
    }
    if gpu:
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": dict(POD_LABELS)}, "spec": spec}


def serve_config_v2(config: Config) -> dict[str, Any]:
    """The Serve config the RayService runs: weights in the pods' model cache, keys from the Secret.

    `platform.security.api_keys_file` names a file of the host that renders; on Kubernetes the
    keys come from the Secret API_KEYS_SECRET instead.
    """
    models = [_pinned(m) for m in config.models]
    weights = {m.id: _pod_weights(m) for m in models}
    for m in models:
        weights |= adapter_locations(m, MODEL_CACHE)
    pods = config.model_copy(update={"models": models})
    keys = KeySources(files=(API_KEYS_FILE,))  # the mounted Secret
    # usage reports go to the gatekeeper beside the edge's nginx, through the edge's Service
    gatekeeper = f"{EDGE_SERVICE}:{config.platform.ports.gatekeeper}"
    return serve_config(pods, weights, keys, http_host="0.0.0.0", gatekeeper_address=gatekeeper)


def _pod_weights(model: ModelConfig) -> str:
    """What a pod's vLLM loads. Pods have no pull step yet: a Hugging Face id goes to vLLM as
    the id, downloaded by the replica into HF_HOME on the model cache volume."""
    if resolve_source(model.source).kind == "hf":
        return model.source
    return weights_location(model.source, MODEL_CACHE, revision=model.revision)


def _pinned(model: ModelConfig) -> ModelConfig:
    """`model` with its `revision` given to vLLM (engine argument `revision`), which downloads
    it on the pods; an explicit engine_kwargs revision wins, as every engine_kwargs entry does."""
    if model.revision is None or resolve_source(model.source).kind != "hf":
        return model
    return model.model_copy(
        update={"engine_kwargs": {"revision": model.revision, **model.engine_kwargs}}
    )


def gcs_fault_tolerance(config: Config) -> dict[str, Any] | None:
    """KubeRay's gcsFaultToleranceOptions for `platform.kubernetes.gcs_fault_tolerance`; None: off.

    KubeRay (1.6) derives the rest and refuses a RayCluster that sets any of it beside these
    options: RAY_REDIS_ADDRESS, REDIS_PASSWORD and `redis-password` on the head,
    RAY_external_storage_namespace (the RayCluster's UID unless set here), the
    `ray.io/ft-enabled` annotation (the old way), and a 600 s
    RAY_gcs_rpc_server_reconnect_timeout_s on workers so they outlast a head restart.
    """
    settings = config.platform.kubernetes.gcs_fault_tolerance
    if settings is None:
        return None
    options: dict[str, Any] = {"redisAddress": settings.redis_address}
    secret = settings.redis_password_secret
    if secret is not None:
        options["redisPassword"] = {
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}
        }
    if settings.external_storage_namespace is not None:
        options["externalStorageNamespace"] = settings.external_storage_namespace
    return options


def rayservice(config: Config, *, image: str = IMAGE) -> dict[str, Any]:
    """The RayService (ray.io/v1) running the platform's Serve application on KubeRay."""
    cluster = {
        "rayVersion": version("ray"),
        "enableInTreeAutoscaling": True,
        "authOptions": {"mode": "token", "secretName": RAY_TOKEN_SECRET},
        "headGroupSpec": head_group(config, image),
        "workerGroupSpecs": worker_groups(config, image),
    }
    fault_tolerance = gcs_fault_tolerance(config)
    if fault_tolerance is not None:
        cluster["gcsFaultToleranceOptions"] = fault_tolerance
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": NAME, "labels": dict(POD_LABELS)},
        "spec": {
            "serveConfigV2": dump_yaml(serve_config_v2(config)),
            "rayClusterConfig": cluster,
        },
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the Serve config, dashboard JSON) as readable `|` blocks, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump_yaml(*documents: dict[str, Any]) -> str:
    """`documents` as YAML (several separated by `---`), keys in the order they were built."""
    # no line folding: PromQL expressions stay on one line
    return yaml.dump_all(documents, Dumper=_BlockDumper, sort_keys=False, width=2**16)
