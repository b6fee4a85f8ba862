"""Ray's node list over HTTP (ops.ray_api), and what health and status make of it.

The answers are made by Ray's own server code (Ray 2.60 as installed): the State API's node
listing (StateAPIManager.list_nodes on nodes as the GCS describes them) and the dashboard's
reply (do_reply), so a change of Ray's format fails here rather than on a live cluster.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import httpx
import pytest
from ray.core.generated.gcs_pb2 import GcsNodeInfo
from ray.dashboard.state_aggregator import StateAPIManager
from ray.dashboard.state_api_utils import do_reply
from ray.dashboard.utils import HTTPStatusCode
from ray.util.state.common import ListApiOptions

from gpucluster.config import Config
from gpucluster.ops import health, status
from gpucluster.ops.prom import Prometheus
from gpucluster.ops.ray_api import NODES_LIMIT, NODES_PATH, RayApiError, ray_nodes
from gpucluster.ops.target import Target
from gpucluster.runtime.state import StateDir, endpoints_for

DASHBOARD = "http://127.0.0.1:18265"
HEAD_ID, WORKER_ID = "ab" * 28, "cd" * 28


class GcsNodes:
    """The GCS's node table, as StateAPIManager reads it: a live head and a dead GPU worker."""

    async def get_all_node_info(self, timeout, filters):
        head = GcsNodeInfo(
            node_id=bytes.fromhex(HEAD_ID),
            node_manager_address="10.0.0.5",
            is_head_node=True,
            state=GcsNodeInfo.ALIVE,
            node_name="10.0.0.5",
            resources_total={"CPU": 8.0, "memory": 4e9, "node:10.0.0.5": 1.0},
        )
        worker = GcsNodeInfo(
            node_id=bytes.fromhex(WORKER_ID),
            node_manager_address="10.0.0.7",
            state=GcsNodeInfo.DEAD,
            resources_total={"CPU": 4.0, "GPU": 2.0},
        )
        worker.death_info.reason = worker.death_info.UNEXPECTED_TERMINATION
        worker.death_info.reason_message = "health check failed"
        return {head.node_id: head, worker.node_id: worker}, 0


def ray_answer(status: HTTPStatusCode = HTTPStatusCode.OK, message: str = "") -> httpx.Response:
    """The HTTP answer Ray's dashboard gives to GET /api/v0/nodes."""
    result = None
    if status == HTTPStatusCode.OK:
        manager = StateAPIManager(GcsNodes(), ThreadPoolExecutor(1))
        options = ListApiOptions(limit=NODES_LIMIT, timeout=5, filters=[], detail=False)
        result = asdict(asyncio.run(manager.list_nodes(option=options)))
    reply = do_reply(status_code=status, error_message=message, result=result)
    return httpx.Response(
        reply.status, content=reply.body, headers={"content-type": reply.content_type}
    )


def client_of(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def client(answer: httpx.Response, seen: list[httpx.Request] | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer

    return client_of(handler)


def test_nodes_come_from_the_state_api_with_the_token():
    seen: list[httpx.Request] = []
    nodes = ray_nodes(DASHBOARD, {"Authorization": "Bearer t0k"}, 3, client(ray_answer(), seen))
    (request,) = seen
    assert request.url.path == NODES_PATH
    assert request.url.params["limit"] == str(NODES_LIMIT)
    assert request.headers["Authorization"] == "Bearer t0k"
    assert [(n.node_id, n.address, n.state, n.is_head, n.alive) for n in nodes] == [
        (HEAD_ID, "10.0.0.5", "ALIVE", True, True),
        (WORKER_ID, "10.0.0.7", "DEAD", False, False),
    ]
    assert nodes[0].resources["CPU"] == 8.0 and nodes[1].resources["GPU"] == 2.0


def test_an_error_of_the_state_api_says_its_reason():
    answer = ray_answer(HTTPStatusCode.INTERNAL_ERROR, "Failed to query the GCS")
    with pytest.raises(RayApiError, match="HTTP 500: Failed to query the GCS"):
        ray_nodes(DASHBOARD, {}, 3, client(answer))


def test_a_call_without_the_token_is_refused():
    # Ray's token middleware answers in plain text
    answer = httpx.Response(401, text="Unauthorized: Missing authentication token")
    with pytest.raises(httpx.HTTPStatusError):
        ray_nodes(DASHBOARD, {}, 3, client(answer))


@pytest.fixture
def target(tmp_path) -> Target:
    state = StateDir(tmp_path)
    state.ensure()
    state.ray_token_file.write_text("t0k\n")
    config = Config()
    assert endpoints_for(config).ray_dashboard == DASHBOARD  # the address the answers are for
    return Target(config, state, endpoints_for(config), True, None, [])


def test_health_counts_the_alive_nodes_and_sends_the_platforms_token(target):
    seen: list[httpx.Request] = []
    assert health.check_ray_cluster(target, client(ray_answer(), seen)) == "1 alive node(s)"
    assert seen[0].headers["Authorization"] == "Bearer t0k"
    refused = client(ray_answer(HTTPStatusCode.INTERNAL_ERROR, "Failed to query the GCS"))
    with pytest.raises(health.CheckFailed, match="HTTP 500: Failed to query the GCS"):
        health.check_ray_cluster(target, refused)
    forbidden = client(httpx.Response(403, text="Forbidden: Invalid authentication token"))
    with pytest.raises(health.CheckFailed, match="Ray API answered HTTP 403"):
        health.check_ray_cluster(target, forbidden)


def test_status_rows_take_cpu_and_memory_from_rays_node_metrics(target):
    def metrics(request: httpx.Request) -> httpx.Response:
        values = {
            status.NODE_CPU_PERCENT: 12.5,
            status.NODE_MEM_USED: 3 * 2**30,
            status.NODE_MEM_TOTAL: 16 * 2**30,
        }
        value = values[request.url.params["query"]]
        result = [{"metric": {"ip": "10.0.0.5"}, "value": [0, str(value)]}]
        return httpx.Response(200, json={"status": "success", "data": {"result": result}})

    prom = Prometheus(target.endpoints.prometheus, client_of(metrics))
    head, worker = status._nodes(target, prom, client(ray_answer()))
    assert head == status.NodeStatus("10.0.0.5", "ALIVE", 8.0, 0.0, 12.5, 3.0, 16.0)
    assert worker == status.NodeStatus("10.0.0.7", "DEAD", 4.0, 2.0, None, None, None)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    prom = Prometheus(target.endpoints.prometheus, client_of(down))
    head, _ = status._nodes(target, prom, client(ray_answer()))  # the nodes, without figures
    assert (head.address, head.cpus, head.cpu_percent, head.mem_total_gib) == (
        "10.0.0.5",
        8.0,
        None,
        None,
    )
