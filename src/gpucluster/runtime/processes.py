"""Process helpers: ports, commands with logs, and finding what Ray and vLLM left running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from gpucluster.runtime.state import StateDir

if TYPE_CHECKING:
    from gpucluster.config import PlatformConfig

# Every process of a platform carries this variable (set on `ray start` and the deploy driver,
# inherited by Ray's workers and the vLLM engines they spawn), so that `down` stops exactly the
# platform's processes and never another Ray cluster or a bare vLLM server on the same host.
PLATFORM_TAG_ENV = "GPUCLUSTER_PLATFORM"


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / name)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_owner(port: int) -> str:
    """A short description of the process listening on `port`, or '' when unknown."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid:
                    proc = psutil.Process(conn.pid)
                    return f"{proc.name()} (pid {conn.pid})"
                return "another process"
    except (psutil.Error, OSError):
        pass
    return ""


# Configured ports local mode does not listen on (Grafana runs in compose mode only).
_NOT_LOCAL_PORTS = frozenset({"grafana"})


@dataclass(frozen=True)
class HeldPort:
    """A port the platform is configured to listen on that something already holds."""

    name: str  # its key under platform.ports
    port: int
    owner: str  # the process listening there (port_owner), '' when unknown


def held_ports(platform: PlatformConfig) -> list[HeldPort]:
    """The ports of `platform.ports` that local mode listens on and something already holds."""
    host = platform.bind_host
    return [
        HeldPort(name, port, port_owner(port))
        for name, port in platform.ports.model_dump().items()
        if name not in _NOT_LOCAL_PORTS and port_in_use(port, host)
    ]


def run_logged(
    argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, appending its output to `log_path`."""
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(argv)}\n")
        log.flush()
        return subprocess.run(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            text=True,
            check=False,
        )


_SUB_TAG = "::"


def worker_tag(tag: str) -> str:
    """The tag of a Ray worker node joined on this host: `platform_processes(tag)` includes it."""
    return f"{tag}{_SUB_TAG}worker"


def process_tag(pid: int) -> str | None:
    """The platform tag in the environment process `pid` started with, or None.

    Read from /proc's raw bytes, which psutil's parser can give up on. A process that rewrites
    a long title (Ray's agents) may have overwritten its environment entirely: then None, and
    only its ancestry (see platform_processes) ties it to the platform.
    """
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    key = PLATFORM_TAG_ENV.encode() + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key) :].decode(errors="replace")
    return None


def platform_processes(tag: str, *, exact: bool = False) -> list[psutil.Process]:
    """Processes of the platform tagged `tag` (Ray daemons and workers, vLLM engines).

    Worker nodes joined on this host (`worker_tag(tag)`) count too unless `exact`. A process
    counts when it carries the tag or descends from one that does (processes whose title
    overwrote their environment are found by their ancestry while their parent lives).
    """
    me = os.getpid()
    procs = {p.pid: p for p in psutil.process_iter(["pid", "ppid"]) if p.pid != me}
    tagged = set()
    for pid in procs:
        found_tag = process_tag(pid)
        if found_tag == tag or (
            not exact and found_tag is not None and found_tag.startswith(tag + _SUB_TAG)
        ):
            tagged.add(pid)
    found = []
    for pid, proc in procs.items():
        ancestor, seen = pid, set()
        while ancestor and ancestor not in seen:
            if ancestor in tagged:
                found.append(proc)
                break
            seen.add(ancestor)
            parent = procs.get(ancestor)
            ancestor = parent.info["ppid"] if parent is not None else 0
    return found


def identities(procs: list[psutil.Process]) -> list[dict[str, float]]:
    """PID and start time of each process still running: what `down` finds them by later."""
    found = []
    for proc in procs:
        try:
            found.append({"pid": proc.pid, "started": proc.create_time()})
        except psutil.Error:
            pass
    return found


def still_running(recorded: list[dict[str, float]]) -> list[psutil.Process]:
    """The recorded processes (see `identities`) still running: same PID, same start time, so
    never a process that reused a PID. This finds what neither its tag nor its ancestry shows
    any longer: Ray's agents orphaned by a killed head, their environment overwritten by their
    title, keep the head's ports for minutes and ignore SIGTERM."""
    found = []
    for entry in recorded:
        try:
            proc = psutil.Process(int(entry["pid"]))
            if abs(proc.create_time() - float(entry["started"])) < 0.01:
                found.append(proc)
        except (psutil.Error, KeyError, TypeError, ValueError):
            pass
    return found


def processes_of(state: StateDir) -> list[psutil.Process]:
    """Every process of the platform whose state dir is `state` (but this one): those its tag
    or their ancestry shows, and those recorded when `up` succeeded that still run (orphans
    whose tag and parent are gone)."""
    found = {p.pid: p for p in still_running(state.read_processes()) if p.pid != os.getpid()}
    found.update((p.pid, p) for p in platform_processes(state.tag))
    return list(found.values())


def describe(proc: psutil.Process) -> str:
    """'name (pid N)' for messages."""
    try:
        return f"{proc.name()} (pid {proc.pid})"
    except psutil.Error:
        return f"pid {proc.pid}"


def terminate_all(procs: list[psutil.Process], grace_s: float = 10.0) -> list[psutil.Process]:
    """SIGTERM, wait up to `grace_s`, then SIGKILL; returns the processes that survived."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    return alive


def wait_until(predicate, timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
