"""The platform's nginx edge on Kubernetes (deploy/kuberay/edge.yaml) and the way to it
(gateway.yaml: a Gateway API HTTPRoute and Gateway; ingress.yaml only when asked for).

Schemas as in test_kuberay.py (whose validators this module borrows): the Gateway API v1.4.1
CRDs, Kubernetes 1.30's Deployment, Service, ConfigMap and Ingress. nginx itself checks the
rendered config (`nginx -t`). Nothing here talks to Kubernetes.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpucluster.config import Config
from gpucluster.render import kuberay_edge as edge
from gpucluster.render import kuberay_routes as routes
from gpucluster.render.kuberay import API_KEYS_SECRET, SERVE_SERVICE
from gpucluster.runtime.edge import NGINX_BINARY, NGINX_TEMPLATE, render_nginx_conf

HERE = Path(__file__).parent


def _kuberay_tests() -> Any:
    """test_kuberay.py as a module: its schema validators and readers of deploy/kuberay."""
    spec = importlib.util.spec_from_file_location("_kuberay_schemas", HERE / "test_kuberay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


K = _kuberay_tests()
errors, documents, platform_config, render = K.errors, K.documents, K.platform_config, K.render
REPO, KUBERAY = K.REPO, K.KUBERAY


def edge_yaml() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    config_map, service, deployment = documents("edge.yaml")
    return config_map, service, deployment


def pod_spec() -> dict[str, Any]:
    return edge_yaml()[2]["spec"]["template"]["spec"]


def container(name: str) -> dict[str, Any]:
    spec = pod_spec()
    (found,) = [c for c in [*spec["initContainers"], *spec["containers"]] if c["name"] == name]
    return found


def ports_of(c: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


def nginx_conf() -> str:
    return edge_yaml()[0]["data"][edge.NGINX_CONF_KEY]


def routed(route: dict[str, Any], path: str) -> bool:
    """Whether `route` matches `path` (Gateway API: PathPrefix matches whole path elements)."""
    for rule in route["spec"]["rules"]:
        for match in rule["matches"]:
            kind, value = match["path"]["type"], match["path"]["value"]
            if kind == "Exact" and path == value:
                return True
            if kind == "PathPrefix" and (path == value or path.startswith(value.rstrip("/") + "/")):
                return True
    return False


def seconds(duration: str) -> int:
    """A Gateway API duration (GEP-2257) in seconds (whole seconds only, as rendered)."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)(h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def write_config(tmp_path: Path, platform: str) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text(
        "models:\n  - {id: m, source: Qwen/Qwen2.5-7B-Instruct, accelerator: gpu}\n"
        + f"platform:\n{platform}"
    )
    return path


def render_to(tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "out"
    result = render(["kuberay", "-c", str(config_file), "-o", str(out)], monkeypatch)
    assert result.exit_code == 0, result.output
    return out


def rendered(out: Path, name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((out / name).read_text(encoding="utf-8")))


# --- schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "index", "path", "field"),
    [
        ("edge.yaml", 2, ["spec", "template", "spec", "containers", 0], "readinesProbe"),
        ("edge.yaml", 2, ["spec", "template", "spec", "initContainers", 0], "restartpolicy"),
        ("edge.yaml", 1, ["spec", "ports", 0], "targetport"),
        ("edge.yaml", 0, ["metadata"], "label"),
        ("gateway.yaml", 1, ["spec", "rules", 0], "timeout"),
        ("gateway.yaml", 1, ["spec", "rules", 0, "timeouts"], "requests"),
        ("gateway.yaml", 1, ["spec", "parentRefs", 0], "gateway"),
    ],
)
def test_the_schemas_reject_a_misspelt_field(name, index, path, field):
    manifest = copy.deepcopy(documents(name)[index])
    target = manifest
    for key in path:
        target = target[key]
    target[field] = {}
    assert any(repr(field) in error for error in errors(manifest))


def test_the_route_schema_rejects_a_timeout_that_is_no_gateway_duration():
    route = copy.deepcopy(documents("gateway.yaml")[1])
    route["spec"]["rules"][0]["timeouts"]["request"] = "10 min"
    assert any("timeouts/request" in error for error in errors(route))


def test_gateway_durations_say_long_timeouts_in_five_digits_a_unit():
    pattern = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")  # the CRD's
    for value in (10, 630, 99_999, 100_000, 3600 * 48, 359_999_999):
        text = routes.gateway_duration(value)
        assert pattern.match(text) and seconds(text) == value, text
    with pytest.raises(ValueError, match="longer than a Gateway API duration"):
        routes.gateway_duration(360_000_000)


# --- the edge pod -------------------------------------------------------------------------------


def test_the_config_map_holds_the_template_rendered_for_the_pod():
    config = platform_config()
    config_map = edge_yaml()[0]
    conf = config_map["data"][edge.NGINX_CONF_KEY]
    assert conf == render_nginx_conf(edge.kubernetes_nginx_values(config))
    # the one value left to the pod's start: Ray's token, from its Secret
    assert set(re.findall(r"\$\{[A-Z0-9_]+\}", conf)) == {edge.RAY_TOKEN_PLACEHOLDER}
    assert f'X-Ray-Authorization "Bearer {edge.RAY_TOKEN_PLACEHOLDER}"' in conf
    assert not re.search(r"^\s*user\s", conf, re.MULTILINE)  # the pod's user runs nginx


def test_nginx_proxies_to_the_rayservices_services_at_their_ports():
    config = platform_config()
    head = K.pod_templates(K.the_rayservice())["head"]
    serve_port = K.container_ports(head)["serve"]
    upstreams = edge_yaml()[0]["data"][edge.UPSTREAMS_KEY]
    assert upstreams == f"server {SERVE_SERVICE}:{serve_port};\n"
    assert serve_port == config.platform.ports.serve_http
    dashboard_port = K.container_ports(head)["dashboard"]
    assert (
        f"server {K.the_rayservice()['metadata']['name']}-head-svc:{dashboard_port};"
        in nginx_conf()
    )


def test_every_file_nginx_and_the_gatekeeper_read_is_mounted_from_its_source():
    spec = pod_spec()
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_map = edge_yaml()[0]
    conf = nginx_conf()
    files = [
        re.search(r"include (\S+);", conf).group(1),
        re.search(r"auth_basic_user_file (\S+);", conf).group(1),
        f"{edge.CONFIG_DIR}/{edge.NGINX_CONF_KEY}",
    ]
    gatekeeper_args = container("gatekeeper")["args"]
    gatekeeper_files = [
        gatekeeper_args[gatekeeper_args.index(o) + 1] for o in ("--config-json", "--key-file")
    ]
    for name, paths in (("nginx", files), ("gatekeeper", gatekeeper_files)):
        mounts = container(name)["volumeMounts"]
        for path in paths:
            (mount,) = [m for m in mounts if path.startswith(m["mountPath"] + "/")]
            key = path.removeprefix(mount["mountPath"] + "/")
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                assert volume["configMap"]["name"] == config_map["metadata"]["name"]
                assert key in config_map["data"], path
            else:
                assert "secret" in volume, path  # a Secret the operator creates (README)
            assert not mount.get("subPath"), "a subPath mount never sees an update"


def test_ray_token_reaches_nginx_from_the_secret_kuberay_reads():
    auth = K.the_rayservice()["spec"]["rayClusterConfig"]["authOptions"]
    nginx = container("nginx")
    (env,) = [e for e in nginx["env"] if e["name"] == edge.RAY_TOKEN_ENV]
    assert env["valueFrom"]["secretKeyRef"] == {"name": auth["secretName"], "key": "auth_token"}
    start = nginx["command"][-1]
    # envsubst with the one name: nginx's own $variables stay as they are
    assert (
        f"envsubst '{edge.RAY_TOKEN_PLACEHOLDER}' < {edge.CONFIG_DIR}/{edge.NGINX_CONF_KEY}"
        in start
    )
    assert "umask 077" in start.split("envsubst", 1)[0]  # the file with the token is private
    assert f"exec nginx -e /dev/stderr -c {edge.RUNTIME_CONF} -g 'daemon off;'" in start
    assert "$(" not in start  # Kubernetes would expand $(NAME) in a command


def test_the_gatekeeper_is_a_sidecar_with_the_replicas_keys_and_their_usage_reports():
    config = platform_config()
    spec = pod_spec()
    (gatekeeper,) = spec["initContainers"]
    assert gatekeeper["restartPolicy"] == "Always"  # a native sidecar: up before nginx
    assert "startupProbe" in gatekeeper
    args = gatekeeper["args"]
    port = int(args[args.index("--port") + 1])
    assert ports_of(gatekeeper)["gatekeeper"] == port == config.platform.ports.gatekeeper
    assert f"server 127.0.0.1:{port};" in nginx_conf()  # nginx asks it beside itself
    # the keys the replicas check: the same file of the same Secret
    (application,) = K.serve_config_v2()["applications"]
    assert [args[args.index("--key-file") + 1]] == application["args"]["api_keys"]["files"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounted = {secrets[m["name"]] for m in gatekeeper["volumeMounts"] if m["name"] in secrets}
    assert mounted == {API_KEYS_SECRET}
    # the replicas report usage through the edge's Service to its gatekeeper port
    service = edge_yaml()[1]
    (report_port,) = [p for p in service["spec"]["ports"] if p["targetPort"] == "gatekeeper"]
    assert application["args"]["usage_url"] == (
        f"http://{service['metadata']['name']}:{report_port['port']}/settle"
    )


def test_the_gatekeeper_runs_with_the_platform_config_and_the_pods_paths():
    config = platform_config()
    text = edge_yaml()[0]["data"][edge.GATEKEEPER_CONFIG_KEY]
    pod = Config.model_validate_json(text)  # what `--config-json` reads
    assert pod.platform.edge == config.platform.edge  # rate limit, burst, body size, timeout
    assert pod.platform.ports == config.platform.ports
    assert pod.models == config.models
    assert pod.platform.security.model_copy(update={"api_keys_file": None, "keys_file": None}) == (
        pod.platform.security
    )
    assert str(pod.platform.state_dir) == edge.POD_STATE_DIR
    mounts = {m["mountPath"]: m["name"] for m in container("gatekeeper")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert "emptyDir" in volumes[mounts[edge.POD_STATE_DIR]]
    assert str(Path.home()) not in text  # nothing of the host that rendered it


def test_a_host_path_in_the_config_does_not_reach_the_pod():
    config = Config(platform={"security": {"api_keys_file": "/home/me/keys.txt"}})
    pod = Config.model_validate_json(
        edge.edge_config_map(config)["data"][edge.GATEKEEPER_CONFIG_KEY]
    )
    assert pod.platform.security.api_keys_file is None


def test_the_service_selects_the_edge_pod_only_and_names_its_ports():
    _, service, deployment = edge_yaml()
    selector = service["spec"]["selector"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    for group, template in K.pod_templates(K.the_rayservice()).items():
        assert not selector.items() <= template["metadata"]["labels"].items(), group
    container_ports = {**ports_of(container("nginx")), **ports_of(container("gatekeeper"))}
    for port in service["spec"]["ports"]:
        assert container_ports[port["targetPort"]] == port["port"], port["name"]
    assert platform_config().platform.ports.nginx_http == ports_of(container("nginx"))["http"]


def test_the_edge_runs_the_nginx_image_compose_runs():
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "docker-compose.yml").read_text())
    assert container("nginx")["image"] == compose["services"]["nginx"]["image"] == edge.NGINX_IMAGE


def test_the_gatekeeper_runs_the_platform_image_the_ray_pods_run(monkeypatch, tmp_path):
    image = "registry.example/gpu-cluster/ray-serve:test"
    out = tmp_path / "out"
    result = render(
        ["kuberay", "-c", "deploy/kuberay/platform.yaml", "-o", str(out), "--image", image],
        monkeypatch,
    )
    assert result.exit_code == 0, result.output
    (gatekeeper,) = rendered(out, "edge.yaml")[2]["spec"]["template"]["spec"]["initContainers"]
    assert gatekeeper["image"] == image


def test_a_changed_config_rolls_the_edge_pod():
    def checksum(config: Config) -> str:
        deployment = edge.edge_deployment(config)
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(Config()) == checksum(Config())
    assert checksum(Config()) != checksum(Config(platform={"edge": {"max_body_mib": 8}}))


def test_nginx_drains_before_it_stops():
    config = platform_config()
    nginx = container("nginx")
    assert "exec nginx " in nginx["command"][-1]  # nginx is the container's PID 1
    assert "kill -QUIT 1;" in nginx["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert pod_spec()["terminationGracePeriodSeconds"] > config.platform.shutdown_grace_s


def test_the_secrets_the_edge_needs_are_documented():
    readme = (KUBERAY / "README.md").read_text(encoding="utf-8")
    spec = pod_spec()
    names = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    for c in [*spec["initContainers"], *spec["containers"]]:
        for env in c.get("env", []):
            if "secretKeyRef" in env.get("valueFrom", {}):
                names.add(env["valueFrom"]["secretKeyRef"]["name"])
    assert names == {API_KEYS_SECRET, edge.DASHBOARD_LOGINS_SECRET, edge.RAY_TOKEN_SECRET}
    for name in names:
        assert f"kubectl create secret generic {name}" in readme, name
    assert f"--from-file={edge.DASHBOARD_LOGINS_KEY}=" in readme


def test_the_gatekeeper_is_scraped_as_the_job_the_dashboards_know():
    _, monitor = documents("podmonitor.yaml")
    labels = edge_yaml()[2]["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports_of(container("gatekeeper"))
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = [job["job_name"] for job in prometheus["scrape_configs"]]
    assert edge.EDGE_JOB in jobs
    assert {"targetLabel": "job", "replacement": edge.EDGE_JOB} in endpoint["relabelings"]


def test_the_kubernetes_nginx_conf_passes_nginx_t(tmp_path):
    """The ConfigMap's config as the pod's start makes it (the token substituted), with the
    Services' names and the pod's mount points replaced by addresses and directories here."""
    (tmp_path / "edge").mkdir()
    (tmp_path / "run").mkdir()
    data = edge_yaml()[0]["data"]

    def local(text: str) -> str:
        text = text.replace("/tmp/", f"{tmp_path}/run/")
        for service in (SERVE_SERVICE, f"{K.the_rayservice()['metadata']['name']}-head-svc"):
            text = text.replace(service, "127.0.0.1")
        text = text.replace(edge.CONFIG_DIR, str(tmp_path / "edge"))
        return text.replace(edge.DASHBOARD_LOGINS_DIR, str(tmp_path / "logins"))

    (tmp_path / "edge" / edge.UPSTREAMS_KEY).write_text(local(data[edge.UPSTREAMS_KEY]))
    conf = tmp_path / "nginx.conf"
    conf.write_text(local(data[edge.NGINX_CONF_KEY].replace(edge.RAY_TOKEN_PLACEHOLDER, "t0ken")))
    result = subprocess.run(
        [NGINX_BINARY, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "/dev/stderr"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


# --- the way in ---------------------------------------------------------------------------------


def test_the_route_sends_the_edges_routes_to_the_edge_on_the_rendered_gateway():
    config = platform_config()
    gateway, route = documents("gateway.yaml")
    assert gateway["spec"]["gatewayClassName"] == config.platform.kubernetes.gateway.class_name
    assert route["spec"]["parentRefs"] == [{"name": gateway["metadata"]["name"]}]
    _, service, _ = edge_yaml()
    (rule,) = route["spec"]["rules"]
    http = [p["port"] for p in service["spec"]["ports"] if p["name"] == "http"]
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": http[0]}]
    # every route of the template's server: API, vLLM's tokenizer, health, the dashboard
    template = NGINX_TEMPLATE.read_text(encoding="utf-8")
    assert (
        "location = /health" in template and "location ~ ^/(v1/|tokenize$|detokenize$)" in template
    )
    assert "location /dashboard/" in template and "location = /dashboard " in template
    for path in (
        "/health",
        "/v1/models",
        "/v1/chat/completions",
        "/tokenize",
        "/detokenize",
        "/dashboard",
        "/dashboard/",
        "/dashboard/api/cluster_status",
    ):
        assert routed(route, path), path
    # nothing else: on a shared Gateway another application may own it
    for path in ("/", "/metrics", "/v1x", "/healthz", "/tokenizer", "/_gatekeeper"):
        assert not routed(route, path), path


def test_the_route_timeout_outlasts_every_timeout_of_the_edge():
    config = platform_config()
    (rule,) = documents("gateway.yaml")[1]["spec"]["rules"]
    route_s = seconds(rule["timeouts"]["request"])
    edge_timeouts = [
        int(s) for s in re.findall(r"proxy_(?:read|send)_timeout (\d+)s;", nginx_conf())
    ]
    assert max(edge_timeouts) == config.platform.edge.read_timeout_s
    assert route_s == max(edge_timeouts) + routes.ROUTE_TIMEOUT_MARGIN_S


def test_a_timeout_no_gateway_can_say_is_refused_naming_the_key(tmp_path, monkeypatch):
    config_file = write_config(tmp_path, "  edge: {read_timeout_s: 400000000}\n")
    out = tmp_path / "out"
    result = render(["kuberay", "-c", str(config_file), "-o", str(out)], monkeypatch)
    assert result.exit_code == 2
    assert "platform.edge.read_timeout_s" in result.output


def test_a_route_to_an_existing_gateway_renders_no_gateway(tmp_path, monkeypatch):
    config_file = write_config(
        tmp_path,
        "  edge: {read_timeout_s: 172800}\n"
        "  kubernetes:\n    gateway: {name: shared, namespace: infra, hostnames: [llm.example.com]}\n",
    )
    out = render_to(tmp_path, config_file, monkeypatch)
    assert not (out / "ingress.yaml").exists()
    (route,) = rendered(out, "gateway.yaml")
    assert errors(route) == []
    assert route["spec"]["parentRefs"] == [{"name": "shared", "namespace": "infra"}]
    assert route["spec"]["hostnames"] == ["llm.example.com"]
    assert route["spec"]["rules"][0]["timeouts"]["request"] == "48h30s"


def test_the_ingress_is_opt_in_and_goes_to_the_edge(tmp_path, monkeypatch):
    config_file = write_config(
        tmp_path,
        "  edge: {max_body_mib: 16}\n  kubernetes: {ingress: true, ingress_class: traefik}\n",
    )
    out = render_to(tmp_path, config_file, monkeypatch)
    assert not (out / "gateway.yaml").exists()
    (ingress,) = rendered(out, "ingress.yaml")
    assert errors(ingress) == []
    assert ingress["spec"]["ingressClassName"] == "traefik"
    (rule,) = ingress["spec"]["rules"]
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert set(paths) == {"/v1", "/tokenize", "/detokenize", "/health", "/dashboard"}
    (service,) = [o for o in rendered(out, "edge.yaml") if o["kind"] == "Service"]
    for path in paths.values():
        assert path["backend"]["service"] == {
            "name": service["metadata"]["name"],
            "port": {"number": service["spec"]["ports"][0]["port"]},
        }
    # the controller lets through what the edge allows; the edge does the limiting
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-body-size"] == "16m"
    assert annotations[prefix + "proxy-read-timeout"] == str(600 + routes.ROUTE_TIMEOUT_MARGIN_S)
    assert annotations[prefix + "proxy-buffering"] == "off"  # tokens stream as produced
    assert not any("limit" in name for name in annotations)


def test_the_committed_kustomization_applies_the_gateway_route_not_an_ingress():
    (kustomization,) = documents("kustomization.yaml")
    assert "gateway.yaml" in kustomization["resources"]
    assert "ingress.yaml" not in kustomization["resources"]
