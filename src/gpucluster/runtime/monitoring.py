"""Prometheus, Alertmanager and the alert receiver in local mode, from deploy/ configs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from gpucluster.assets import ALERTMANAGER_CONFIG, PROMETHEUS_DIR, RULES_DIR
from gpucluster.config import Config
from gpucluster.runtime.edge import fill_template
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.supervisor import ServiceSpec

PROMETHEUS_BINARY = "/usr/bin/prometheus"
ALERTMANAGER_BINARY = "/usr/bin/prometheus-alertmanager"
RETENTION = "15d"


# The file_sd lists prometheus.yml reads beside itself: the addresses that differ by runner.
# Local mode writes them here; compose mounts its own from deploy/compose/prometheus/.
ALERTMANAGERS_SD = "alertmanagers.json"
GATEKEEPER_SD = "gatekeeper.json"  # job gpucluster-edge: the gatekeeper's /metrics


def prepare_prometheus(config: Config, state: StateDir) -> Path:
    """Copy deploy/prometheus (config and rules) into the state dir; point it at Alertmanager
    and the gatekeeper."""
    target = state.prometheus_dir
    rules = target / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for old in rules.glob("*.yml"):
        old.unlink()
    shutil.copy(PROMETHEUS_DIR / "prometheus.yml", target / "prometheus.yml")
    for rule_file in RULES_DIR.glob("*.yml"):
        shutil.copy(rule_file, rules / rule_file.name)
    platform = config.platform
    addresses = {
        ALERTMANAGERS_SD: f"{platform.bind_host}:{platform.ports.alertmanager}",
        GATEKEEPER_SD: platform.gatekeeper_address,
    }
    for name, address in addresses.items():
        (target / name).write_text(json.dumps(sd_targets(address)), encoding="utf-8")
    return target / "prometheus.yml"


def sd_targets(address: str) -> list[dict[str, list[str]]]:
    """Prometheus's file_sd list (a file beside prometheus.yml) for one fixed address."""
    return [{"targets": [address]}]


def alert_receiver_url(host: str, config: Config) -> str:
    """Where Alertmanager delivers to the platform's webhook receiver running on `host`."""
    return f"http://{host}:{config.platform.ports.alert_receiver}/alerts"


def render_alertmanager_config(receiver_url: str) -> str:
    """deploy/alertmanager/alertmanager.yml delivering to the receiver at `receiver_url`."""
    return fill_template(
        ALERTMANAGER_CONFIG.read_text(encoding="utf-8"),
        {"ALERT_RECEIVER_URL": receiver_url},
    )


def prepare_alertmanager(config: Config, state: StateDir) -> Path:
    """Render deploy/alertmanager/alertmanager.yml with the local receiver's URL."""
    state.alertmanager_dir.mkdir(parents=True, exist_ok=True)
    text = render_alertmanager_config(alert_receiver_url(config.platform.bind_host, config))
    path = state.alertmanager_dir / "alertmanager.yml"
    path.write_text(text, encoding="utf-8")
    return path


def monitoring_services(config: Config, state: StateDir) -> list[ServiceSpec]:
    """Prometheus, Alertmanager and the receiver, each bound to the platform's loopback host."""
    host = config.platform.bind_host
    ports = config.platform.ports
    prometheus_yml = prepare_prometheus(config, state)
    alertmanager_yml = prepare_alertmanager(config, state)
    return [
        ServiceSpec(
            name="prometheus",
            argv=[
                PROMETHEUS_BINARY,
                f"--config.file={prometheus_yml}",
                f"--storage.tsdb.path={state.prometheus_dir / 'data'}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address={host}:{ports.prometheus}",
                "--web.enable-lifecycle",
            ],
        ),
        ServiceSpec(
            name="alertmanager",
            argv=[
                ALERTMANAGER_BINARY,
                f"--config.file={alertmanager_yml}",
                f"--storage.path={state.alertmanager_dir / 'data'}",
                f"--web.listen-address={host}:{ports.alertmanager}",
                "--cluster.listen-address=",
            ],
        ),
        ServiceSpec(
            # at its start it closes what the log left firing, but what Alertmanager still has
            name="alert-receiver",
            argv=[
                sys.executable,
                "-m",
                "gpucluster.runtime.alert_receiver",
                host,
                str(ports.alert_receiver),
                str(state.log("alerts")),
                f"http://{host}:{ports.alertmanager}",
            ],
        ),
    ]
