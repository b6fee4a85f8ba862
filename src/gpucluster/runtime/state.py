"""The local-mode state directory: what `up` started, its logs and generated files."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpucluster.config import Config

# Ray writes its session logs and the Prometheus service-discovery file here; the operator
# guide names /tmp/ray/prom_metrics_service_discovery.json, so the location stays Ray's default.
RAY_TEMP_DIR = Path("/tmp/ray")
RAY_SESSION_LOGS = RAY_TEMP_DIR / "session_latest" / "logs"
RAY_SD_FILE = RAY_TEMP_DIR / "prom_metrics_service_discovery.json"


@dataclass(frozen=True)
class Endpoints:
    """Where an operator reaches the running platform."""

    openai_api: str
    health: str
    dashboard: str
    ray_dashboard: str
    serve: str
    ray_metrics: str
    prometheus: str
    alertmanager: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def endpoints_for(config: Config) -> Endpoints:
    """Where the platform `config` describes is reached: what `up` records, and what the operator
    tools use when nothing runs. It lives here, beside Endpoints and below serving, so that
    ops/target.py reaches it without loading serving (runtime/platform.py imports serving)."""
    platform = config.platform
    host = platform.bind_host
    edge_host = (
        host if platform.edge.listen_host in ("0.0.0.0", "::") else platform.edge.listen_host
    )
    proxy = f"http://{edge_host}:{platform.ports.nginx_http}"
    return Endpoints(
        openai_api=f"{proxy}/v1",
        health=f"{proxy}/health",
        dashboard=f"{proxy}/dashboard/",
        ray_dashboard=f"http://{host}:{platform.ports.ray_dashboard}",
        serve=f"http://{host}:{platform.ports.serve_http}",
        ray_metrics=f"http://{host}:{platform.ports.ray_metrics}/metrics",
        prometheus=f"http://{host}:{platform.ports.prometheus}",
        alertmanager=f"http://{host}:{platform.ports.alertmanager}",
    )


@dataclass(frozen=True)
class PlatformRecord:
    """What a successful `up` started, written to `platform.json`."""

    started_at: float
    ray_address: str
    config: dict[str, Any]
    endpoints: Endpoints
    models: list[str] = field(default_factory=list)
    api_key_files: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PlatformRecord:
        data = json.loads(text)
        data["endpoints"] = Endpoints(**data["endpoints"])
        return cls(**data)


class StateDir:
    """Paths under the platform's state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def record_file(self) -> Path:
        return self.root / "platform.json"

    @property
    def serve_config_file(self) -> Path:
        return self.root / "serve-config.json"

    @property
    def tag(self) -> str:
        """Marks this platform's processes (see processes.PLATFORM_TAG_ENV)."""
        return str(self.root.resolve())

    @property
    def nginx_dir(self) -> Path:
        return self.root / "nginx"

    @property
    def prometheus_dir(self) -> Path:
        return self.root / "prometheus"

    @property
    def alertmanager_dir(self) -> Path:
        return self.root / "alertmanager"

    @property
    def htpasswd_file(self) -> Path:
        return self.root / "dashboard.htpasswd"

    @property
    def ray_token_file(self) -> Path:
        return self.root / "ray-auth-token"

    @property
    def api_keys_file(self) -> Path:
        """Keys given in $GPUCLUSTER_API_KEYS, written here for the ingress to read."""
        return self.root / "api-keys.env"

    @property
    def operator_key_file(self) -> Path:
        """The platform's own API key (`gpucluster-operator`), for its probes and tools."""
        return self.root / "operator-key"

    @property
    def usage_log(self) -> Path:
        """One JSON line per API request, written by the gatekeeper (rotated)."""
        return self.logs / "usage.jsonl"

    @property
    def keys_last_used_file(self) -> Path:
        """When each key was last used ({name: ISO time}), written by the gatekeeper."""
        return self.root / "keys-last-used.json"

    @property
    def gatekeeper_config_file(self) -> Path:
        """The configuration the supervised gatekeeper runs with."""
        return self.root / "gatekeeper-config.json"

    @property
    def services_file(self) -> Path:
        return self.root / "services.json"

    @property
    def processes_file(self) -> Path:
        """Every platform process once `up` succeeded (PID, start time), for `down`."""
        return self.root / "processes.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisor.pid"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def ensure(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def read_record(self) -> PlatformRecord | None:
        try:
            return PlatformRecord.from_json(self.record_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def write_record(self, record: PlatformRecord) -> None:
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(record.to_json(), encoding="utf-8")
        tmp.replace(self.record_file)

    def clear_record(self) -> None:
        self.record_file.unlink(missing_ok=True)
        self.processes_file.unlink(missing_ok=True)

    def write_processes(self, identities: list[dict[str, float]]) -> None:
        tmp = self.processes_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(identities), encoding="utf-8")
        tmp.replace(self.processes_file)

    def read_processes(self) -> list[dict[str, float]]:
        try:
            data = json.loads(self.processes_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return []
        return data if isinstance(data, list) else []
