"""`gpucluster render ...`: the deployment files other runners use, rendered from the same config.

The compose container and the KubeRay RayService run what these print, so nothing is written
twice: `serve-config` is the Serve config local mode's deploy driver runs too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from gpucluster.cli.common import ConfigOption, JsonOption, fail, out
from gpucluster.cli.errors import Typer
from gpucluster.config import Config, load_config
from gpucluster.config.keys import KeySources, store_path
from gpucluster.models import weights_location
from gpucluster.models.adapter_sources import adapter_locations
from gpucluster.render.kuberay import IMAGE, dump_yaml, rayservice, worker_groups
from gpucluster.render.kuberay_manifests import manifests
from gpucluster.serving.serve_config import serve_config

render_app = Typer(
    help="Render deployment files (Serve config, ...) from the platform config.",
    no_args_is_help=True,
)

OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write here instead of standard output.", dir_okay=False),
]


def write_or_print(text: str, output: Path | None, *, private: bool = False) -> None:
    """`text` to `output` (created with its parents), else to standard output.

    A `private` file (it holds secrets) is readable by its owner only.
    """
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    if private:
        from gpucluster.runtime.edge import write_private

        write_private(output, text)
    else:
        output.write_text(text, encoding="utf-8")
    out.print(f"wrote {output}", highlight=False)


@render_app.command("serve-config")
def render_serve_config(
    config: ConfigOption = None,
    model_cache: Annotated[
        Path | None,
        typer.Option(
            help="The model cache as the serving host sees it (default: platform.model_cache_dir)."
        ),
    ] = None,
    http_host: Annotated[
        str | None,
        typer.Option(help="Where Serve's HTTP proxy binds (default: platform.bind_host)."),
    ] = None,
    api_keys_file: Annotated[
        list[str] | None,
        typer.Option(help="A keys file as the serving host sees it (repeatable)."),
    ] = None,
    output: OutputOption = None,
    as_json: JsonOption = False,
) -> None:
    """The Ray Serve config (YAML, or JSON with --json) that deploys the configured models."""
    settings = load_config(config)
    cache = model_cache or settings.platform.model_cache_dir
    weights = {
        m.id: weights_location(m.source, cache, revision=m.revision) for m in settings.models
    }
    for m in settings.models:
        weights |= adapter_locations(m, cache)
    key_files = list(api_keys_file or [])
    if settings.platform.security.api_keys_file is not None:
        key_files.append(str(settings.platform.security.api_keys_file))
    # The named key store lives in the state dir (`gpucluster keys create` in the container).
    keys = KeySources(files=tuple(key_files), store=str(store_path(settings)))
    rendered = serve_config(settings, weights, keys, http_host=http_host)
    text = json.dumps(rendered, indent=2) if as_json else yaml.safe_dump(rendered, sort_keys=False)
    write_or_print(text, output)


ImageOption = Annotated[
    str | None,
    typer.Option(help="The platform image (built from deploy/docker/Dockerfile) the pods run."),
]


def _kuberay_config(config: Path | None) -> Config:
    """The config, checked for what the KubeRay manifests can serve (exit 2 naming the model)."""
    settings = load_config(config)
    worker_groups(settings)  # KubeRayError (exit 2) names a model it cannot serve
    return settings


@render_app.command("rayservice")
def render_rayservice(
    config: ConfigOption = None,
    image: ImageOption = None,
    output: OutputOption = None,
    as_json: JsonOption = False,
) -> None:
    """The KubeRay RayService (YAML, or JSON with --json) running the Serve config on Kubernetes."""
    settings = _kuberay_config(config)
    manifest = rayservice(settings, image=image or IMAGE)
    write_or_print(json.dumps(manifest, indent=2) if as_json else dump_yaml(manifest), output)


@render_app.command("kuberay")
def render_kuberay(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Directory to write the manifests into.")
    ],
    config: ConfigOption = None,
    image: ImageOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write every generated KubeRay manifest (RayService, nginx edge, Gateway API route or
    Ingress, monitoring, dashboards)."""
    settings = _kuberay_config(config)
    files = manifests(settings, str(config or "the default config"), image=image or IMAGE)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (output_dir / name).write_text(text, encoding="utf-8")
    written = [str(output_dir / name) for name in files]
    if as_json:
        print(json.dumps({"ok": True, "written": written}))
    else:
        out.print("\n".join(f"wrote {path}" for path in written), highlight=False)


@render_app.command("nginx")
def render_nginx(
    config: ConfigOption = None,
    upstream_host: Annotated[
        str | None,
        typer.Option(
            help="Render for an nginx container in front of this host's Serve and dashboard "
            "(compose: ray-serve). Default: the local-mode config `up` writes."
        ),
    ] = None,
    output: OutputOption = None,
    as_json: JsonOption = False,
) -> None:
    """The nginx config from deploy/nginx/nginx.conf.template, with the platform's Ray token.

    The token (and the state dir holding it) is created on first use, as `up` does; for a
    container also the /dashboard login file (`gpucluster dashboard-password` sets and shows
    a password).
    """
    from gpucluster.render.container import container_nginx_values
    from gpucluster.runtime.edge import (
        ensure_dashboard_password,
        nginx_values,
        render_nginx_conf,
        write_initial_upstreams,
    )
    from gpucluster.runtime.ray_head import ensure_ray_token
    from gpucluster.runtime.state import StateDir

    settings = load_config(config)
    state = StateDir(settings.platform.state_dir)
    state.ensure()
    token = ensure_ray_token(state)
    if upstream_host:
        ensure_dashboard_password(state, settings.platform.security.dashboard_user)
        # runtime.upstreams, run beside Ray in that container, keeps it current.
        write_initial_upstreams(state, upstream_host, settings.platform.ports.serve_http)
        values = container_nginx_values(settings, state, token, upstream_host)
    else:
        values = nginx_values(settings, state, token)
    write_or_print(render_nginx_conf(values), output, private=True)


@render_app.command("alertmanager")
def render_alertmanager(
    config: ConfigOption = None,
    receiver_host: Annotated[
        str,
        typer.Option(help="Host running the platform's alert receiver (compose: ray-serve)."),
    ] = "127.0.0.1",
    output: OutputOption = None,
    as_json: JsonOption = False,
) -> None:
    """deploy/alertmanager/alertmanager.yml delivering to the platform's alert receiver."""
    from gpucluster.runtime.monitoring import alert_receiver_url, render_alertmanager_config

    settings = load_config(config)
    write_or_print(render_alertmanager_config(alert_receiver_url(receiver_host, settings)), output)


@render_app.command("api-keys")
def render_api_keys(
    output: Annotated[Path, typer.Option("--output", "-o", help="The keys file to write.")],
    as_json: JsonOption = False,
) -> None:
    """$GPUCLUSTER_API_KEYS as a keys file (0600) for the ingress; exit 1 when none are set."""
    from gpucluster.config import env_api_keys

    keys = env_api_keys()
    if not keys:
        output.unlink(missing_ok=True)
        fail("GPUCLUSTER_API_KEYS is empty: the API is open to whoever reaches nginx", 1, as_json)
    write_or_print("\n".join(keys) + "\n", output, private=True)


@render_app.command("ray-node")
def render_ray_node(
    node_ip: Annotated[
        str | None, typer.Option(help="The address this node advertises (default: Ray's choice).")
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(help="HEAD:PORT of the head to join as a worker node (default: be the head)."),
    ] = None,
    config: ConfigOption = None,
    shell: Annotated[
        bool, typer.Option("--shell", help="bash lines to evaluate (the container entrypoint).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The Ray node's environment and `ray start` arguments, as local mode's head gets them."""
    from gpucluster.render.container import ray_node_start, shell_lines

    settings = load_config(config)
    env, args = ray_node_start(settings, node_ip, head_address=join)
    if shell:
        print(shell_lines(env, args), end="")
    elif as_json:
        print(json.dumps({"env": env, "args": args}, indent=2))
    else:
        print("\n".join([*(f"{k}={v}" for k, v in env.items()), "ray start " + " ".join(args)]))
