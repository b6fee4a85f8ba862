"""The way to the platform's edge on Kubernetes: a Gateway API HTTPRoute (and, if asked for, its
Gateway), or an Ingress for clusters without Gateway API (`platform.kubernetes`). Both send the
edge's routes, and only those, to the edge Service (render/kuberay_edge.py)."""

from __future__ import annotations

from typing import Any

from gpucluster.config import Config
from gpucluster.render.kuberay import EDGE_SERVICE, NAME, POD_LABELS, KubeRayError

# Above the edge's own timeouts (its longest: platform.edge.read_timeout_s), so that a request
# nginx gives up on gets nginx's JSON answer, not the Gateway's or the Ingress controller's.
ROUTE_TIMEOUT_MARGIN_S = 30
LONGEST_ROUTE_TIMEOUT_S = 100_000 * 3600  # GEP-2257: at most 5 digits a unit
GATEWAY_LISTENER_PORT = 80

# The routes of deploy/nginx/nginx.conf.template, as Gateway API and Ingress path matches; any
# other path never reaches the edge (on a shared Gateway it may be another application's).
API_PREFIXES = ("/v1",)
API_EXACT = ("/tokenize", "/detokenize", "/health")
DASHBOARD_PREFIX = "/dashboard"


def gateway_duration(seconds: int) -> str:
    """`seconds` as a Gateway API duration (GEP-2257: at most 5 digits per unit)."""
    if seconds < 100_000:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if seconds >= LONGEST_ROUTE_TIMEOUT_S:
        raise KubeRayError(
            f"{seconds} s is longer than a Gateway API duration can say (99999h59m59s)"
        )
    return f"{hours}h" + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")


def route_timeout_s(config: Config) -> int:
    """The route's whole-request timeout: the edge's longest, plus ROUTE_TIMEOUT_MARGIN_S."""
    timeout = config.platform.edge.read_timeout_s + ROUTE_TIMEOUT_MARGIN_S
    if timeout >= LONGEST_ROUTE_TIMEOUT_S:
        raise KubeRayError(
            f"platform.edge.read_timeout_s: {config.platform.edge.read_timeout_s} s (+ "
            f"{ROUTE_TIMEOUT_MARGIN_S} s for the route) is longer than a Gateway API timeout "
            "can say; keep it below 99999 hours"
        )
    return timeout


def gateway(config: Config) -> dict[str, Any]:
    """A Gateway of class `platform.kubernetes.gateway.class_name`: HTTP on port 80, for routes
    of its own namespace. TLS (an HTTPS listener and its certificate) belongs in an overlay."""
    settings = config.platform.kubernetes.gateway
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": settings.name, "labels": dict(POD_LABELS)},
        "spec": {
            "gatewayClassName": settings.class_name,
            "listeners": [
                {
                    "name": "http",
                    "protocol": "HTTP",
                    "port": GATEWAY_LISTENER_PORT,
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }


def http_route(config: Config) -> dict[str, Any]:
    """The HTTPRoute: the edge's routes to the edge Service, on the configured Gateway."""
    settings = config.platform.kubernetes.gateway
    parent: dict[str, Any] = {"name": settings.name}
    if settings.namespace is not None:
        parent["namespace"] = settings.namespace
    matches = [
        *({"path": {"type": "PathPrefix", "value": path}} for path in API_PREFIXES),
        *({"path": {"type": "Exact", "value": path}} for path in API_EXACT),
        {"path": {"type": "PathPrefix", "value": DASHBOARD_PREFIX}},
    ]
    spec: dict[str, Any] = {"parentRefs": [parent]}
    if settings.hostnames:
        spec["hostnames"] = list(settings.hostnames)
    spec["rules"] = [
        {
            "matches": matches,
            "backendRefs": [{"name": EDGE_SERVICE, "port": config.platform.ports.nginx_http}],
            # whole generations stream through: the edge's own timeouts fire first
            "timeouts": {"request": gateway_duration(route_timeout_s(config))},
        }
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": NAME, "labels": dict(POD_LABELS)},
        "spec": spec,
    }


def edge_ingress(config: Config) -> dict[str, Any]:
    """An Ingress to the edge Service, for clusters without Gateway API (`kubernetes.ingress`).

    The edge enforces keys, limits and bodies; the annotations (ingress-nginx's, which other
    controllers ignore) only keep the controller from cutting what the edge allows: the body
    size, timeouts for whole generations, no buffering (tokens stream as produced).
    """
    settings = config.platform.kubernetes
    edge = config.platform.edge
    prefix = "nginx.ingress.kubernetes.io"
    timeout = str(route_timeout_s(config))
    port = config.platform.ports.nginx_http
    backend = {"service": {"name": EDGE_SERVICE, "port": {"number": port}}}
    paths = [
        *({"path": path, "pathType": "Prefix", "backend": backend} for path in API_PREFIXES),
        *({"path": path, "pathType": "Exact", "backend": backend} for path in API_EXACT),
        {"path": DASHBOARD_PREFIX, "pathType": "Prefix", "backend": backend},
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": NAME,
            "labels": dict(POD_LABELS),
            "annotations": {
                f"{prefix}/proxy-body-size": edge.max_body_size,
                f"{prefix}/proxy-read-timeout": timeout,
                f"{prefix}/proxy-send-timeout": timeout,
                f"{prefix}/proxy-buffering": "off",
            },
        },
        "spec": {
            "ingressClassName": settings.ingress_class,
            "rules": [{"http": {"paths": paths}}],
        },
    }


def route_manifests(config: Config) -> dict[str, list[dict[str, Any]]]:
    """The way in, by file name: gateway.yaml (the Gateway when created, and the HTTPRoute), or
    ingress.yaml with `platform.kubernetes.ingress`."""
    settings = config.platform.kubernetes
    if settings.ingress:
        return {"ingress.yaml": [edge_ingress(config)]}
    objects = [gateway(config)] if settings.gateway.create else []
    return {"gateway.yaml": [*objects, http_route(config)]}
