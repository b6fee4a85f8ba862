"""Every runner's Ray nodes get the settings local mode's head gets, but for declared differences.

Local mode is the reference: it is the runner the live suite starts. The container entrypoint
(`gpucluster render ray-node`, compose head and worker hosts) and the KubeRay head and worker
groups are compared with it, setting by setting; a difference fails unless it is listed here
with its reason.
"""

from __future__ import annotations

import pytest

from gpucluster.config import Config
from gpucluster.render.container import ray_node_start
from gpucluster.render.kuberay import DASHBOARD_PORT, rayservice
from gpucluster.runtime.processes import PLATFORM_TAG_ENV
from gpucluster.runtime.ray_head import head_argv, ray_env
from gpucluster.runtime.state import StateDir

# Runner-specific by design, with the reason.
LOCAL_ONLY_ENV = {
    PLATFORM_TAG_ENV: "tags local mode's processes so `down` finds them",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "keeps a loopback-bound head on 127.0.0.1",
}
TOKEN_ENV = {
    "RAY_AUTH_TOKEN_PATH": "where the token lies differs by runner; KubeRay and compose "
    "workers hand it over as RAY_AUTH_TOKEN",
}
KUBERAY_SETS = {"RAY_AUTH_MODE": "KubeRay sets it from authOptions"}
HOST_PARAMS = {
    "node-ip-address": "each host's own address",
    "dashboard-host": "loopback locally; the container's or pod's network elsewhere",
    "num-cpus": "local mode over-advertises a small host's cores; elsewhere Ray counts them",
}
INTENDED = {
    "container head": ({**LOCAL_ONLY_ENV, **TOKEN_ENV}, HOST_PARAMS),
    "compose worker": (
        {**LOCAL_ONLY_ENV, **TOKEN_ENV},
        {**HOST_PARAMS, "head": "joins the head", "address": "joins the head",
         "port": "a head's", "include-dashboard": "a head's", "dashboard-port": "a head's"},
    ),
    "kuberay head": (
        {**LOCAL_ONLY_ENV, **TOKEN_ENV, **KUBERAY_SETS},
        {**HOST_PARAMS, "head": "KubeRay adds it to the head group",
         "dashboard-port": f"KubeRay's services expect {DASHBOARD_PORT}"},
    ),
    "kuberay worker": (
        {**LOCAL_ONLY_ENV, **TOKEN_ENV, **KUBERAY_SETS},
        {**HOST_PARAMS, "head": "KubeRay joins it to the head",
         "port": "a head's", "include-dashboard": "a head's", "dashboard-port": "a head's"},
    ),
}
# a model `capacity` knows: the worker pods are sized from its shape
GPU_CONFIG = Config(
    models=[{"id": "m", "source": "Qwen/Qwen2.5-7B-Instruct", "accelerator": "gpu"}]
)


def params(args: list[str]) -> dict[str, str]:
    """`["--head", "--port=6379"]` -> `{"head": "", "port": "6379"}`."""
    out = {}
    for arg in args:
        name, _, value = arg.removeprefix("--").partition("=")
        out[name] = value
    return out


def kuberay_group(config: Config, group: str) -> tuple[dict[str, str], dict[str, str]]:
    cluster = rayservice(config)["spec"]["rayClusterConfig"]
    spec = cluster["headGroupSpec"] if group == "head" else cluster["workerGroupSpecs"][0]
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("RAY")}
    return env, dict(spec["rayStartParams"])


def runner(name: str, config: Config) -> tuple[dict[str, str], dict[str, str]]:
    """The Ray environment and `ray start` options `name` gives its node."""
    if name == "container head":
        env, args = ray_node_start(config, "172.18.0.2")
    elif name == "compose worker":
        env, args = ray_node_start(config, None, head_address="10.0.0.1:6379")
    else:
        env, ray_params = kuberay_group(config, name.removeprefix("kuberay "))
        return env, ray_params
    return env, params(args)


def local_head(config: Config, tmp_path) -> tuple[dict[str, str], dict[str, str]]:
    env = ray_env(config, StateDir(tmp_path / "state"))
    return env, params(head_argv(config)[2:])


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_runner_gets_local_modes_ray_node_settings(name, tmp_path):
    reference_env, reference_params = local_head(GPU_CONFIG, tmp_path)
    env, ray_params = runner(name, GPU_CONFIG)
    intended_env, intended_params = INTENDED[name]
    assert {k: v for k, v in env.items() if k not in intended_env} == {
        k: v for k, v in reference_env.items() if k not in intended_env
    }
    assert {k: v for k, v in ray_params.items() if k not in intended_params} == {
        k: v for k, v in reference_params.items() if k not in intended_params
    }


def test_the_settings_that_made_serving_fast_reach_every_runner(tmp_path):
    for name in INTENDED:
        env, _ = runner(name, GPU_CONFIG)
        assert env["RAY_worker_niceness"] == "0", name
        assert env["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5", name


def test_changed_ports_reach_every_runner(tmp_path):
    config = Config(
        models=GPU_CONFIG.models,
        platform={"ports": {"ray_gcs": 7000, "ray_metrics": 9100, "ray_dashboard": 9265}},
    )
    _, local = local_head(config, tmp_path)
    assert (local["port"], local["metrics-export-port"], local["dashboard-port"]) == (
        "7000", "9100", "9265"
    )
    for name in INTENDED:
        _, ray_params = runner(name, config)
        assert ray_params["metrics-export-port"] == "9100", name
