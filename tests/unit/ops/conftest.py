"""A fake platform for the operator tools that read it over HTTP (health, status, diagnose): the
endpoints `gpucluster up` records, answered by an httpx.MockTransport, nothing on a socket.

`fake_platform` starts healthy (one model, one alive Ray node, every Ray target up); a test
changes `routes` (or calls `down(port)`) and gives `fake_platform.client()` to the tool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gpucluster.config import Config
from gpucluster.ops.target import Target
from gpucluster.runtime.state import StateDir, endpoints_for

CONFIG = Config()  # the default platform: the fake answers on its ports
_PORTS = CONFIG.platform.ports
NGINX, SERVE, RAY, RAY_METRICS = (
    _PORTS.nginx_http,
    _PORTS.serve_http,
    _PORTS.ray_dashboard,
    _PORTS.ray_metrics,
)
PROMETHEUS, ALERTMANAGER = _PORTS.prometheus, _PORTS.alertmanager
MODEL = CONFIG.models[0].id  # the built-in model: a CPU model, no adapters
API_KEY = "k-health"
RAY_TOKEN = "t0k"
HEAD_IP = "10.0.0.5"

Answer = Callable[[httpx.Request], httpx.Response]


def answer(status: int = 200, body: Any = None, text: str = "") -> Answer:
    """A fresh response per request: `body` as JSON, else `text`."""
    if body is not None:
        return lambda request: httpx.Response(status, json=body)
    return lambda request: httpx.Response(status, text=text)


def state_api_nodes(*nodes: tuple[str, str, bool, dict[str, float]]) -> dict[str, Any]:
    """GET /api/v0/nodes's answer (ops/ray_api.py; its test checks it against Ray's own code):
    nodes as (ip, state, is_head, resources_total)."""
    rows = [
        {
            "node_id": f"{i:056x}",
            "node_ip": ip,
            "state": state,
            "is_head_node": head,
            "resources_total": resources,
        }
        for i, (ip, state, head, resources) in enumerate(nodes)
    ]
    return {
        "result": True,
        "msg": "",
        "data": {
            "result": {
                "total": len(rows),
                "num_after_truncation": len(rows),
                "num_filtered": len(rows),
                "result": rows,
                "partial_failure_warning": "",
                "warnings": None,
            }
        },
    }


class FakePlatform:
    """The platform's HTTP answers by (port, method, path); a request to anything else is
    refused (httpx.ConnectError), as by a port nothing listens on. Prometheus's instant queries
    answer from `series`: the first entry whose key is in the query, else no series.

    The tests read the fake's ports, model, key and token from it (conftest is not importable).
    """

    NGINX, RAY, RAY_METRICS = NGINX, RAY, RAY_METRICS
    PROMETHEUS, ALERTMANAGER = PROMETHEUS, ALERTMANAGER
    MODEL, API_KEY, RAY_TOKEN, HEAD_IP = MODEL, API_KEY, RAY_TOKEN, HEAD_IP
    answer = staticmethod(answer)
    state_api_nodes = staticmethod(state_api_nodes)

    def __init__(self) -> None:
        ray_targets = [
            {
                "labels": {"job": "ray"},
                "scrapeUrl": f"http://{HEAD_IP}:8080/metrics",
                "health": "up",
                "lastError": "",
            }
        ]
        self.routes: dict[tuple[int, str, str], Answer] = {
            (NGINX, "GET", "/v1/models"): answer(body={"object": "list", "data": [{"id": MODEL}]}),
            (NGINX, "GET", "/health"): answer(body={"status": "ok", "models": {MODEL: "HEALTHY"}}),
            (NGINX, "POST", "/v1/chat/completions"): answer(
                body={"choices": [{"message": {"role": "assistant", "content": "OK"}}]}
            ),
            (RAY, "GET", "/"): answer(text="<html>Ray</html>"),
            (RAY, "GET", "/api/v0/nodes"): answer(
                body=state_api_nodes(
                    (HEAD_IP, "ALIVE", True, {"CPU": 8.0, "memory": 4e9}),
                )
            ),
            (RAY, "GET", "/api/serve/applications/"): answer(
                body={
                    "applications": {
                        "llm": {
                            "deployments": {f"PlatformLLMServer:{MODEL}": {"status": "HEALTHY"}},
                        }
                    }
                }
            ),
            (RAY_METRICS, "GET", "/metrics"): answer(text="ray_node_cpu_utilization 12.5\n"),
            (PROMETHEUS, "GET", "/-/healthy"): answer(text="Prometheus Server is Healthy.\n"),
            (PROMETHEUS, "GET", "/api/v1/targets"): answer(
                body={"status": "success", "data": {"activeTargets": ray_targets}}
            ),
            (PROMETHEUS, "GET", "/api/v1/query"): self._query,
            (ALERTMANAGER, "GET", "/-/healthy"): answer(text="OK"),
        }
        self.series: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.seen: list[httpx.Request] = []

    def _query(self, request: httpx.Request) -> httpx.Response:
        expr = request.url.params["query"]
        found = next((series for key, series in self.series.items() if key in expr), [])
        result = [{"metric": labels, "value": [0, str(value)]} for labels, value in found]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        route = self.routes.get((request.url.port, request.method, request.url.path))
        if route is None:
            raise httpx.ConnectError("All connection attempts failed", request=request)
        return route(request)

    def down(self, port: int) -> None:
        """Nothing listens on `port` any more."""
        self.routes = {key: route for key, route in self.routes.items() if key[0] != port}

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def requests_to(self, port: int, path: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.url.port == port and r.url.path == path]


@pytest.fixture
def fake_platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def platform_target(tmp_path) -> Target:
    """The platform as `gpucluster up` recorded it, on the fake's ports, with the API key and
    Ray token the tools send."""
    state = StateDir(tmp_path / "state")
    state.ensure()
    state.ray_token_file.write_text(f"{RAY_TOKEN}\n")
    return Target(CONFIG, state, endpoints_for(CONFIG), True, API_KEY, [MODEL])
