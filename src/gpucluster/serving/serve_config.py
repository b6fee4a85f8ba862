"""The Ray Serve config (Serve's declarative YAML schema) that deploys the platform's application.

Local mode's deploy driver, the compose container and the KubeRay RayService all run the file
this renders, so the application is described once. No Ray import here: the CLI renders it.
"""

from __future__ import annotations

from typing import Any

from gpucluster.config import Config
from gpucluster.config.keys import KeySources
from gpucluster.config.names import APP_NAME

# The application builder: Serve imports it and calls it with the application's `args`.
IMPORT_PATH = "gpucluster.serving.app:app_from_args"


def usage_url(config: Config, gatekeeper_address: str | None = None) -> str:
    """Where replicas report each request's usage: the gatekeeper's /settle, on the head beside
    nginx (the ingress replica, which answers for worker nodes' models, runs there too), or at
    `gatekeeper_address` (host:port) where the runner puts it elsewhere (Kubernetes: the edge)."""
    return f"http://{gatekeeper_address or config.platform.gatekeeper_address}/settle"


def serve_config(
    config: Config,
    weights: dict[str, str],
    keys: KeySources,
    *,
    http_host: str | None = None,
    report_usage: bool = True,
    gatekeeper_address: str | None = None,
) -> dict[str, Any]:
    """The Serve config for `config`; `weights` maps each model id to what vLLM loads, `keys`
    where the replicas find the API keys (as the serving host sees them).

    `http_host` overrides where Serve's HTTP proxy binds (a container binds all interfaces and
    publishes the port on the host instead). The proxy runs on the head only: nginx fronts it.
    `report_usage`: the runner runs the gatekeeper beside nginx (runtime.gatekeeper), which the
    replicas reach at `gatekeeper_address` (default: platform.gatekeeper_address).
    """
    return {
        "proxy_location": "HeadOnly",
        "http_options": {
            "host": http_host or config.platform.bind_host,
            "port": config.platform.ports.serve_http,
        },
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {
                    "models": [model.model_dump(mode="json") for model in config.models],
                    "weights": {
                        key: weights[key]
                        for model in config.models
                        for key in (model.id, *model.adapter_ids())
                    },
                    "api_keys": keys.as_dict(),
                    "direct_streaming": config.serves_directly,
                    "usage_url": (usage_url(config, gatekeeper_address) if report_usage else None),
                    "max_body_bytes": config.platform.edge.max_body_bytes,
                },
            }
        ],
    }
