"""The compose deployment, live: the operator guide's container commands, verbatim, in deploy/compose.

Tests run in file order: first what a healthy stack shows, then what operators do to it
(kill nginx, a model that cannot load, `docker compose restart ray-serve`), then `make compose-down`.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from guide_commands import OperatorShell, all_items
from probes import as_checkable, eventually, query, serve_traffic_until_scraped

from gpucluster.config.names import APP_NAME, llm_deployment_name
from gpucluster.observability.catalogue import GUIDE_QUERIES

CONTAINERS = {
    "ray-serve": "ray-serve",
    "nginx": "gpu-cluster-nginx-proxy",
    "prometheus": "gpu-cluster-prometheus",
    "alertmanager": "gpu-cluster-alertmanager",
}
SD_FILE = "/tmp/ray/prom_metrics_service_discovery.json"


def compose_ps(stack) -> dict[str, dict]:
    """`docker compose ps --format json`, by service."""
    out = stack.run("docker", "compose", "ps", "--all", "--format", "json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["Service"]: row for row in rows}


def health(stack, container: str) -> dict:
    out = stack.run("docker", "inspect", "--format", "{{json .State.Health}}", container).stdout
    return json.loads(out)


def answers(stack, client) -> bool:
    try:
        reply = client.chat.completions.create(
            model=stack.model,
            max_tokens=1,
            temperature=0,
            messages=[{"role": "user", "content": "Hi"}],
        )
    except Exception:  # noqa: BLE001 - not answering yet, whatever the reason
        return False
    return bool(reply.choices)


def nginx_answers(stack) -> bool:
    try:
        return httpx.get(f"{stack.base}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def test_every_container_is_healthy_by_the_check_inside_its_image(stack):
    def all_healthy():
        rows = compose_ps(stack)
        return set(rows) == set(CONTAINERS) and all(r["Health"] == "healthy" for r in rows.values())

    assert eventually(all_healthy, timeout_s=120), compose_ps(stack)
    for container in CONTAINERS.values():
        checks = health(stack, container)["Log"]
        # the check ran inside the container (curl/wget of the image) and passed
        assert checks and checks[-1]["ExitCode"] == 0, (container, checks[-1:])


def test_the_openai_client_gets_an_answer_through_nginx(stack, openai_client):
    reply = openai_client.chat.completions.create(
        model=stack.model,
        temperature=0,
        max_tokens=16,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in reply.choices[0].message.content
    assert [m.id for m in openai_client.models.list().data] == [stack.model]
    refused = httpx.get(f"{stack.base}/v1/models", timeout=30)  # no key
    assert refused.status_code == 401 and "error" in refused.json()


def test_nginx_proxies_straight_to_the_model_replica(stack, openai_client):
    """The direct path: nginx's upstream is the replica's own port in ray-serve, which the
    nginx container reloaded (docs/operator-guide.md, "Serving path")."""
    from gpucluster.config.schema import DIRECT_INGRESS_PORTS

    upstreams = stack.run(
        "docker",
        "exec",
        "gpu-cluster-nginx-proxy",
        "cat",
        "/var/lib/gpucluster/nginx/upstreams.conf",
    ).stdout.split()
    ports = [int(word.rsplit(":", 1)[1].rstrip(";")) for word in upstreams if ":" in word]
    low, high = DIRECT_INGRESS_PORTS
    assert ports and all(low <= port <= high for port in ports), upstreams
    logs = stack.run("docker", "compose", "logs", "ray-serve").stdout
    assert f"nginx upstream: {ports[0]}" in logs
    stream = openai_client.chat.completions.create(
        model=stack.model,
        max_tokens=4,
        stream=True,
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert any(chunk.choices and chunk.choices[0].delta.content for chunk in stream)


def test_docker_compose_ps_shows_the_guides_containers(stack):
    out = stack.run("docker", "compose", "ps").stdout
    for container in CONTAINERS.values():
        assert container in out
    assert "gpu-cluster-grafana" not in out  # no Grafana binary here: the `grafana` profile


def test_docker_compose_config_shows_the_cpu_flavour(stack):
    config = stack.run("docker", "compose", "config", "--format", "json").stdout
    services = json.loads(config)["services"]
    assert {s["container_name"] for s in services.values()} == set(CONTAINERS.values())
    assert services["ray-serve"]["image"].endswith("-cpu")
    assert "deploy" not in services["ray-serve"]  # no GPU reservation


GUIDE_COMMANDS = [
    item for item in all_items() if item.runner == "compose" and item.kind == "command"
]


@pytest.mark.parametrize("item", GUIDE_COMMANDS, ids=[item.id for item in GUIDE_COMMANDS])
def test_the_guides_compose_commands_run_as_written(stack, item, tmp_path):
    """The documents' `docker` lines (tagged `compose`), run in deploy/compose as an operator
    would; a file one writes there (`> ray-serve-DATE.log`) is removed afterwards."""
    before = set(stack.directory.iterdir())
    shell = OperatorShell(tmp_path, stack.env, stack.api_key)
    try:
        run = shell.run(item, all_items(), directory="deploy/compose")
    finally:
        for created in set(stack.directory.iterdir()) - before:
            created.unlink()
    assert not run.problems, f"{item}\n{run.problems}\n{run}"


def test_docker_compose_logs_ray_serve_show_the_start_and_the_model(stack):
    logs = stack.run("docker", "compose", "logs", "ray-serve").stdout
    assert "starting the Ray head: ray start" in logs
    assert f"Loading model {stack.model}" in logs
    assert f"Application '{APP_NAME}' running" in logs


def test_docker_exec_ray_status_shows_the_node(stack):
    out = stack.run("docker", "exec", "ray-serve", "ray", "status").stdout
    assert "Active:" in out and "node_" in out
    assert "8.0 CPU" in out  # RAY_NUM_CPUS of the CPU flavour


def test_docker_exec_curl_metrics_shows_ray_serve_and_vllm_metrics(stack):
    wanted = ("ray_serve_", "ray_vllm_", llm_deployment_name(stack.model))

    def missing() -> list[str]:
        out = stack.run(
            "docker", "exec", "ray-serve", "curl", "-s", "http://localhost:8080/metrics"
        ).stdout
        return [name for name in wanted if name not in out]

    # Workers push their metrics to the node's agent on an interval: a replica that has just
    # become ready may not be on the agent's page yet.
    assert eventually(lambda: not missing(), timeout_s=60, interval_s=3), missing()


def test_only_nginx_is_published_beyond_loopback(stack):
    """The replicas' gRPC ports (on all of the container's interfaces) are not published."""
    published = {}
    for container in CONTAINERS.values():
        out = stack.run(
            "docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}", container
        )
        for container_port, bindings in (json.loads(out.stdout) or {}).items():
            for binding in bindings or []:
                published[(container, binding["HostIp"], binding["HostPort"])] = container_port
    beyond = {key for key in published if key[1] not in ("127.0.0.1", "::1")}
    nginx = str(stack.ports["NGINX_HTTP_PORT"])
    assert {(c, port) for c, _, port in beyond} == {(CONTAINERS["nginx"], nginx)}, published
    assert [key for key in published if key[0] == "ray-serve"] == [
        ("ray-serve", "127.0.0.1", str(stack.ports["RAY_DASHBOARD_PORT"]))
    ]


def test_dashboard_through_nginx_is_read_only(stack):
    out = stack.run("docker", "exec", "ray-serve", "gpucluster", "dashboard-password", "--json")
    login = json.loads(out.stdout)
    auth = (login["user"], login["password"])
    jobs = f"{stack.base}/dashboard/api/jobs/"
    assert httpx.get(jobs, auth=auth, timeout=30).status_code == 200
    refused = httpx.post(jobs, json={"entrypoint": "true"}, auth=auth, timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "dashboard_read_only"
    assert httpx.post(jobs, json={"entrypoint": "true"}, timeout=30).status_code == 401


def test_prometheus_reads_rays_service_discovery_file(stack):
    out = stack.run("docker", "exec", "gpu-cluster-prometheus", "cat", SD_FILE).stdout
    groups = json.loads(out)
    assert groups and groups[0]["labels"]["job"] == "ray"
    targets = httpx.get(f"{stack.prometheus}/api/v1/targets", timeout=30).json()["data"]
    ray = [t for t in targets["activeTargets"] if t["labels"]["job"] == "ray"]
    assert ray and all(t["health"] == "up" for t in ray), ray


@pytest.fixture(scope="module")
def with_traffic(stack, openai_client):
    """A little traffic (streams and plain), then wait until Prometheus scraped it."""
    serve_traffic_until_scraped(stack, openai_client, stack.model)
    return stack


@pytest.mark.parametrize("expr", GUIDE_QUERIES)
def test_every_guide_query_answers_from_the_containerised_prometheus(with_traffic, expr):
    assert eventually(lambda: query(with_traffic, as_checkable(expr))), expr


def test_the_guides_health_checks_pass(stack):
    assert httpx.get(f"{stack.base}/health", timeout=30).status_code == 200
    models = httpx.get(
        f"{stack.base}/v1/models", timeout=30, headers={"Authorization": f"Bearer {stack.api_key}"}
    )
    assert models.status_code == 200
    assert httpx.get(f"{stack.prometheus}/-/healthy", timeout=30).status_code == 200
    # the guide's health script: `docker exec ray-serve ray status > /dev/null 2>&1`
    assert stack.shell("docker exec ray-serve ray status > /dev/null 2>&1").returncode == 0
    # no GPU here: the guide's GPU check reports FAILED, as it should on a CPU host
    assert stack.shell("docker exec ray-serve nvidia-smi > /dev/null 2>&1").returncode != 0


def test_a_crashed_nginx_is_brought_back_by_the_restart_policy(stack):
    container = CONTAINERS["nginx"]
    before = stack.run(
        "docker", "inspect", "--format", "{{.RestartCount}} {{.State.Pid}}", container
    )
    restarts, pid = before.stdout.split()
    # the main process dies (a crash), as opposed to `docker kill`, which Docker treats as a
    # manual stop and never restarts (docs/operator-guide.md, "Service Won't Start")
    stack.run("kill", "-KILL", pid)

    def restarted():
        state = stack.run(
            "docker", "inspect", "--format", "{{.RestartCount}} {{.State.Running}}", container
        ).stdout.split()
        return int(state[0]) > int(restarts) and state[1] == "true"

    assert eventually(restarted, timeout_s=60, interval_s=2)
    ok = eventually(lambda: nginx_answers(stack), timeout_s=30, interval_s=2)
    assert ok


def test_docker_kill_stops_nginx_until_compose_up_starts_it_again(stack):
    container = CONTAINERS["nginx"]
    stack.run("docker", "kill", container)

    def running() -> str:
        return stack.run(
            "docker", "inspect", "--format", "{{.State.Running}}", container
        ).stdout.strip()

    # Docker: a killed container stays stopped (no restart policy brings it back)
    assert eventually(lambda: running() == "false", timeout_s=30, interval_s=1)
    time.sleep(5)
    assert running() == "false"
    stack.run("docker", "compose", "up", "-d", "nginx")
    ok = eventually(lambda: nginx_answers(stack), timeout_s=60, interval_s=2)
    assert ok


@pytest.mark.timeout(2400)  # its own waits: up 300, error line 600, up 300, answering 900
def test_a_model_that_cannot_load_shows_the_guides_error_line(stack, openai_client, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    broken.chmod(0o755)
    (broken / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}'
    )
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    for item in broken.iterdir():
        item.chmod(0o644)
    override = tmp_path / "broken.yml"
    override.write_text(
        "services:\n  ray-serve:\n    environment:\n      MODEL_SOURCE: /broken-model\n"
        f"    volumes:\n      - {broken}:/broken-model:ro\n"
    )
    files = ["-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml", "-f", str(override)]
    try:
        stack.run("docker", "compose", *files, "up", "-d", "ray-serve", timeout=300)
        # the operator guide's command, verbatim
        found = eventually(
            lambda: (
                "ERROR: Model loading failed"
                in stack.shell("docker logs ray-serve | grep -i error").stdout
            ),
            timeout_s=600,
            interval_s=10,
        )
        assert found, stack.shell("docker logs --tail 80 ray-serve 2>&1").stdout
    finally:
        # back to the stack's own files (.env's COMPOSE_FILE)
        stack.run("docker", "compose", "up", "-d", "ray-serve", timeout=300)
    assert eventually(lambda: answers(stack, openai_client), timeout_s=900, interval_s=10)


@pytest.mark.timeout(1500)  # its own waits: restart 300, answering 900, scraped 120
def test_docker_compose_restart_ray_serve_recovers_to_answering(stack, openai_client):
    stack.run("docker", "compose", "restart", "ray-serve", timeout=300)
    assert eventually(lambda: answers(stack, openai_client), timeout_s=900, interval_s=10)
    # nginx and Prometheus found the restarted Ray again
    assert eventually(lambda: query(stack, 'up{job="ray"} == 1'), timeout_s=120)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_nginx_stops_by_draining_not_by_being_killed(stack):
    # docker stop sends the image's STOPSIGNAL (SIGQUIT); the container's shell passes it on
    # as nginx's graceful stop instead of ignoring it until Docker's SIGKILL (exit 137)
    stack.run("docker", "stop", CONTAINERS["nginx"], timeout=120)
    code = stack.run("docker", "inspect", "--format", "{{.State.ExitCode}}", CONTAINERS["nginx"])
    assert code.stdout.strip() == "0"


def test_make_compose_down_leaves_no_container_network_or_port(stack):
    down = stack.make("compose-down", timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]
    containers = stack.run(
        "docker",
        "ps",
        "--all",
        "--filter",
        "label=com.docker.compose.project=gpu-cluster",
        "--format",
        "{{.Names}}",
    ).stdout
    assert containers.strip() == ""
    networks = stack.run(
        "docker",
        "network",
        "ls",
        "--filter",
        "label=com.docker.compose.project=gpu-cluster",
        "--format",
        "{{.Name}}",
    ).stdout
    assert networks.strip() == ""
    assert [p for p in stack.ports.values() if listening(p)] == []
