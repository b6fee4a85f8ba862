"""More hosts: a Ray worker node joins the head, and the model's replica runs on it.

The second node runs on this host (two Ray nodes on the host's own address, which is what a
multi-node Ray cluster needs here); the head offers one logical CPU, so the LLM replica cannot
fit there and Serve must place it on the joined node.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import httpx
import pytest
from openai import OpenAI
from probes import eventually

from gpucluster.config import Config
from gpucluster.runtime.processes import platform_processes, worker_tag
from gpucluster.runtime.worker_node import host_address


@pytest.mark.timeout(
    2400
)  # its own waits: down 300, up 900 (the join within it), metrics 90, leave 300, down 300
@pytest.mark.stops_platform  # starts a platform of its own, on the live one's ports
def test_a_joined_worker_node_runs_the_replica_and_reports_its_metrics(live, tmp_path):
    live.cli("down", "--json", timeout=300)
    state = tmp_path / "state"
    config = tmp_path / "platform.yaml"
    config.write_text(
        f"models:\n  - id: {live.model}\nplatform:\n  state_dir: {state}\n  ray_num_cpus: 1\n"
    )
    key = "k-multinode-123"
    env = {**live.env, "GPUCLUSTER_CONFIG": str(config), "GPUCLUSTER_API_KEYS": key}

    def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gpucluster", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    head = f"{host_address()}:{Config().platform.ports.ray_gcs}"
    outcome: dict[str, subprocess.CompletedProcess[str]] = {}
    up = threading.Thread(
        target=lambda: outcome.update(
            up=cli("up", "--head", "--head-host", host_address(), "--json")
        )
    )
    up.start()
    try:
        # The head is up once `up` starts the services after it; the replica waits for room.
        platform_log = state / "logs" / "platform.log"
        assert eventually(
            lambda: platform_log.exists() and "Starting nginx" in platform_log.read_text(), 180, 2
        )
        joined = cli("join", head, "--num-cpus", "4", "--json", timeout=300)
        assert joined.returncode == 0, joined.stdout + joined.stderr
        worker = json.loads(joined.stdout)
        up.join(timeout=900)
        assert outcome["up"].returncode == 0, outcome["up"].stderr[-3000:]
        started = json.loads(outcome["up"].stdout)
        assert worker["head"] == head and started["join"].startswith(f"gpucluster join {head}")

        status = json.loads(cli("status", "--json").stdout)
        assert sorted(node["cpus"] for node in status["nodes"]) == [1.0, 4.0]
        client = OpenAI(base_url=started["endpoints"]["openai_api"], api_key=key)
        answer = client.chat.completions.create(
            model=live.model,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
        )
        assert answer.usage.completion_tokens > 0

        # The engine's own metrics come from the worker node's metrics port: it ran there.
        instance = f"{worker['node_ip']}:{worker['metrics_port']}"
        prometheus = started["endpoints"]["prometheus"]

        def tokens_from_worker() -> float:
            body = httpx.get(
                f"{prometheus}/api/v1/query",
                timeout=30,
                params={"query": f'sum(ray_vllm_generation_tokens_total{{instance="{instance}"}})'},
            ).json()
            result = body["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        assert eventually(lambda: tokens_from_worker() >= answer.usage.completion_tokens, 90, 5), (
            f"no tokens counted from the worker node's metrics ({instance})"
        )

        left = cli("leave", "--json", timeout=300)
        assert left.returncode == 0 and json.loads(left.stdout)["stopped"]
        assert not platform_processes(worker_tag(str(state.resolve())), exact=True)
        assert platform_processes(str(state.resolve()), exact=True), "leave stopped the head"
    finally:
        up.join(timeout=900)
        down = cli("down", "--json", timeout=300)
    assert down.returncode == 0 and json.loads(down.stdout)["leftovers"] == []
    assert not platform_processes(str(state.resolve()))
