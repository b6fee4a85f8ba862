"""An extra nginx rendered from the platform's template, on a free loopback port.

It shows what a rendering does (another setting, another upstream) without touching the
platform's own edge: its pid file, logs and temporary files go to a directory of its own.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gpucluster.runtime.edge import NGINX_BINARY, render_nginx_conf


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def extra_edge(values: dict[str, str], root: Path) -> Iterator[str]:
    """nginx with the template's `values`, listening on 127.0.0.1:<free port>; yields its URL."""
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    values = {
        **values,
        "NGINX_LISTEN": f"127.0.0.1:{port}",
        "NGINX_PID_FILE": str(root / "nginx.pid"),
        "NGINX_ERROR_LOG": str(root / "error.log"),
        "NGINX_ACCESS_LOG": str(root / "access.log"),
        "NGINX_TEMP_DIR": str(root / "tmp"),
    }
    conf = root / "nginx.conf"
    conf.write_text(render_nginx_conf(values))
    process = subprocess.Popen(
        [
            NGINX_BINARY,
            "-p",
            str(root),
            "-c",
            str(conf),
            "-e",
            str(root / "error.log"),
            "-g",
            "daemon off;",
        ],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"nginx did not start: {(root / 'error.log').read_text(errors='replace')}"
                    ) from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
