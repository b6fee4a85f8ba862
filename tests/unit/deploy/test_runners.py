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
        {
            **HOST_PARAMS,
            "head": "joins the head",
            "address": "joins the head",
            "port": "a head's",
            "include-dashboard": "a head's",
            "dashboard-port": "a head's",
        },
    ),
    "kuberay head": (
        {**LOCAL_ONLY_ENV, **TOKEN_ENV, **KUBERAY_SETS},
        {
            **HOST_PARAMS,
            "head": "KubeRay adds it to the head group",
            "dashboard-port": f"KubeRay's services expect {DASHBOARD_PORT}",
        },
    ),
    "kuberay worker": (
        {**LOCAL_ONLY_ENV, **TOKEN_ENV, **KUBERAY_SETS},
        {
            **HOST_PARAMS,
            "head": "KubeRay joins it to the head",
            "port": "a head's",
            "include-dashboard": "a head's",
            "dashboard-port": "a head's",
        },
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
        "7000",
        "9100",
        "9265",
    )
    for name in INTENDED:
        _, ray_params = runner(name, config)
        assert ray_params["metrics-export-port"] == "9100", name


# --- the edge: one nginx config, three runners ---------------------------------------------------

# The nginx template's values that differ by runner, with the reason. Every other value is equal,
# so the routes, the body limit, the timeouts, the error bodies, the dashboard's read-only filter
# and the real-IP settings are the same wherever the platform runs.
EDGE_RUNNER_VALUES = {
    "NGINX_USER_LINE": "local mode's workers switch to the invoking user; a container's user runs them",
    "NGINX_PID_FILE": "the state dir locally; the container's /tmp",
    "NGINX_ERROR_LOG": "log files locally; the container's stderr",
    "NGINX_ACCESS_LOG": "log files locally; the container's stdout",
    "NGINX_TEMP_DIR": "the state dir locally; the container's /tmp",
    "NGINX_HTPASSWD_FILE": "the state dir (the state volume in compose); a Secret on Kubernetes",
    "SERVE_UPSTREAMS_FILE": "the upstream watcher's file; on Kubernetes the ConfigMap's, naming "
    "KubeRay's Serve Service",
    "GATEKEEPER_UPSTREAM": "on bind_host locally; the ray-serve container; the pod's sidecar",
    "DASHBOARD_UPSTREAM": "on bind_host locally; the ray-serve container; KubeRay's head Service",
    "RAY_DASHBOARD_AUTH": "the token itself; on Kubernetes the pod puts it in from its Secret",
}
# One config, with the edge's settings away from their defaults.
EDGE_CONFIG = Config(
    models=GPU_CONFIG.models,
    platform={
        "ports": {"nginx_http": 28080, "gatekeeper": 29095, "serve_http": 8100},
        "edge": {
            "max_body_mib": 16,
            "read_timeout_s": 900,
            "rate_limit_rps": 5,
            "rate_limit_burst": 9,
        },
        "security": {
            "trusted_proxies": ["10.0.0.0/8"],
            "real_ip_header": "X-Real-IP",
            "dashboard_write": True,
            "default_quota": {"requests_per_minute": 60},
            "quotas": {"team-a": {"tokens_per_minute": 1000}},
        },
    },
)
EDGE_RUNNERS = ("local", "compose", "kubernetes")


def edge_values(name: str, config: Config, tmp_path) -> dict[str, str]:
    """The nginx template's values `name` renders from `config`."""
    from gpucluster.render.container import container_nginx_values
    from gpucluster.render.kuberay_edge import kubernetes_nginx_values
    from gpucluster.runtime.edge import nginx_values

    state = StateDir(tmp_path / "state")
    if name == "local":
        return nginx_values(config, state, "t0ken")
    if name == "compose":
        return container_nginx_values(config, state, "t0ken", "ray-serve")
    return kubernetes_nginx_values(config)


def edge_conf(name: str, config: Config, tmp_path) -> str:
    """The nginx config `name` runs: the Kubernetes one as its ConfigMap holds it."""
    from gpucluster.render.kuberay_edge import NGINX_CONF_KEY, edge_config_map
    from gpucluster.runtime.edge import render_nginx_conf

    if name == "kubernetes":
        return edge_config_map(config)["data"][NGINX_CONF_KEY]
    return render_nginx_conf(edge_values(name, config, tmp_path))


def enforced(conf: str) -> dict[str, list[str]]:
    """The directives that decide what a client gets: routes, limits, timeouts, answers."""
    names = (
        "listen",
        "location",
        "client_max_body_size",
        "client_body_buffer_size",
        "proxy_read_timeout",
        "proxy_send_timeout",
        "proxy_buffering",
        "error_page",
        "return",
        "add_header",
        "auth_request",
        "auth_basic",
        "set_real_ip_from",
        "real_ip_header",
        "default",
        "proxy_intercept_errors",
        "keepalive_timeout",
    )
    found: dict[str, list[str]] = {name: [] for name in names}
    for line in conf.splitlines():
        words = line.strip().split(None, 1)
        if words and words[0] in found:
            found[words[0]].append(line.strip())
    return found


@pytest.mark.parametrize("name", ["compose", "kubernetes"])
def test_the_edge_gets_local_modes_values_but_for_declared_differences(name, tmp_path):
    reference = edge_values("local", EDGE_CONFIG, tmp_path)
    values = edge_values(name, EDGE_CONFIG, tmp_path)
    assert set(values) == set(reference)
    assert set(EDGE_RUNNER_VALUES) <= set(reference)
    differing = {key for key in reference if values[key] != reference[key]}
    assert differing <= set(EDGE_RUNNER_VALUES), differing - set(EDGE_RUNNER_VALUES)


def test_one_edge_config_text_for_every_runner_but_the_declared_values(tmp_path):
    from gpucluster.runtime.edge import render_nginx_conf

    texts = set()
    for name in EDGE_RUNNERS:
        values = edge_values(name, EDGE_CONFIG, tmp_path)
        texts.add(render_nginx_conf({**values, **{k: f"<{k}>" for k in EDGE_RUNNER_VALUES}}))
    assert len(texts) == 1


def test_every_runner_enforces_the_same_routes_limits_timeouts_and_error_bodies(tmp_path):
    confs = {name: edge_conf(name, EDGE_CONFIG, tmp_path) for name in EDGE_RUNNERS}
    directives = {name: enforced(conf) for name, conf in confs.items()}
    assert directives["compose"] == directives["local"]
    assert directives["kubernetes"] == directives["local"]
    local = directives["local"]
    # the config's settings, not the defaults, in all three
    assert local["listen"] == ["listen 0.0.0.0:28080;"]
    assert local["client_max_body_size"] == ["client_max_body_size 16m;"]
    assert "proxy_read_timeout 900s;" in local["proxy_read_timeout"]
    assert local["set_real_ip_from"] == ["set_real_ip_from 10.0.0.0/8;"]
    assert "default 1;" in local["default"]  # dashboard_write
    assert any("The request body is larger than 16m." in line for line in local["return"])
    for name, conf in confs.items():
        assert "upstream serve {" in conf and "least_conn;" in conf, name


def test_every_runner_reaches_serve_on_its_port(tmp_path):
    from gpucluster.render.kuberay_edge import UPSTREAMS_KEY, edge_config_map
    from gpucluster.runtime.upstreams import upstream_servers

    port = EDGE_CONFIG.platform.ports.serve_http
    # local mode and compose start towards Serve's proxy (the watcher adds replicas' own ports)
    assert upstream_servers("127.0.0.1", [], port) == f"server 127.0.0.1:{port};\n"
    assert upstream_servers("ray-serve", [], port) == f"server ray-serve:{port};\n"
    upstreams = edge_config_map(EDGE_CONFIG)["data"][UPSTREAMS_KEY]
    assert upstreams == f"server gpu-cluster-serve-svc:{port};\n"


def test_every_runners_gatekeeper_limits_alike(tmp_path):
    from gpucluster.render.kuberay_edge import GATEKEEPER_CONFIG_KEY, edge_config_map
    from gpucluster.runtime.admission import Limits

    # local mode's gatekeeper and compose's read the platform config itself (runtime.edge.
    # gatekeeper_service writes its JSON; compose mounts the file); the pod's reads its JSON
    pod = Config.model_validate_json(edge_config_map(EDGE_CONFIG)["data"][GATEKEEPER_CONFIG_KEY])
    assert Limits.from_config(pod) == Limits.from_config(EDGE_CONFIG)
    assert pod.platform.security == EDGE_CONFIG.platform.security
    assert pod.platform.ports.gatekeeper == EDGE_CONFIG.platform.ports.gatekeeper
    assert [m.id for m in pod.models] == [m.id for m in EDGE_CONFIG.models]
