"""The KubeRay manifests: what the commands render, valid for their schemas, and consistent.

Schemas are committed as data (schemas/kuberay/README.md names their sources). Nothing here
talks to Kubernetes or Ray: the Serve config is checked with Ray Serve's own schema.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from ray.serve.schema import ServeDeploySchema
from referencing import Registry, Resource
from typer.testing import CliRunner

from gpucluster.cli.main import app as cli
from gpucluster.config import Config, load_config
from gpucluster.config.keys import KeySources
from gpucluster.config.loader import ENV_OVERRIDES
from gpucluster.planning.platform_pods import head_size, worker_sizes
from gpucluster.planning.pod_sizes import PodSize
from gpucluster.serving.serve_config import serve_config

REPO = Path(__file__).resolve().parents[3]
KUBERAY = REPO / "deploy" / "kuberay"
PLATFORM = KUBERAY / "platform.yaml"
NOT_MANIFESTS = {"platform.yaml", "kustomization.yaml"}

SCHEMAS = Path(__file__).parent / "schemas" / "kuberay"
# The kind files refer to the shared definitions by this absolute path.
DEFINITIONS_URI = "/api/_definitions.json"

CRD_FILES = {
    ("ray.io/v1", "RayService"): "ray.io_rayservices.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateway.networking.k8s.io_gateways.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io_httproutes.yaml",
}
CORE_FILES = {
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaim-v1.json",
    ("networking.k8s.io/v1", "Ingress"): "ingress-networking-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("v1", "Service"): "service-v1.json",
}


def strict(schema: Any) -> Any:
    """`schema` with unknown fields rejected wherever the CRD lists an object's fields.

    Mirrors `kubectl apply --validate=strict`: objects that keep unknown fields on purpose
    (`x-kubernetes-preserve-unknown-fields`) or say what extra keys may hold are left alone.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def crd_validator(file_name: str, version: str) -> Draft202012Validator:
    """A validator of `version` of the CRD in `file_name` (its openAPIV3Schema, made strict)."""
    # libyaml's loader when there is one: the RayService CRD is 1 MB of YAML (4x faster)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((SCHEMAS / file_name).read_text(encoding="utf-8"), Loader=loader)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return Draft202012Validator(strict(copy.deepcopy(served["schema"]["openAPIV3Schema"])))


@cache
def core_validator(file_name: str) -> Any:
    """A validator of a core Kubernetes kind (strict JSON schema with shared definitions)."""
    definitions = json.loads((SCHEMAS / "kubernetes" / "_definitions.json").read_text())
    schema = json.loads((SCHEMAS / "kubernetes" / file_name).read_text())
    registry = Registry().with_resource(DEFINITIONS_URI, Resource.from_contents(definitions))
    return validator_for(schema)(schema, registry=registry)


def validator(manifest: dict[str, Any]) -> Any:
    """The validator of `manifest`'s apiVersion and kind; KeyError for a kind without a schema."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_FILES:
        return crd_validator(CRD_FILES[key], key[0].rsplit("/", 1)[1])
    return core_validator(CORE_FILES[key])


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every schema violation of `manifest`, each as `path: message`."""
    found = validator(manifest).iter_errors(manifest)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found)


# --- the manifests -----------------------------------------------------------------------------


def platform_config() -> Config:
    return load_config(PLATFORM, env={})


def documents(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((KUBERAY / name).read_text(encoding="utf-8")))


def manifest_files() -> list[str]:
    return sorted(p.name for p in KUBERAY.glob("*.yaml") if p.name not in NOT_MANIFESTS)


def the_rayservice() -> dict[str, Any]:
    (rayservice,) = documents("rayservice.yaml")
    return rayservice


def pod_templates(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Head and worker pod templates by group name (`head` for the head group)."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    templates.update({g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]})
    return templates


def ray_container(template: dict[str, Any]) -> dict[str, Any]:
    return template["spec"]["containers"][0]  # KubeRay's Ray container is the first


def container_ports(template: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in ray_container(template)["ports"]}


def render(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `gpucluster render ...` from the repository root, as the README says."""
    monkeypatch.chdir(REPO)
    for variable in ENV_OVERRIDES:
        monkeypatch.delenv(variable, raising=False)
    return CliRunner().invoke(cli, ["render", *args])


# --- rendered, not written by hand --------------------------------------------------------------


def test_committed_manifests_are_what_render_kuberay_writes(tmp_path, monkeypatch):
    result = render(
        ["kuberay", "-c", "deploy/kuberay/platform.yaml", "-o", str(tmp_path)], monkeypatch
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [name for name in manifest_files() if name != "model-cache-pvc.yaml"]
    for name in written:
        assert (tmp_path / name).read_text() == (KUBERAY / name).read_text(), (
            f"deploy/kuberay/{name} is stale: run "
            "`gpucluster render kuberay -c deploy/kuberay/platform.yaml -o deploy/kuberay`"
        )


def test_render_rayservice_prints_the_committed_rayservice(monkeypatch):
    result = render(["rayservice", "-c", "deploy/kuberay/platform.yaml"], monkeypatch)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output) == the_rayservice()


def test_image_option_sets_every_ray_container(monkeypatch):
    image = "registry.example/gpu-cluster/ray-serve:test"
    result = render(
        ["rayservice", "-c", "deploy/kuberay/platform.yaml", "--image", image, "--json"],
        monkeypatch,
    )
    assert result.exit_code == 0, result.output
    templates = pod_templates(json.loads(result.output))
    assert {ray_container(t)["image"] for t in templates.values()} == {image}


def test_a_cpu_model_is_refused_naming_it(tmp_path, monkeypatch):
    config_file = tmp_path / "platform.yaml"
    config_file.write_text("models:\n  - id: small\n    source: builtin:smollm2-135m-instruct\n")
    result = render(["rayservice", "-c", str(config_file)], monkeypatch)
    assert result.exit_code == 2
    assert "small" in result.output and "accelerator" in result.output


def test_kustomization_lists_every_manifest():
    (kustomization,) = documents("kustomization.yaml")
    assert sorted(kustomization["resources"]) == manifest_files()


# --- schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", manifest_files())
def test_every_manifest_validates_against_its_schema(name):
    for manifest in documents(name):
        assert errors(manifest) == [], f"{name}: {manifest['kind']} {manifest['metadata']['name']}"


@pytest.mark.parametrize(
    ("name", "path", "field"),
    [
        ("rayservice.yaml", ["spec", "rayClusterConfig", "headGroupSpec"], "rayStartParam"),
        ("podmonitor.yaml", ["spec", "podMetricsEndpoints", 0], "prot"),
        ("gateway.yaml", ["spec", "listeners", 0], "hostName"),
        ("grafana-dashboards.yaml", ["metadata"], "label"),
    ],
)
def test_the_schemas_reject_a_misspelt_field(name, path, field):
    manifest = copy.deepcopy(documents(name)[0])
    target = manifest
    for key in path:
        target = target[key]
    target[field] = {}
    assert any(repr(field) in error for error in errors(manifest))


# --- the Serve config ---------------------------------------------------------------------------


def serve_config_v2() -> dict[str, Any]:
    return yaml.safe_load(the_rayservice()["spec"]["serveConfigV2"])


def test_serve_config_v2_is_the_rendered_serve_config_for_the_pods():
    config = platform_config()
    rendered = serve_config_v2()
    (application,) = rendered["applications"]
    keys = KeySources.from_dict(application["args"]["api_keys"])
    # Hugging Face ids are downloaded by each GPU worker: the id itself is what vLLM loads.
    weights = {model.id: model.source for model in config.models}
    # usage reports go to the gatekeeper beside the edge's nginx (test_kuberay_edge.py)
    gatekeeper = f"gpu-cluster-edge:{config.platform.ports.gatekeeper}"
    assert rendered == serve_config(
        config, weights, keys, http_host="0.0.0.0", gatekeeper_address=gatekeeper
    )


def test_pods_download_a_hub_model_at_its_configured_revision():
    # No pull step on Kubernetes yet: the pinned revision goes to vLLM, which downloads it.
    from gpucluster.render.kuberay import serve_config_v2 as render

    commit = "0123456789abcdef0123456789abcdef01234567"
    config = Config(
        models=[
            {
                "id": "q",
                "source": "Qwen/Qwen2.5-7B-Instruct",
                "accelerator": "gpu",
                "revision": commit,
            },
            {
                "id": "s",
                "source": "org/s",
                "accelerator": "gpu",
                "revision": "v1",
                "engine_kwargs": {"revision": "v2"},
            },
        ]
    )
    args = render(config)["applications"][0]["args"]
    assert args["weights"] == {"q": "Qwen/Qwen2.5-7B-Instruct", "s": "org/s"}
    engine = {m["id"]: m["engine_kwargs"] for m in args["models"]}
    assert engine == {"q": {"revision": commit}, "s": {"revision": "v2"}}  # engine_kwargs win


def test_serve_config_v2_is_a_valid_ray_serve_config():
    config = platform_config()
    schema = ServeDeploySchema.model_validate(serve_config_v2())
    assert schema.http_options.host == "0.0.0.0"  # reachable through the pod's serve port
    assert schema.http_options.port == config.platform.ports.serve_http
    (application,) = schema.applications
    assert [m["id"] for m in application.args["models"]] == [m.id for m in config.models]


def test_api_key_files_are_the_mounted_secret_on_every_pod():
    (application,) = serve_config_v2()["applications"]
    key_files = application["args"]["api_keys"]["files"]
    assert key_files, "the API must require keys on Kubernetes"
    for group, template in pod_templates(the_rayservice()).items():
        secrets = {v["name"] for v in template["spec"]["volumes"] if "secret" in v}
        mounts = [m for m in ray_container(template)["volumeMounts"] if m["name"] in secrets]
        for key_file in key_files:
            directories = [m for m in mounts if key_file.startswith(m["mountPath"] + "/")]
            assert directories, f"{group}: {key_file} is not in a mounted Secret"
            assert not any("subPath" in m for m in mounts), "a subPath mount never sees rotation"


# --- GPUs, scaling and ports -------------------------------------------------------------------


def test_gpu_workers_request_the_models_tensor_parallel_size():
    config = platform_config()
    groups = the_rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert len(groups) == len({m.tensor_parallel_size for m in config.models})
    for group in groups:
        resources = ray_container(group["template"])["resources"]
        gpus = int(resources["limits"]["nvidia.com/gpu"])
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        models = [m for m in config.models if m.tensor_parallel_size == gpus]
        assert models, f"{group['groupName']}: {gpus} GPUs match no model's tensor_parallel_size"
        assert group["minReplicas"] == sum(m.replicas.min for m in models)
        assert group["maxReplicas"] == sum(m.replicas.max for m in models)
    head = ray_container(pod_templates(the_rayservice())["head"])["resources"]
    assert "nvidia.com/gpu" not in head["limits"]


def test_models_of_two_sizes_get_two_worker_groups(tmp_path, monkeypatch):
    config_file = tmp_path / "platform.yaml"
    config_file.write_text(
        "models:\n"
        "  - {id: a, source: Qwen/Qwen2.5-32B-Instruct, accelerator: gpu,"
        " tensor_parallel_size: 2, replicas: {min: 1, max: 3}}\n"
        "  - {id: b, source: Qwen/Qwen2.5-7B-Instruct, accelerator: gpu,"
        " replicas: {min: 0, max: 2}}\n"
        "  - {id: c, source: mistralai/Mistral-7B-Instruct-v0.3, accelerator: gpu,"
        " replicas: {min: 1, max: 1}}\n"
    )
    result = render(["rayservice", "-c", str(config_file), "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    rayservice = json.loads(result.output)
    assert errors(rayservice) == []
    groups = {
        int(ray_container(g["template"])["resources"]["limits"]["nvidia.com/gpu"]): (
            g["minReplicas"],
            g["replicas"],
            g["maxReplicas"],
        )
        for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    }
    assert groups == {1: (1, 1, 3), 2: (1, 1, 3)}


# --- pod sizes ----------------------------------------------------------------------------------


def pod_resources(template: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The Ray container's CPU and memory requests (checked equal to its limits) and the size of
    the pod's /dev/shm."""
    resources = ray_container(template)["resources"]
    requests = {k: v for k, v in resources["requests"].items() if k != "nvidia.com/gpu"}
    limits = {k: v for k, v in resources["limits"].items() if k != "nvidia.com/gpu"}
    assert requests == limits  # the pod's Ray node advertises what it is guaranteed
    (shm,) = [
        v["emptyDir"]["sizeLimit"] for v in template["spec"]["volumes"] if v["name"] == "dshm"
    ]
    return requests, shm


def expected(size: PodSize) -> tuple[dict[str, str], str]:
    return {"cpu": str(size.cpu), "memory": f"{size.memory_gib}Gi"}, f"{size.shm_gib}Gi"


def test_pods_request_the_sizes_derived_from_the_model():
    config = platform_config()
    templates = pod_templates(the_rayservice())
    assert pod_resources(templates["head"]) == expected(head_size(config))
    workers = worker_sizes(config)  # as `render kuberay` resolves the model (HF cache, table)
    assert len(workers) == len(templates) - 1
    for tp, size in workers.items():
        assert pod_resources(templates[f"gpu-tp{tp}"]) == expected(size), size.group
        assert size.overridden == ()


def test_platform_kubernetes_sets_pod_sizes(tmp_path, monkeypatch):
    config_file = tmp_path / "platform.yaml"
    config_file.write_text(
        "models:\n"
        "  - {id: a, source: org/unknown-a, accelerator: gpu, tensor_parallel_size: 2}\n"
        "  - {id: b, source: Qwen/Qwen2.5-7B-Instruct, accelerator: gpu}\n"
        "platform:\n"
        "  kubernetes:\n"
        "    head_resources: {cpu: 6}\n"
        "    worker_resources: {2: {memory_gib: 100}, 1: {cpu: 12, memory_gib: 40}}\n"
    )
    result = render(["rayservice", "-c", str(config_file), "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    rayservice = json.loads(result.output)
    assert errors(rayservice) == []
    templates = pod_templates(rayservice)
    config = load_config(config_file, env={})
    head = head_size(config)
    assert pod_resources(templates["head"]) == (
        {"cpu": "6", "memory": f"{head.derived_memory_gib}Gi"},
        "1Gi",
    )
    tp2_cpu = str(worker_sizes(config)[2].derived_cpu)  # the unknown model needs no shape
    assert pod_resources(templates["gpu-tp2"]) == ({"cpu": tp2_cpu, "memory": "100Gi"}, "3Gi")
    assert pod_resources(templates["gpu-tp1"]) == ({"cpu": "12", "memory": "40Gi"}, "1Gi")


def test_a_model_that_cannot_be_sized_is_refused_naming_it(tmp_path, monkeypatch):
    config_file = tmp_path / "platform.yaml"
    config_file.write_text("models:\n  - {id: odd, source: org/unknown, accelerator: gpu}\n")
    result = render(["rayservice", "-c", str(config_file)], monkeypatch)
    assert result.exit_code == 2
    assert "odd" in result.output and "worker_resources" in result.output


# --- the README's derivation ---------------------------------------------------------------------


def derivation(size: PodSize) -> str:
    """The README's tables of one pod: memory terms, then CPU terms, with the totals."""

    def table(kind: str, unit: str, terms, amount: str, total: int) -> list[str]:
        rows = [f"| {kind} term | {unit} | how | from |", "| --- | ---: | --- | --- |"]
        rows += [f"| {t.name} | {amount.format(t.amount)} | {t.how} | {t.source} |" for t in terms]
        rows.append(f"| **total** | **{total}** | the sum, rounded up | |")
        return rows

    assert size.overridden == ()  # the README derives; platform.yaml overrides nothing
    lines = table("memory", "GiB", size.memory_terms, "{:.2f}", size.memory_gib)
    lines.append("")
    lines += table("CPU", "cores", size.cpu_terms, "{:g}", size.cpu)
    return "\n".join(lines) + "\n"


def test_the_readme_derives_the_committed_pod_sizes():
    readme = (KUBERAY / "README.md").read_text(encoding="utf-8")
    config = platform_config()
    pods = [head_size(config), *worker_sizes(config).values()]
    for size in pods:
        begin = f"<!-- pod sizes: {size.group} -->\n"
        end = f"<!-- end of pod sizes: {size.group} -->"
        assert begin in readme and end in readme, f"README.md has no derivation of {size.group}"
        shown = readme.split(begin, 1)[1].split(end, 1)[0]
        assert shown == derivation(size), (
            f"deploy/kuberay/README.md's {size.group} derivation is stale; it should read:\n"
            + derivation(size)
        )


def test_ports_and_ray_start_params_match_the_config_defaults():
    ports = platform_config().platform.ports
    cluster = the_rayservice()["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    head_ports = container_ports(head["template"])
    assert head_ports["gcs-server"] == ports.ray_gcs == 6379
    assert head_ports["serve"] == ports.serve_http == 8000
    assert head_ports["dashboard"] == 8265  # KubeRay's; port-forwarded to the guide's 18265
    for group in [head, *cluster["workerGroupSpecs"]]:
        assert group["rayStartParams"]["metrics-export-port"] == str(ports.ray_metrics)
        assert container_ports(group["template"])["metrics"] == ports.ray_metrics == 8080


def test_workers_are_ready_without_a_serve_proxy():
    # Serve's proxy runs on the head only; KubeRay would make a worker's readiness depend on one
    # unless the worker has its own probe.
    config = platform_config()
    assert serve_config_v2()["proxy_location"] == "HeadOnly"
    for group in the_rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        probe = ray_container(group["template"])["readinessProbe"]
        assert probe["httpGet"]["port"] != config.platform.ports.serve_http, group["groupName"]


def test_ray_token_auth_is_on():
    auth = the_rayservice()["spec"]["rayClusterConfig"]["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"]


def test_every_pod_mounts_the_model_cache_claim_and_caches_hugging_face_there():
    (claim,) = documents("model-cache-pvc.yaml")
    for group, template in pod_templates(the_rayservice()).items():
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in template["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        container = ray_container(template)
        (cache_mount,) = [m for m in container["volumeMounts"] if m["name"] in claims]
        assert claims[cache_mount["name"]] == claim["metadata"]["name"], group
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HF_HOME"].startswith(cache_mount["mountPath"] + "/"), group


def test_secrets_the_pods_need_are_documented():
    readme = (KUBERAY / "README.md").read_text(encoding="utf-8")
    rayservice = the_rayservice()
    names = {rayservice["spec"]["rayClusterConfig"]["authOptions"]["secretName"]}
    for template in pod_templates(rayservice).values():
        names |= {v["secret"]["secretName"] for v in template["spec"]["volumes"] if "secret" in v}
        for env in ray_container(template)["env"]:
            if "secretKeyRef" in env.get("valueFrom", {}):
                names.add(env["valueFrom"]["secretKeyRef"]["name"])
    assert len(names) == 3
    for name in names:
        assert f"kubectl create secret generic {name}" in readme, name


# --- Prometheus and Grafana -----------------------------------------------------------------------


def test_pod_monitor_scrapes_the_metrics_port_of_every_ray_pod():
    monitor, _edge = documents("podmonitor.yaml")  # the edge's: test_kuberay_edge.py
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for group, template in pod_templates(the_rayservice()).items():
        assert selector.items() <= template["metadata"]["labels"].items(), group
        assert endpoint["port"] in container_ports(template), group


def test_prometheus_rule_carries_every_rule_group_of_deploy_prometheus():
    (rule,) = documents("prometheusrule.yaml")
    expected = []
    for path in sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml")):
        expected.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    assert rule["spec"]["groups"] == expected
    # one Prometheus selects them all
    for monitor in documents("podmonitor.yaml"):
        assert rule["metadata"]["labels"] == monitor["metadata"]["labels"]


def test_dashboard_config_maps_hold_the_provisioned_dashboards():
    maps = documents("grafana-dashboards.yaml")
    found = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = config_map["data"].items()
        found[name] = json.loads(text)
    directory = REPO / "deploy" / "grafana" / "dashboards"
    assert found == {p.name: json.loads(p.read_text()) for p in directory.glob("*.json")}


# --- GCS fault tolerance (platform.kubernetes.gcs_fault_tolerance) ------------------------------

# What KubeRay 1.6 derives from gcsFaultToleranceOptions and refuses beside them
# (ray-operator/controllers/ray/utils/validation.go, ValidateRayClusterSpec).
KUBERAY_FT_ENV = {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"}
KUBERAY_FT_START_PARAMS = {"redis-password", "redis-username"}
KUBERAY_FT_ANNOTATIONS = {"ray.io/ft-enabled", "ray.io/external-storage-namespace"}

FT_CONFIG = (
    "models:\n"
    "  - {id: a, source: Qwen/Qwen2.5-7B-Instruct, accelerator: gpu, replicas: {min: 1, max: 2}}\n"
    "platform:\n"
    "  kubernetes:\n"
    "    gcs_fault_tolerance:\n"
    "      redis_address: redis.db.svc:6379\n"
    "      redis_password_secret: {name: gpu-cluster-redis, key: password}\n"
)


def render_rayservice(config_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    config_file = tmp_path / "platform.yaml"
    config_file.write_text(config_text)
    result = render(["rayservice", "-c", str(config_file), "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def annotations(manifest: dict[str, Any]) -> set[str]:
    found = set(manifest["metadata"].get("annotations", {}))
    for template in pod_templates(manifest).values():
        found |= set(template["metadata"].get("annotations", {}))
    return found


def test_gcs_fault_tolerance_is_off_in_the_committed_rayservice():
    cluster = the_rayservice()["spec"]["rayClusterConfig"]
    assert "gcsFaultToleranceOptions" not in cluster
    assert not annotations(the_rayservice()) & KUBERAY_FT_ANNOTATIONS


def test_gcs_fault_tolerance_renders_kuberays_options_valid_for_the_crd(tmp_path, monkeypatch):
    rayservice = render_rayservice(FT_CONFIG, tmp_path, monkeypatch)
    assert errors(rayservice) == []
    assert rayservice["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis.db.svc:6379",
        "redisPassword": {
            "valueFrom": {"secretKeyRef": {"name": "gpu-cluster-redis", "key": "password"}}
        },
    }
    # the strict CRD schema covers the options: a misspelt field fails
    misspelt = copy.deepcopy(rayservice)
    misspelt["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]["redisAdress"] = "x:1"
    assert any("'redisAdress'" in error for error in errors(misspelt))


def test_gcs_fault_tolerance_changes_nothing_else_and_leaves_kuberay_its_part(
    tmp_path, monkeypatch
):
    on = render_rayservice(FT_CONFIG, tmp_path, monkeypatch)
    off = render_rayservice(FT_CONFIG.split("platform:")[0], tmp_path, monkeypatch)
    options = on["spec"]["rayClusterConfig"].pop("gcsFaultToleranceOptions")
    assert on == off
    # KubeRay 1.6 sets these itself from the options and refuses a RayCluster that sets them too
    head = on["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert not {e["name"] for e in ray_container(head["template"])["env"]} & KUBERAY_FT_ENV
    assert not set(head["rayStartParams"]) & KUBERAY_FT_START_PARAMS
    assert not annotations(on) & KUBERAY_FT_ANNOTATIONS
    assert options["redisAddress"]


def test_gcs_fault_tolerance_without_password_or_with_a_namespace(tmp_path, monkeypatch):
    text = FT_CONFIG.replace(
        "      redis_password_secret: {name: gpu-cluster-redis, key: password}\n",
        "      external_storage_namespace: gpu-cluster\n",
    )
    rayservice = render_rayservice(text, tmp_path, monkeypatch)
    assert errors(rayservice) == []
    assert rayservice["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis.db.svc:6379",
        "externalStorageNamespace": "gpu-cluster",
    }


def test_the_readme_says_how_to_turn_gcs_fault_tolerance_on():
    readme = (KUBERAY / "README.md").read_text(encoding="utf-8")
    assert "gcs_fault_tolerance:" in readme and "redis_address:" in readme
    assert "kubectl create secret generic gpu-cluster-redis" in readme
