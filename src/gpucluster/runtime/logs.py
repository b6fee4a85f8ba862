"""Component logs of the local-mode platform and the platform's own timestamped log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from gpucluster.errors import InputError
from gpucluster.runtime.state import RAY_SESSION_LOGS, StateDir

COMPONENTS: dict[str, str] = {
    "platform": "what `gpucluster up`/`down` did, with the guide's log lines",
    "nginx": "the edge proxy: access log (no headers, so no keys) and error log",
    "upstreams": "the replica ports nginx proxies to, as they change (runtime.upstreams)",
    "gatekeeper": "the edge's key and quota service: key reloads, refusals (never a key)",
    "usage": "one JSON line per API request: key name, model, status, tokens, TTFT, duration",
    "supervisor": "the supervisor keeping nginx and monitoring running (restarts and why)",
    "prometheus": "Prometheus",
    "alertmanager": "Alertmanager",
    "alerts": "alerts Alertmanager delivered to the platform's receiver (one JSON line each; "
    "`gpucluster alerts` shows each one's current state)",
    "ray": "`ray start`/`ray stop` output, the GCS and raylet",
    "deploy": "the Serve deploy driver",
    "serve": "Serve controller, proxy, ingress and model replicas (model loading lines)",
    "engine": "vLLM engine output from the Ray workers",
}


class UnknownComponent(InputError, ValueError):
    """A `logs` component that does not exist."""


def component_files(state: StateDir, component: str) -> list[Path]:
    """The log files of `component`, oldest first; empty when it has not run yet."""
    if component not in COMPONENTS:
        known = ", ".join(COMPONENTS)
        raise UnknownComponent(f"unknown component {component!r}; choose one of: {known}")
    if component == "platform":
        files = [state.log("platform")]
    elif component == "ray":
        files = [
            state.log("ray"),
            RAY_SESSION_LOGS / "gcs_server.out",
            RAY_SESSION_LOGS / "raylet.out",
        ]
    elif component == "nginx":
        files = [state.log("nginx-access"), state.log("nginx-error"), state.log("nginx")]
    elif component in (
        "upstreams",
        "gatekeeper",
        "supervisor",
        "prometheus",
        "alertmanager",
        "alerts",
    ):
        files = [state.log(component)]
    elif component == "usage":
        files = [state.usage_log]
    elif component == "deploy":
        files = [state.log("deploy")]
    elif component == "serve":
        files = sorted((RAY_SESSION_LOGS / "serve").glob("*.log"), key=_mtime)
    else:
        # vLLM logs to stdout and stderr of the Ray worker processes running it
        files = sorted(
            [*RAY_SESSION_LOGS.glob("worker-*.out"), *RAY_SESSION_LOGS.glob("worker-*.err")],
            key=_mtime,
        )
    return [path for path in files if path.is_file()]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


_TAIL_BLOCK = 64 * 1024


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file, read from its end block by block."""
    with path.open("rb") as handle:
        position = handle.seek(0, 2)
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(_TAIL_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def find_lines(paths: list[Path], needles: tuple[str, ...], limit: int = 20) -> list[str]:
    """Lines containing any of `needles`, in file order, at most `limit` (the last ones)."""
    found: list[str] = []
    for path in paths:
        try:
            found.extend(line for line in tail(path, 5000) if any(n in line for n in needles))
        except OSError:
            continue
    return found[-limit:]


def platform_logger(state: StateDir, echo: Callable[[str], None] | None = None) -> logging.Logger:
    """A logger writing timestamped lines to the platform log (and to `echo`, for progress)."""
    logger = logging.getLogger(f"gpucluster.platform.{state.root}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(state.log("platform"), encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(file_handler)
    if echo is not None:
        logger.addHandler(_EchoHandler(echo))
    return logger


class _EchoHandler(logging.Handler):
    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        self._echo(record.getMessage())
