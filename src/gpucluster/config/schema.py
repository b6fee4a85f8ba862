"""The platform's configuration schema: strict, frozen pydantic models.

Every field says what it is for; unknown keys are rejected so that a typo in a config file is
an error naming the key, not a silently ignored setting. The whole file's shape is `Config`
here; its parts live beside it: one model (`config.model`), the platform's security
(`config.security`) and its Kubernetes settings (`config.kubernetes`), all re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from gpucluster.config.base import Strict
from gpucluster.config.kubernetes import (
    GatewayConfig,
    KubernetesConfig,
    PodResources,
)
from gpucluster.config.model import (
    ADAPTER_NAME_PATTERN,
    BUILTIN_EMBEDDING_MODEL_ID,
    BUILTIN_EMBEDDING_SOURCE,
    BUILTIN_MODEL_ID,
    BUILTIN_MODELS,
    BUILTIN_PREFIX,
    BUILTIN_SOURCE,
    KEY_NAME_PATTERN,
    TOOL_CALL_PARSERS,
    AdmissionSettings,
    AutoscalingSettings,
    LoraSettings,
    ModelConfig,
    ReplicaBounds,
)
from gpucluster.config.security import (
    QuotaConfig,
    SecurityConfig,
)

# The whole schema: its own models and its parts', so `from gpucluster.config.schema import X`
# reaches every model.
__all__ = [
    "ADAPTER_NAME_PATTERN",
    "BUILTIN_EMBEDDING_MODEL_ID",
    "BUILTIN_EMBEDDING_SOURCE",
    "BUILTIN_MODELS",
    "BUILTIN_MODEL_ID",
    "BUILTIN_PREFIX",
    "BUILTIN_SOURCE",
    "DIRECT_INGRESS_PORTS",
    "KEY_NAME_PATTERN",
    "RAY_WORKER_PORTS",
    "TOOL_CALL_PARSERS",
    "AdmissionSettings",
    "AutoscalingSettings",
    "Config",
    "EdgeConfig",
    "GatewayConfig",
    "KubernetesConfig",
    "LoraSettings",
    "ModelConfig",
    "PlatformConfig",
    "PodResources",
    "PortsConfig",
    "QuotaConfig",
    "ReplicaBounds",
    "SecurityConfig",
    "body_size_text",
]


# Ports Ray hands its worker processes. Its default range (10002-19999) holds the guide's ports
# (18080, 18265, 19090); every runner gives Ray this one instead (config.ray_node).
RAY_WORKER_PORTS = (20000, 29999)

# Loopback HTTP ports Serve gives the application's ingress replicas (Serve's direct ingress), one
# each, per host: nginx sends API traffic straight to them (config.ray_node, runtime.edge). Apart
# from Ray's worker ports, a joined node's (30000-39999) and the kernel's ephemeral range.
DIRECT_INGRESS_PORTS = (18400, 18415)


class PortsConfig(Strict):
    """TCP ports; the defaults are the operator guide's."""

    nginx_http: int = Field(18080, ge=1, le=65535, description="nginx proxy (NGINX_HTTP_PORT).")
    ray_dashboard: int = Field(
        18265, ge=1, le=65535, description="Ray dashboard (RAY_DASHBOARD_PORT)."
    )
    serve_http: int = Field(8000, ge=1, le=65535, description="Ray Serve HTTP proxy.")
    ray_metrics: int = Field(
        8080, ge=1, le=65535, description="Ray metrics export, found by Prometheus via file_sd."
    )
    prometheus: int = Field(19090, ge=1, le=65535, description="Prometheus web UI and API.")
    alertmanager: int = Field(19093, ge=1, le=65535, description="Alertmanager.")
    alert_receiver: int = Field(
        19094, ge=1, le=65535, description="The platform's webhook receiver for Alertmanager."
    )
    gatekeeper: int = Field(
        19095,
        ge=1,
        le=65535,
        description="The edge's key and quota service: nginx's auth_request, the replicas' "
        "usage reports, and its /metrics (Prometheus job gpucluster-edge).",
    )
    grafana: int = Field(13000, ge=1, le=65535, description="Grafana (compose mode).")
    ray_gcs: int = Field(6379, ge=1, le=65535, description="Ray head GCS port.")

    @model_validator(mode="after")
    def _outside_rays_worker_ports(self) -> PortsConfig:
        # Ray refuses to start when one of its own ports lies in its worker port range.
        low, high = RAY_WORKER_PORTS
        for name in ("ray_dashboard", "ray_metrics", "ray_gcs", "serve_http"):
            port = getattr(self, name)
            if low <= port <= high:
                raise ValueError(
                    f"{name}: {port} lies in Ray's worker port range {low}-{high}; "
                    "choose a port outside it"
                )
        return self


class EdgeConfig(Strict):
    """The nginx proxy in front of everything: where it listens and what it lets through."""

    listen_host: str = Field(
        "0.0.0.0",
        description="Address nginx listens on: the one component reachable beyond localhost.",
    )
    rate_limit_rps: int = Field(
        20, ge=1, description="Requests per second per API key (per client address without keys)."
    )
    rate_limit_burst: int = Field(
        40, ge=0, description="Requests beyond the rate admitted at once before 429s start."
    )
    max_body_mib: int = Field(4, ge=1, le=1024, description="Largest request body in MiB (413).")
    read_timeout_s: int = Field(
        600, ge=10, description="Longest a response (a whole generation) may take through nginx."
    )

    @property
    def max_body_bytes(self) -> int:
        """`max_body_mib` in bytes: the replicas hold callers that bypass nginx to it too."""
        return self.max_body_mib << 20

    @property
    def max_body_size(self) -> str:
        """`max_body_mib` as nginx's config writes it ("4m") and its 413 says it."""
        return body_size_text(self.max_body_bytes)


def body_size_text(n_bytes: int) -> str:
    """A body limit in nginx's size syntax ("4m"), the words of every 413 the platform gives;
    "N bytes" for a limit that is not a whole number of MiB."""
    return f"{n_bytes >> 20}m" if n_bytes % (1 << 20) == 0 else f"{n_bytes} bytes"


class PlatformConfig(Strict):
    """Where the platform keeps its state and how it binds."""

    state_dir: Path = Field(
        Path("~/.local/state/gpucluster"),
        description="Pid files, logs and generated files of the local-mode platform.",
    )
    model_cache_dir: Path = Field(
        Path("~/.cache/gpucluster/models"), description="Prepared model directories."
    )
    bind_host: str = Field(
        "127.0.0.1",
        description="Address Serve and the dashboard listen on; keep loopback unless fronted.",
    )
    cluster_host: str | None = Field(
        None,
        description="Address the Ray head listens on for worker nodes of other hosts "
        "(`gpucluster up --head` sets it); unset, Ray stays on bind_host: one host only.",
    )
    ray_num_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs the Ray head advertises; default max(8, 4 x cores) so that "
        "the ingress and engine replicas both schedule on small hosts.",
    )
    startup_timeout_s: float = Field(
        900, gt=0, description="How long `up` waits for every model to answer."
    )
    shutdown_grace_s: float = Field(
        60,
        ge=0,
        description="How long `down` lets in-flight requests finish: nginx stops accepting, "
        "drains, and only then is the rest stopped.",
    )
    direct_streaming: bool = Field(
        True,
        description="With one model on one host, its vLLM replicas are themselves the HTTP "
        "ingress and nginx reaches them directly: no hop between nginx and the engine's process. "
        "False, several models or worker hosts (cluster_host): an ingress deployment routes to "
        "the models' replicas.",
    )
    ports: PortsConfig = Field(default_factory=PortsConfig, description="TCP ports.")
    edge: EdgeConfig = Field(default_factory=EdgeConfig, description="The nginx proxy.")
    security: SecurityConfig = Field(
        default_factory=SecurityConfig,
        description="API keys, their quotas, and operator credentials.",
    )
    kubernetes: KubernetesConfig = Field(
        default_factory=KubernetesConfig,
        description="The KubeRay manifests: how clients reach the edge (a Gateway API route or an "
        "Ingress) and the pod sizes.",
    )

    @property
    def gatekeeper_address(self) -> str:
        """`host:port` of the gatekeeper on this host, as nginx, the replicas' usage reports,
        Prometheus and `up`'s readiness check all reach it (a container names its own)."""
        return f"{self.bind_host}:{self.ports.gatekeeper}"


class Config(Strict):
    """The whole platform configuration (one YAML file)."""

    platform: PlatformConfig = Field(
        default_factory=PlatformConfig, description="Platform settings."
    )
    models: list[ModelConfig] = Field(
        default_factory=lambda: [ModelConfig()],
        min_length=1,
        description="Models to serve; default: the built-in model on CPU.",
    )

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        ids = [m.id for m in models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"model ids must be unique, repeated: {', '.join(duplicates)}")
        return models

    @model_validator(mode="after")
    def _worker_resources_name_groups(self) -> Config:
        sizes = sorted({m.tensor_parallel_size for m in self.models})
        unknown = sorted(set(self.platform.kubernetes.worker_resources) - set(sizes))
        if unknown:
            raise ValueError(
                f"platform.kubernetes.worker_resources: no model has tensor_parallel_size "
                f"{', '.join(map(str, unknown))} (the models' sizes: "
                f"{', '.join(map(str, sizes))})"
            )
        return self

    @property
    def serves_directly(self) -> bool:
        """Whether the model's replicas are the HTTP ingress themselves (`direct_streaming`):
        one model, and one host, since nginx reaches the replicas' loopback ports only. LoRA
        adapters (Serve's multiplexing), a router other than Serve's default and embedding models
        need the ingress deployment: it resolves adapters, routes, and serves every endpoint."""
        platform = self.platform
        if not platform.direct_streaming or len(self.models) != 1 or platform.cluster_host:
            return False
        (model,) = self.models
        return model.lora is None and model.router == "power_of_two" and not model.embeds

    def model(self, model_id: str) -> ModelConfig:
        """The configured model with this id; KeyError when there is none."""
        for model in self.models:
            if model.id == model_id:
                return model
        raise KeyError(model_id)
