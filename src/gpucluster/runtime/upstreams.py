"""nginx's way to the Serve application: the ingress replicas' own HTTP ports, kept current.

Serve's direct ingress gives each ingress replica (the model's vLLM replicas themselves, with
direct streaming) an HTTP port of config.schema.DIRECT_INGRESS_PORTS on Serve's host. This
watcher finds the ports that accept connections once a second and, when the set changes,
rewrites the `upstream` servers file nginx includes and has nginx reload it. With no replica
port open (start-up, scale to zero) the upstream is Serve's HTTP proxy, which holds requests
until a replica is up.

Local mode runs it under the supervisor; the compose ray-serve container runs it beside Ray and
the nginx container reloads when the file changes.

    python -m gpucluster.runtime.upstreams OUT --scan-host 127.0.0.1 --upstream-host 127.0.0.1 \
        --serve-port 8000 [--nginx-pid FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from gpucluster.config.schema import DIRECT_INGRESS_PORTS

logger = logging.getLogger("gpucluster.upstreams")

CONNECT_TIMEOUT_S = 0.2
INTERVAL_S = 1.0


def direct_ports() -> range:
    """Every port Serve may give an ingress replica."""
    low, high = DIRECT_INGRESS_PORTS
    return range(low, high + 1)


def open_ports(host: str, ports: range, timeout_s: float = CONNECT_TIMEOUT_S) -> list[int]:
    """The `ports` of `host` that accept a TCP connection."""
    found = []
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                found.append(port)
        except OSError:
            continue
    return found


def upstream_servers(host: str, ports: list[int], serve_port: int) -> str:
    """The `server` lines of nginx's `serve` upstream: the replicas' ports, else Serve's proxy."""
    if not ports:
        return f"server {host}:{serve_port};\n"
    return "".join(f"server {host}:{port};\n" for port in ports)


def write_if_changed(path: Path, text: str) -> bool:
    """Replace `path` atomically with `text` unless it holds it already; True when replaced."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def reload_nginx(pid_file: Path | None) -> None:
    """SIGHUP to the nginx master named by `pid_file`, if one runs (compose: its own loop)."""
    if pid_file is None:
        return
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
    except (OSError, ValueError):
        logger.warning("nginx not reloaded: no running nginx in %s", pid_file)


def watch(
    out: Path, scan_host: str, upstream_host: str, serve_port: int, nginx_pid: Path | None
) -> None:
    """Keep `out` listing the open replica ports, forever."""
    while True:
        ports = open_ports(scan_host, direct_ports())
        if write_if_changed(out, upstream_servers(upstream_host, ports, serve_port)):
            where = ", ".join(map(str, ports)) if ports else f"Serve's proxy :{serve_port}"
            logger.info("nginx upstream: %s", where)
            reload_nginx(nginx_pid)
        time.sleep(INTERVAL_S)


def main(argv: list[str]) -> int:
    """Entry point (see the module docstring)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m gpucluster.runtime.upstreams")
    parser.add_argument("out", type=Path, help="the upstream servers file nginx includes")
    parser.add_argument("--scan-host", default="127.0.0.1", help="where the replicas listen")
    parser.add_argument("--upstream-host", default="127.0.0.1", help="how nginx reaches them")
    parser.add_argument("--serve-port", type=int, required=True, help="Serve's HTTP proxy")
    parser.add_argument("--nginx-pid", type=Path, help="nginx's pid file, to reload it")
    args = parser.parse_args(argv[1:])
    watch(args.out, args.scan_host, args.upstream_host, args.serve_port, args.nginx_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
