"""Prometheus and Alertmanager configs as local mode prepares them pass their own checkers."""

from __future__ import annotations

import json
import subprocess

import yaml

from gpucluster.config import Config, load_config
from gpucluster.runtime.monitoring import (
    monitoring_services,
    prepare_alertmanager,
    prepare_prometheus,
)
from gpucluster.runtime.state import StateDir


def test_prepared_prometheus_config_passes_promtool(tmp_path, promtool):
    state = StateDir(tmp_path)
    state.ensure()
    config_file = prepare_prometheus(load_config(None, env={}), state)
    assert json.loads((config_file.parent / "alertmanagers.json").read_text()) == [
        {"targets": ["127.0.0.1:19093"]}
    ]
    assert json.loads((config_file.parent / "gatekeeper.json").read_text()) == [
        {"targets": ["127.0.0.1:19095"]}
    ]
    assert (config_file.parent / "rules" / "guide-names.yml").exists()
    result = subprocess.run(
        [promtool, "check", "config", str(config_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_alertmanager_config_passes_amtool(tmp_path):
    state = StateDir(tmp_path)
    state.ensure()
    path = prepare_alertmanager(load_config(None, env={}), state)
    assert "http://127.0.0.1:19094/alerts" in path.read_text()
    result = subprocess.run(
        ["amtool", "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_monitoring_listens_on_loopback_only(tmp_path):
    state = StateDir(tmp_path)
    state.ensure()
    services = {s.name: s for s in monitoring_services(load_config(None, env={}), state)}
    assert "--web.listen-address=127.0.0.1:19090" in services["prometheus"].argv
    assert "--web.listen-address=127.0.0.1:19093" in services["alertmanager"].argv
    assert "--cluster.listen-address=" in services["alertmanager"].argv  # no gossip port
    assert services["alert-receiver"].argv[-4:-2] == ["127.0.0.1", "19094"]
    assert services["alert-receiver"].argv[-1] == "http://127.0.0.1:19093"  # its Alertmanager


def test_prometheus_scrapes_the_gatekeeper_on_its_configured_port(tmp_path):
    state = StateDir(tmp_path)
    state.ensure()
    config_file = prepare_prometheus(Config(platform={"ports": {"gatekeeper": 29095}}), state)
    jobs = {
        job["job_name"]: job for job in yaml.safe_load(config_file.read_text())["scrape_configs"]
    }
    (sd_file,) = jobs["gpucluster-edge"]["file_sd_configs"][0]["files"]
    assert json.loads((config_file.parent / sd_file).read_text()) == [
        {"targets": ["127.0.0.1:29095"]}
    ]
