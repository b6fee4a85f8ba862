"""Ray's node list, read over HTTP from Ray's State API (ops talks to the platform over HTTP only:
no `import ray`).

`GET /api/v0/nodes` on the Ray dashboard is the State API's node listing, what `ray list nodes`
and `ray.util.state.list_nodes` call (ray/dashboard/modules/state/state_head.py); not the
dashboard UI's own `/nodes?view=summary`, which is the UI's internal format. It wants the
platform's Ray token like every dashboard call (Target.ray_headers). Its answer, Ray 2.60:

    {"result": true, "msg": "", "data": {"result": {"total": N, "num_after_truncation": N,
     "num_filtered": N, "result": [NODE, ...], "partial_failure_warning": "", "warnings": null}}}

with each NODE the columns of ray.util.state.common.NodeState: node_id, node_ip, is_head_node,
state (ALIVE or DEAD), state_message, node_name, resources_total ({"CPU": 8.0, "GPU": 1.0,
...}), labels. An error is `"result": false` with the reason in `msg` (HTTP 400 or 500); a call
without a valid token gets 401 or 403 in plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from gpucluster.errors import GpuClusterError

NODES_PATH = "/api/v0/nodes"
# The State API returns `limit` rows at most, 100 unless asked; 10,000 is the most it gives
# (RAY_MAX_LIMIT_FROM_API_SERVER): dead nodes are listed too and must not crowd out live ones.
NODES_LIMIT = 10_000


class RayApiError(GpuClusterError, ValueError):
    """The State API answered with an error of its own (`"result": false`)."""

    next_step = "`gpucluster logs ray`"

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"Ray API answered HTTP {status_code}: {message}")
        self.status_code = status_code


@dataclass(frozen=True)
class RayNode:
    node_id: str
    address: str  # the node's IP (node_ip)
    state: str  # ALIVE or DEAD
    is_head: bool
    resources: dict[str, float]  # resources_total: CPU, GPU, memory, node:<ip>, ...

    @property
    def alive(self) -> bool:
        return self.state == "ALIVE"


def ray_nodes(
    dashboard_url: str,
    headers: dict[str, str],
    timeout_s: float,
    client: httpx.Client | None = None,
) -> list[RayNode]:
    """Every node of the Ray cluster behind `dashboard_url`, dead ones included.

    Raises httpx.HTTPError when the dashboard does not answer or refuses (httpx.HTTPStatusError,
    such as 401 without the token), RayApiError when the State API reports an error, and
    ValueError or KeyError when the answer is not the State API's.
    """
    params = {"limit": NODES_LIMIT, "timeout": max(1, round(timeout_s))}
    url = f"{dashboard_url.rstrip('/')}{NODES_PATH}"
    if client is None:
        with httpx.Client(timeout=timeout_s) as own:
            response = own.get(url, params=params, headers=headers)
    else:
        response = client.get(url, params=params, headers=headers, timeout=timeout_s)
    if "application/json" in response.headers.get("content-type", ""):
        body = response.json()
        if isinstance(body, dict) and body.get("result") is False:
            raise RayApiError(response.status_code, body.get("msg") or "no reason given")
    response.raise_for_status()
    return [
        RayNode(
            node_id=row["node_id"],
            address=row["node_ip"],
            state=row["state"],
            is_head=bool(row.get("is_head_node")),
            resources=dict(row.get("resources_total") or {}),
        )
        for row in response.json()["data"]["result"]["result"]
    ]
