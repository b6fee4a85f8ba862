"""Ray worker nodes: `gpucluster join HEAD` adds this host's CPUs and GPUs to a platform's cluster.

The head (`gpucluster up --head`) places Serve replicas on joined nodes as their resources
allow; Prometheus finds each node's metrics through the head's service-discovery file.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from gpucluster.config import Config, ray_node
from gpucluster.errors import GpuClusterError
from gpucluster.runtime.processes import (
    describe,
    platform_processes,
    port_in_use,
    run_logged,
    terminate_all,
    venv_bin,
    worker_tag,
)
from gpucluster.runtime.ray_head import node_env
from gpucluster.runtime.state import StateDir

# Apart from the head's range (config.schema.RAY_WORKER_PORTS), so a node joined on the head's own
# host never hands out a port the head's workers use.
JOINED_WORKER_PORTS = (30000, 39999)
DASHBOARD_AGENT_PORT = 52365  # Ray's default


class JoinError(GpuClusterError, RuntimeError):
    """Joining failed; the message says why and what to do."""


@dataclass(frozen=True)
class JoinResult:
    head: str
    node_ip: str
    num_cpus: int
    num_gpus: int
    metrics_port: int
    log: str


def local_address_towards(host: str) -> str:
    """The address this host uses to reach `host` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, 9))
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def host_address() -> str:
    """This host's address on its default route: what other hosts reach it at."""
    return local_address_towards("10.255.255.255")


def free_port(preferred: int, host: str) -> int:
    """`preferred`, or the next port up that nothing listens on (the head's own host)."""
    port = preferred
    while port_in_use(port, host) and port < preferred + 100:
        port += 1
    return port


def join(
    config: Config,
    head: str,
    *,
    num_cpus: int,
    num_gpus: int,
    token_file: Path,
    node_ip: str | None = None,
) -> JoinResult:
    """Start a Ray worker node on this host that joins the head at `head` (host:port)."""
    state = StateDir(config.platform.state_dir)
    state.ensure()
    if not token_file.is_file():
        raise JoinError(
            f"no Ray token at {token_file}: copy the head's token file "
            f"(`{state.ray_token_file.name}` in its state directory) to this host and pass it "
            "with --token-file"
        )
    host, _, port = head.rpartition(":")
    if not host or not port.isdigit():
        raise JoinError(
            f"head address {head!r} must be HOST:PORT, for example "
            f"10.0.0.5:{config.platform.ports.ray_gcs}"
        )
    ip = node_ip or local_address_towards(host)
    metrics_port = free_port(config.platform.ports.ray_metrics, ip)
    argv = [
        venv_bin("ray"),
        "start",
        f"--address={head}",
        f"--node-ip-address={ip}",
        f"--num-cpus={num_cpus}",
        f"--num-gpus={num_gpus}",
        f"--dashboard-agent-listen-port={free_port(DASHBOARD_AGENT_PORT, ip)}",
        *ray_node.start_args(
            {
                **ray_node.start_params(config, head=False),
                # free ports beside a head (or another node) on the same host
                "metrics-export-port": str(metrics_port),
                "min-worker-port": str(JOINED_WORKER_PORTS[0]),
                "max-worker-port": str(JOINED_WORKER_PORTS[1]),
            }
        ),
    ]
    log = state.log("ray-worker")
    env = node_env(ip, worker_tag(state.tag), token_file)
    result = run_logged(argv, log, env=env, timeout=180)
    if result.returncode != 0:
        leave(config)
        raise JoinError(
            f"`ray start --address={head}` failed (exit {result.returncode}); see {log}. Check "
            "that the head was started with `gpucluster up --head`, that its GCS port is "
            "reachable from here, and that the token file is the head's."
        )
    return JoinResult(head, ip, num_cpus, num_gpus, metrics_port, str(log))


def leave(config: Config) -> list[str]:
    """Stop this host's worker node (its raylet, workers and engines); the head keeps running."""
    state = StateDir(config.platform.state_dir)
    procs = platform_processes(worker_tag(state.tag), exact=True)
    stopped = [describe(p) for p in procs]
    terminate_all(procs, grace_s=15)
    return stopped
