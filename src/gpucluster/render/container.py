"""The platform container (deploy/docker/entrypoint.sh): its Ray node and its nginx neighbour.

The entrypoint evaluates `gpucluster render ray-node --shell`, so the container's Ray node gets
the environment and `ray start` options local mode's head gets (config.ray_node).
"""

from __future__ import annotations

import shlex

from gpucluster.config import Config, ray_node
from gpucluster.runtime.edge import nginx_values
from gpucluster.runtime.state import StateDir

# Where the container's dashboard listens: on the container's network (published on the host's
# loopback by compose, reached by the nginx container by name).
DASHBOARD_HOST = "0.0.0.0"


def ray_node_start(
    config: Config, node_ip: str | None, *, head_address: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """Environment and `ray start` arguments of the container's node.

    The head (no `head_address`) reads Ray's token from the state volume; a worker joining
    `head_address` gets it from RAY_AUTH_TOKEN, set by its compose file. Without `node_ip`,
    Ray picks the address (a worker on its host's network).
    """
    head = head_address is None
    token_file = str(StateDir(config.platform.state_dir).ray_token_file) if head else None
    role = (
        ["--head", f"--dashboard-host={DASHBOARD_HOST}"] if head else [f"--address={head_address}"]
    )
    cpus = config.platform.ray_num_cpus
    args = [
        *role,
        *([f"--node-ip-address={node_ip}"] if node_ip else []),
        *([f"--num-cpus={cpus}"] if cpus is not None and head else []),
        *ray_node.start_args(ray_node.start_params(config, head=head)),
    ]
    return ray_node.node_env(token_file), args


def shell_lines(env: dict[str, str], args: list[str]) -> str:
    """`export NAME=value` lines and `RAY_START_ARGS=(...)`, for a bash script to evaluate."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append(f"RAY_START_ARGS=({' '.join(shlex.quote(arg) for arg in args)})")
    return "\n".join(lines) + "\n"


def container_nginx_values(
    config: Config, state: StateDir, ray_token: str, upstream_host: str
) -> dict[str, str]:
    """Placeholder values for an nginx container in front of the `upstream_host` container.

    Compose mode: nginx runs as the Ray image's user (so it reads the htpasswd file in the
    shared state volume, mounted at the same path), logs to the container's stdout and stderr
    (`docker logs`), and reaches Serve and the dashboard by the container's name.
    """
    ports = config.platform.ports
    return {
        **nginx_values(config, state, ray_token),
        "NGINX_USER_LINE": "",
        "NGINX_PID_FILE": "/tmp/nginx.pid",
        "NGINX_ERROR_LOG": "/dev/stderr",
        "NGINX_ACCESS_LOG": "/dev/stdout",
        "NGINX_TEMP_DIR": "/tmp",
        "DASHBOARD_UPSTREAM": f"{upstream_host}:{ports.ray_dashboard}",
        "GATEKEEPER_UPSTREAM": f"{upstream_host}:{ports.gatekeeper}",
    }
