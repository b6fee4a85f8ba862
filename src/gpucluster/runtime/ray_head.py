"""Starting the local Ray head node with the platform's ports, and its token and environment.

Nothing here stops it: `gpucluster down` (runtime.platform.down) ends the head with every other
process carrying the platform's tag, never with `ray stop`, which would end every Ray cluster on
the host.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from gpucluster.config import Config, ray_node
from gpucluster.errors import GpuClusterError
from gpucluster.runtime.processes import PLATFORM_TAG_ENV, run_logged, venv_bin
from gpucluster.runtime.state import StateDir


class RayStartError(GpuClusterError, RuntimeError):
    """`ray start` failed; the message carries the reason and where the log is."""

    next_step = "`gpucluster logs ray`"


def logical_cpus(config: Config) -> int:
    """CPUs the head advertises: more than the cores, so that small hosts schedule every actor."""
    if config.platform.ray_num_cpus is not None:
        return config.platform.ray_num_cpus
    return max(8, 4 * (os.cpu_count() or 1))


def ensure_ray_token(state: StateDir) -> str:
    """The platform's Ray auth token (created on first use, readable by its owner only)."""
    if not state.ray_token_file.exists():
        state.ray_token_file.touch(mode=0o600)
        state.ray_token_file.write_text(secrets.token_hex(32), encoding="utf-8")
    return state.ray_token_file.read_text(encoding="utf-8").strip()


def head_host(config: Config) -> str:
    """The Ray head's node address: `cluster_host` when workers of other hosts join, else bind_host."""
    return config.platform.cluster_host or config.platform.bind_host


def node_env(node_ip: str, tag: str, token_file: Path) -> dict[str, str]:
    """Environment for one local Ray node's processes (head or worker) tagged `tag`."""
    env = {**ray_node.node_env(str(token_file)), PLATFORM_TAG_ENV: tag}
    if _is_loopback(node_ip):
        # Ray swaps a loopback --node-ip-address for the host's address (and binds there)
        # unless it runs as a single-host cluster: this keeps its ports on 127.0.0.1.
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def ray_env(config: Config, state: StateDir) -> dict[str, str]:
    """Environment for the head's processes and its clients (the deploy driver, `ray status`)."""
    return node_env(head_host(config), state.tag, state.ray_token_file)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def ray_address(config: Config) -> str:
    return f"{head_host(config)}:{config.platform.ports.ray_gcs}"


def head_argv(config: Config) -> list[str]:
    """`ray start` for the local head: the shared options, on this host's addresses and CPUs."""
    return [
        venv_bin("ray"),
        "start",
        "--head",
        f"--node-ip-address={head_host(config)}",
        f"--dashboard-host={config.platform.bind_host}",
        f"--num-cpus={logical_cpus(config)}",
        *ray_node.start_args(ray_node.start_params(config, head=True)),
    ]


def start_head(config: Config, state: StateDir) -> str:
    """Start the Ray head (dashboard and metrics export on the configured ports)."""
    ensure_ray_token(state)
    result = run_logged(
        head_argv(config), state.log("ray"), env=ray_env(config, state), timeout=180
    )
    if result.returncode != 0:
        raise RayStartError(
            f"`ray start` failed (exit {result.returncode}); see {state.log('ray')}"
        )
    return ray_address(config)
