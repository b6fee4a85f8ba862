"""The nginx edge of local mode: its config rendered from deploy/nginx, its credentials."""

from __future__ import annotations

import getpass
import re
import signal
import sys
from pathlib import Path

from gpucluster.assets import NGINX_TEMPLATE
from gpucluster.config import Config
from gpucluster.config.keys import KeySources, first_key, new_key
from gpucluster.config.keys import write_private_file as write_private
from gpucluster.config.schema import SecurityConfig
from gpucluster.errors import GpuClusterError
from gpucluster.runtime.dashboard_logins import ensure_first_login
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.supervisor import ServiceSpec
from gpucluster.runtime.upstreams import upstream_servers, write_if_changed

NGINX_BINARY = "/usr/sbin/nginx"

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# Serve's HTTP proxy keeps idle connections 90 s (RAY_SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S default);
# nginx must give up on them first.
UPSTREAM_KEEPALIVE_S = 30


class TemplateError(GpuClusterError, ValueError):
    """A template placeholder without a value: a bug of the templates the package ships."""

    next_step = "report it: a template shipped with gpucluster names a value the code does not give"


def fill_template(template: str, values: dict[str, str]) -> str:
    """Replace `${NAME}` placeholders (envsubst style); nginx's own `$vars` are left alone."""
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise TemplateError(f"no value for template placeholders: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def nginx_values(config: Config, state: StateDir, ray_token: str) -> dict[str, str]:
    """Placeholder values of the nginx template for local mode."""
    platform = config.platform
    edge = platform.edge
    loopback = platform.bind_host
    return {
        # workers run as the invoking user (nginx would switch root's workers to `nobody`,
        # who cannot read the private state dir)
        "NGINX_USER_LINE": f"user {getpass.getuser()};",
        "NGINX_LISTEN": f"{edge.listen_host}:{platform.ports.nginx_http}",
        "NGINX_PID_FILE": str(nginx_pid_file(state)),
        "NGINX_ERROR_LOG": str(state.log("nginx-error")),
        "NGINX_ACCESS_LOG": str(state.log("nginx-access")),
        "NGINX_TEMP_DIR": str(state.nginx_dir / "tmp"),
        "NGINX_MAX_BODY": edge.max_body_size,
        "NGINX_REAL_IP": real_ip_lines(platform.security),
        "GATEKEEPER_UPSTREAM": platform.gatekeeper_address,
        "NGINX_READ_TIMEOUT_S": str(edge.read_timeout_s),
        "NGINX_UPSTREAM_KEEPALIVE_S": str(UPSTREAM_KEEPALIVE_S),
        "NGINX_HTPASSWD_FILE": str(state.htpasswd_file),
        "SERVE_UPSTREAMS_FILE": str(upstreams_file(state)),
        "DASHBOARD_UPSTREAM": f"{loopback}:{platform.ports.ray_dashboard}",
        "RAY_DASHBOARD_AUTH": f"Bearer {ray_token}",
        "DASHBOARD_WRITE": "1" if platform.security.dashboard_write else "0",
    }


def real_ip_lines(security: SecurityConfig) -> str:
    """nginx's real-IP settings: believe `real_ip_header` from the trusted proxies only."""
    if not security.trusted_proxies:
        return "    # (no trusted proxies: the client is the TCP peer)"
    lines = [f"    set_real_ip_from {proxy};" for proxy in security.trusted_proxies]
    lines += [f"    real_ip_header {security.real_ip_header};", "    real_ip_recursive on;"]
    return "\n".join(lines)


def render_nginx_conf(values: dict[str, str]) -> str:
    """deploy/nginx/nginx.conf.template with `values`."""
    return fill_template(NGINX_TEMPLATE.read_text(encoding="utf-8"), values)


def nginx_pid_file(state: StateDir) -> Path:
    """Where local mode's nginx writes its master's pid (the upstream watcher signals it)."""
    return state.nginx_dir / "nginx.pid"


def upstreams_file(state: StateDir) -> Path:
    """The servers of nginx's `serve` upstream, kept current by runtime.upstreams."""
    return state.nginx_dir / "upstreams.conf"


def write_initial_upstreams(state: StateDir, serve_host: str, serve_port: int) -> None:
    """Start nginx towards Serve's HTTP proxy; runtime.upstreams adds the replicas once up."""
    state.nginx_dir.mkdir(parents=True, exist_ok=True)
    write_if_changed(upstreams_file(state), upstream_servers(serve_host, [], serve_port))


def write_nginx_conf(config: Config, state: StateDir, ray_token: str) -> Path:
    """Render deploy/nginx/nginx.conf.template into the state dir (0600: it holds Ray's token)."""
    (state.nginx_dir / "tmp").mkdir(parents=True, exist_ok=True)
    platform = config.platform
    write_initial_upstreams(state, platform.bind_host, platform.ports.serve_http)
    text = render_nginx_conf(nginx_values(config, state, ray_token))
    path = state.nginx_dir / "nginx.conf"
    write_private(path, text)
    return path


def upstreams_service(config: Config, state: StateDir) -> ServiceSpec:
    """The watcher that points nginx at the ingress replicas' own ports (runtime.upstreams)."""
    host = config.platform.bind_host
    argv = [
        sys.executable,
        "-m",
        "gpucluster.runtime.upstreams",
        str(upstreams_file(state)),
        "--scan-host",
        host,
        "--upstream-host",
        host,
        "--serve-port",
        str(config.platform.ports.serve_http),
        "--nginx-pid",
        str(nginx_pid_file(state)),
    ]
    return ServiceSpec(name="upstreams", argv=argv)


def nginx_service(conf: Path, state: StateDir, drain_s: float) -> ServiceSpec:
    """nginx in the foreground, supervised; stopping it drains open requests for up to `drain_s`."""
    argv = [
        NGINX_BINARY,
        "-p",
        str(state.nginx_dir),
        "-c",
        str(conf),
        "-e",
        str(state.log("nginx-error")),
        "-g",
        "daemon off;",
    ]
    # SIGQUIT: nginx's graceful shutdown (stop accepting, finish open requests, exit)
    return ServiceSpec(name="nginx", argv=argv, stop_signal=signal.SIGQUIT, stop_grace_s=drain_s)


def gatekeeper_service(config: Config, state: StateDir, keys: KeySources) -> ServiceSpec:
    """The gatekeeper (runtime.gatekeeper), nginx's key and quota service, reading the same
    `keys` as the replicas; writes the effective configuration it runs with into the state dir."""
    write_private(state.gatekeeper_config_file, config.model_dump_json(indent=2))
    argv = [
        sys.executable,
        "-m",
        "gpucluster.runtime.gatekeeper",
        "--config-json",
        str(state.gatekeeper_config_file),
        "--state-dir",
        str(state.root),
    ]
    if keys.store is not None:
        argv += ["--store", keys.store]
    for option, files in (
        ("--key-file", keys.files),
        ("--env-key-file", keys.env_files),
        ("--operator-key-file", keys.operator_files),
    ):
        for file in files:
            argv += [option, file]
    return ServiceSpec(name="gatekeeper", argv=argv)


def ensure_operator_key(state: StateDir) -> Path:
    """The platform's own API key file (`gpucluster-operator`), created (0600) when missing.

    Its key is for the platform's probes and operator tools (health, bench, chat, `up`'s
    readiness check); alone it does not turn authentication on.
    """
    path = state.operator_key_file
    if first_key(path) is None:
        write_private(path, new_key() + "\n")
    return path


def ensure_dashboard_password(state: StateDir, user: str) -> str | None:
    """Create the /dashboard login file with `user` on first use; returns the new password,
    else None (the file exists, whatever logins it holds: runtime.dashboard_logins).

    Only a SHA-512 crypt hash is stored; the password is shown once by `gpucluster up`.
    """
    return ensure_first_login(state.htpasswd_file, user)
