"""The settings every runner gives its Ray nodes: environment and `ray start` options.

Local mode (runtime.ray_head, runtime.worker_node), the container entrypoint
(`gpucluster render ray-node`, deploy/docker/entrypoint.sh) and the KubeRay manifests
(render.kuberay) all take them from here; tests/unit/deploy/test_runners.py compares what
each runner really gets and names the differences that are intended.
"""

from __future__ import annotations

from gpucluster.config.schema import DIRECT_INGRESS_PORTS, RAY_WORKER_PORTS, Config

# Seconds between the Serve controller's loops (Ray's default 0.1; see node_env).
CONTROL_LOOP_INTERVAL_S = "0.5"


def node_env(token_file: str | None) -> dict[str, str]:
    """Environment of one Ray node's processes and of its clients (deploy driver, `ray status`).

    `token_file` holds Ray's auth token; None where the runner hands the token over itself
    (KubeRay and compose worker hosts set RAY_AUTH_TOKEN).
    """
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        # Token authentication on the dashboard and GCS; nginx carries the token for /dashboard.
        "RAY_AUTH_MODE": "token",
        # The Serve controller's loop runs every 0.1 s by default: 4% of a core on an idle
        # platform, on the core the engine's scheduler needs. Our scaling delays are seconds.
        "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": CONTROL_LOOP_INTERVAL_S,
        # Ray starts its workers at nice 15, below its own daemons; the vLLM engine is spawned
        # by a worker and would inherit it: any daemon, scrape or client then preempts it.
        "RAY_worker_niceness": "0",
        # Each ingress replica serves HTTP on its own port of DIRECT_INGRESS_PORTS, on Serve's
        # host (loopback), and nginx sends the API there: no Serve proxy hop (runtime.edge).
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(DIRECT_INGRESS_PORTS[0]),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(DIRECT_INGRESS_PORTS[1]),
        # A stopping replica keeps taking requests this long for load balancers to notice. nginx
        # needs none: a closed port or a 429 sends the request to the next replica.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    }
    if token_file is not None:
        env["RAY_AUTH_TOKEN_PATH"] = token_file
    return env


def start_params(config: Config, *, head: bool) -> dict[str, str]:
    """`ray start` options shared by every runner, as KubeRay's rayStartParams (no `--`).

    Runner-specific options (node address, CPU count, a head's address for workers) are added
    by each runner; `start_args` turns these into command-line arguments.
    """
    ports = config.platform.ports
    params = {
        "metrics-export-port": str(ports.ray_metrics),
        "min-worker-port": str(RAY_WORKER_PORTS[0]),
        "max-worker-port": str(RAY_WORKER_PORTS[1]),
    }
    if head:
        params = {
            "port": str(ports.ray_gcs),
            "include-dashboard": "true",
            "dashboard-port": str(ports.ray_dashboard),
            **params,
        }
    return params


def start_args(params: dict[str, str]) -> list[str]:
    """`{"port": "6379"}` -> `["--port=6379"]`."""
    return [f"--{name}={value}" for name, value in params.items()]
