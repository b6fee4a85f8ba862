"""The KubeRay manifests' settings (`platform.kubernetes`): how clients reach the edge, and the
pods' sizes."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from gpucluster.config.base import Strict

# Kubernetes object names: DNS-1123 subdomains (most objects) and labels (namespaces).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Gateway API hostname (an optional leading `*.` wildcard, no IP address, no port).
_GATEWAY_HOSTNAME = re.compile(
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _object_name(value: str, what: str = "a Kubernetes object name") -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not {what}: lower-case letters, digits, '-' and '.', starting and "
            "ending with a letter or digit, at most 253"
        )
    return value


_SECRET_KEY_PATTERN = re.compile(r"^[-._a-zA-Z0-9]+$")
# What Ray (RAY_REDIS_ADDRESS) and KubeRay's Redis cleanup Job read: host:port, with an optional
# redis:// or rediss:// (TLS) scheme; the host a DNS name, an IPv4 address or a bracketed IPv6 one.
_REDIS_ADDRESS_PATTERN = re.compile(
    r"^(?:(?P<scheme>rediss?)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})$"
)
_STORAGE_NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class SecretKeyRef(Strict):
    """One key of a Kubernetes Secret in the RayService's namespace (a `secretKeyRef`)."""

    name: str = Field(..., description="The Secret's name.")
    key: str = Field(..., description="The key of the Secret's data that holds the value.")

    @field_validator("name")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return _object_name(value)

    @field_validator("key")
    @classmethod
    def _data_key(cls, value: str) -> str:
        if len(value) > 253 or not _SECRET_KEY_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Secret key (letters, digits, '-', '_' and '.', at most 253)"
            )
        return value


class GcsFaultToleranceConfig(Strict):
    """The Ray head's GCS keeps its tables in Redis, so a restarted head recovers the cluster."""

    redis_address: str = Field(
        ...,
        description="host:port of the Redis the GCS stores its tables in (redis://host:port, or "
        "rediss://host:port for TLS), as the head pod reaches it: KubeRay's redisAddress.",
    )
    redis_password_secret: SecretKeyRef | None = Field(
        None,
        description="The Secret key holding Redis's password (KubeRay's redisPassword, from "
        "the Secret); null: Redis asks for none.",
    )
    external_storage_namespace: str | None = Field(
        None,
        description="Prefix of the cluster's keys in Redis; null: KubeRay uses the RayCluster's "
        "UID, unique per cluster. A fixed name is shared by the old and the new RayCluster "
        "of a RayService upgrade.",
    )

    @field_validator("redis_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" in value:
            raise ValueError(
                "must not hold credentials: put the password in a Secret and name it in "
                "redis_password_secret"
            )
        match = _REDIS_ADDRESS_PATTERN.fullmatch(value)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError(
                f"{value!r} is not a Redis address: HOST:PORT, redis://HOST:PORT or "
                "rediss://HOST:PORT (for example redis:6379), one address, port 1-65535"
            )
        return value

    @field_validator("external_storage_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not _STORAGE_NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError(
                "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63"
            )
        return value


class GatewayConfig(Strict):
    """The Gateway API route to the edge on Kubernetes (`gpucluster render kuberay`)."""

    create: bool = Field(
        False,
        description="Render a Gateway named `name` of class `class_name` beside the HTTPRoute; "
        "false: attach the HTTPRoute to an existing Gateway `name` (in `namespace`).",
    )
    class_name: str | None = Field(
        None,
        description="gatewayClassName of the rendered Gateway (`kubectl get gatewayclass`); "
        "required with create: true, not allowed without it.",
    )
    name: str = Field("gpu-cluster", description="The Gateway the HTTPRoute attaches to.")
    namespace: str | None = Field(
        None,
        description="Namespace of an existing Gateway (create: false); null: the HTTPRoute's "
        "own. A rendered Gateway lives beside the route.",
    )
    hostnames: list[str] = Field(
        default_factory=list,
        description="Host names the HTTPRoute answers for (`api.example.com`, `*.example.com`); "
        "empty: every host the Gateway's listeners accept.",
        max_length=16,
    )

    @field_validator("class_name", "name")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _object_name(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _DNS_LABEL.match(value)):
            raise ValueError(
                f"{value!r} is not a namespace name: lower-case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63"
            )
        return value

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, hostnames: list[str]) -> list[str]:
        bad = [h for h in hostnames if len(h) > 253 or not _GATEWAY_HOSTNAME.match(h) or _is_ip(h)]
        if bad:
            raise ValueError(
                f"not host names: {', '.join(map(repr, bad))} (lower-case DNS names, "
                "optionally starting with '*.'; no IP address, port or scheme)"
            )
        if len(set(hostnames)) != len(hostnames):
            raise ValueError("host names must be unique")
        return hostnames

    @model_validator(mode="after")
    def _create_or_attach(self) -> GatewayConfig:
        if self.create and self.class_name is None:
            raise ValueError(
                "create: true renders a Gateway and needs its class_name (one of `kubectl get "
                "gatewayclass`); or set create: false to attach to an existing Gateway"
            )
        if not self.create and self.class_name is not None:
            raise ValueError(
                "class_name is the class of a rendered Gateway: set create: true, or remove "
                "class_name to attach to the existing Gateway `name`"
            )
        if self.create and self.namespace is not None:
            raise ValueError(
                "namespace names an existing Gateway's namespace (create: false); a rendered "
                "Gateway lives in the namespace the manifests are applied to"
            )
        return self


class PodResources(Strict):
    """CPU and memory of one pod of the KubeRay deployment, instead of the derived numbers."""

    cpu: int | None = Field(
        None, ge=1, description="Whole CPU cores the pod requests (the limit too); null: derived."
    )
    memory_gib: int | None = Field(
        None,
        ge=1,
        description="Memory in GiB the pod requests (the limit too), its /dev/shm included; "
        "null: derived.",
    )


class KubernetesConfig(Strict):
    """The KubeRay manifests (`gpucluster render kuberay`): how clients reach the edge, an
    optional fault-tolerant head, and the pod sizes (derived from the models by
    planning.platform_pods unless set here)."""

    gateway: GatewayConfig = Field(
        default_factory=GatewayConfig,
        description="The Gateway API HTTPRoute (and optionally its Gateway) to the edge.",
    )
    ingress: bool = Field(
        False,
        description="Render an Ingress to the edge (ingress.yaml) instead of the Gateway API "
        "route, for clusters without Gateway API.",
    )
    ingress_class: str = Field(
        "nginx", description="ingressClassName of the Ingress (with ingress: true)."
    )

    gcs_fault_tolerance: GcsFaultToleranceConfig | None = Field(
        None,
        description="GCS fault tolerance (KubeRay's gcsFaultToleranceOptions): the head's "
        "state in Redis, so that a head restart keeps the worker pods and their replicas; "
        "null: off.",
    )
    head_resources: PodResources = Field(
        default_factory=PodResources,
        description="The head pod's CPU and memory; keys left unset are derived.",
    )
    worker_resources: dict[int, PodResources] = Field(
        default_factory=dict,
        description="GPU worker pods by tensor_parallel_size (the worker group gpu-tp<size>); "
        "keys left unset are derived.",
    )

    @field_validator("ingress_class")
    @classmethod
    def _class(cls, value: str) -> str:
        return _object_name(value, "an IngressClass name")

    @model_validator(mode="after")
    def _one_way_in(self) -> KubernetesConfig:
        # by value, not by the keys given: the effective config's JSON (the gatekeeper's) has all
        if self.ingress and self.gateway != GatewayConfig():
            raise ValueError(
                "ingress: true renders an Ingress instead of the Gateway API route: remove the "
                "`gateway` settings, or set ingress: false"
            )
        default_class = type(self).model_fields["ingress_class"].default
        if not self.ingress and self.ingress_class != default_class:
            raise ValueError("ingress_class is the class of the Ingress: set ingress: true too")
        return self

    @field_validator("worker_resources")
    @classmethod
    def _ray_cpus(cls, workers: dict[int, PodResources]) -> dict[int, PodResources]:
        for tp, resources in workers.items():
            if tp < 1:
                raise ValueError(f"{tp}: keys are tensor parallel sizes, at least 1")
            # Ray Serve LLM's placement group: {GPU: 1, CPU: 1} per GPU, plus one CPU for the
            # replica actor; KubeRay gives Ray the pod's CPU limit as its CPU count.
            if resources.cpu is not None and resources.cpu < tp + 1:
                raise ValueError(
                    f"{tp}: cpu {resources.cpu} is less than the {tp + 1} Ray CPUs a replica "
                    f"of tensor parallel size {tp} reserves (one per GPU and one for the replica)"
                )
        return workers
