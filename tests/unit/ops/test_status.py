"""`gpucluster status` (ops.status) and diagnose's evidence (ops.diagnose.gather) against a fake
platform on an httpx.MockTransport: one screen from Ray's APIs and Prometheus, and what is
reported when a source does not answer."""

from __future__ import annotations

import json

from gpucluster.config.names import llm_deployment_name
from gpucluster.ops.diagnose import diagnose, gather
from gpucluster.ops.status import DeploymentStatus, ModelStatus, NodeStatus, collect_status

GIB = 2**30


def metrics(fake) -> None:
    """Prometheus's series for one node, the model's deployment and its engine."""
    ip, model = {"ip": fake.HEAD_IP}, {"model_name": fake.MODEL}
    deployment = {"application": "llm", "deployment": llm_deployment_name(fake.MODEL)}
    fake.series.update(
        {
            "ray_node_cpu_utilization": [(ip, 12.5)],
            "ray_node_mem_used": [(ip, 3 * GIB)],
            "ray_node_mem_total": [(ip, 16 * GIB)],
            "ray_serve_num_deployment_replicas": [(deployment, 1.0)],
            "ray_serve_autoscaling_target_replicas": [(deployment, 2.0)],
            "ray_serve_deployment_replica_starts_total": [(deployment, 3.0)],
            "vllm:gpu_cache_usage_perc": [(model, 42.0)],
            "vllm:num_requests_running": [(model, 4.0)],
            "vllm:num_requests_waiting": [(model, 1.0)],
            "vllm:time_to_first_token_seconds": [(model, 0.25)],
            "vllm:generation_tokens_total": [(model, 80.0)],
            "ray_serve_num_router_requests_total": [({}, 2.5)],
            "serve_deployment_processing_latency_ms": [({}, 900.0)],
        }
    )


def test_one_screen_from_rays_apis_and_prometheus(fake_platform, platform_target):
    fake = fake_platform
    metrics(fake)
    result = collect_status(platform_target, fake.client())
    assert result.problems == []
    assert result.nodes == [NodeStatus(fake.HEAD_IP, "ALIVE", 8.0, 0.0, 12.5, 3.0, 16.0)]
    assert result.deployments == [
        DeploymentStatus("llm", llm_deployment_name(fake.MODEL), "HEALTHY", 1.0, 2.0, 3.0)
    ]
    assert result.models == [
        ModelStatus(
            fake.MODEL,
            kv_cache_percent=42.0,
            running=4.0,
            waiting=1.0,
            requests_per_s=2.5,
            p95_latency_ms=900.0,
            p95_ttft_s=0.25,
            tokens_per_s=80.0,
        )
    ]
    json.dumps(result.as_dict())  # what --json prints
    (nodes,) = fake.requests_to(fake.RAY, "/api/v0/nodes")
    (serve,) = fake.requests_to(fake.RAY, "/api/serve/applications/")
    assert {nodes.headers["Authorization"], serve.headers["Authorization"]} == {
        f"Bearer {fake.RAY_TOKEN}"
    }


def test_without_metrics_yet_the_figures_are_unknown_not_zero(fake_platform, platform_target):
    fake = fake_platform  # Prometheus answers, but has no series yet
    result = collect_status(platform_target, fake.client())
    assert result.problems == []
    assert result.nodes[0].cpu_percent is None and result.nodes[0].mem_total_gib is None
    assert result.deployments[0].status == "HEALTHY" and result.deployments[0].replicas is None
    (model,) = result.models
    assert (model.kv_cache_percent, model.requests_per_s, model.tokens_per_s) == (None, None, None)


def test_prometheus_down_is_a_problem_and_the_rest_still_shows(fake_platform, platform_target):
    fake = fake_platform
    fake.down(fake.PROMETHEUS)
    result = collect_status(platform_target, fake.client())
    (problem,) = result.problems
    assert problem.startswith("Prometheus unavailable (")
    assert problem.endswith("): gpucluster logs prometheus")
    assert [(n.address, n.cpus, n.cpu_percent) for n in result.nodes] == [(fake.HEAD_IP, 8.0, None)]
    assert result.deployments == [
        DeploymentStatus("llm", llm_deployment_name(fake.MODEL), "HEALTHY", None, None, None)
    ]
    assert result.models == []


def test_the_ray_dashboard_down_is_a_problem_naming_health(fake_platform, platform_target):
    fake = fake_platform
    metrics(fake)
    fake.down(fake.RAY)
    result = collect_status(platform_target, fake.client())
    assert result.problems == ["Ray dashboard API unreadable (ConnectError): gpucluster health"]
    assert result.nodes == []
    # Serve's statuses are unknown; Prometheus still knows the deployment and the model
    assert [(d.status, d.replicas) for d in result.deployments] == [("?", 1.0)]
    assert result.models[0].kv_cache_percent == 42.0


def test_a_refused_ray_token_is_reported_not_raised(fake_platform, platform_target):
    fake = fake_platform
    fake.routes[(fake.RAY, "GET", "/api/v0/nodes")] = fake.answer(
        401, text="Unauthorized: Missing authentication token"
    )
    result = collect_status(platform_target, fake.client())
    assert result.problems == ["Ray dashboard API unreadable (HTTPStatusError): gpucluster health"]


def test_diagnose_gathers_its_evidence_through_the_client(fake_platform, platform_target):
    fake = fake_platform
    metrics(fake)
    fake.series["vllm:num_requests_waiting"] = [({}, 3.0)]
    snap = gather(platform_target, fake.client())
    assert (snap.api_status, snap.metrics_port_up, snap.ray_head_up, snap.prometheus_up) == (
        200,
        True,
        True,
        True,
    )
    assert snap.ray_targets_down == [] and snap.kv_cache == 42.0 and snap.waiting == 3.0
    assert snap.replicas == {llm_deployment_name(fake.MODEL): (1.0, 1)}
    (models,) = fake.requests_to(fake.NGINX, "/v1/models")
    assert models.headers["Authorization"] == f"Bearer {fake.API_KEY}"
    # queueing at the replica bound: raise it
    assert "Requests are queueing" in [f.title for f in diagnose(snap)]


def test_diagnose_sees_the_ray_head_gone(fake_platform, platform_target):
    fake = fake_platform
    fake.down(fake.RAY)
    snap = gather(platform_target, fake.client())
    assert snap.ray_head_up is False
    assert "The Ray head is down" in [f.title for f in diagnose(snap)]
