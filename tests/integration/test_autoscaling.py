"""LLM-aware autoscaling on the live stack: sustained queueing adds a replica, idleness removes
it, and every request sent meanwhile (streams included) completes.

The session platform allows 1-2 replicas with short delays (conftest); replicas report their
engine's load to the policy every 2 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import pytest
from probes import clean_stream, eventually, query, settle, wait_for_replicas

from gpucluster.config.names import APP_NAME, LLM_DEPLOYMENT_MATCHER, llm_deployment_name


@dataclass
class Load:
    """Clients in a background thread; each request's outcome is kept."""

    live: object
    workers: int
    outcomes: list[tuple[str, bool, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Load:
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(timeout=600)
        assert not self._thread.is_alive(), "requests still running 10 minutes after the load ended"

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=600, headers=self.live.headers) as client:
            await asyncio.gather(*(self._worker(client, i % 2 == 0) for i in range(self.workers)))

    async def _worker(self, client: httpx.AsyncClient, stream: bool) -> None:
        body = {
            "model": self.live.model,
            "messages": [{"role": "user", "content": "Tell me a long story about rivers."}],
            "max_tokens": 96,
            "ignore_eos": True,
            "stream": stream,
        }
        url = f"{self.live.api}/chat/completions"
        while not self.stop.is_set():
            try:
                if stream:
                    async with client.stream("POST", url, json=body) as response:
                        text = "\n".join([line async for line in response.aiter_lines()])
                    ok = response.status_code == 200 and clean_stream(text)
                    detail = f"{response.status_code} {text[-300:]}"
                else:
                    response = await client.post(url, json=body)
                    ok = (
                        response.status_code == 200
                        and response.json()["usage"]["completion_tokens"] == 96
                    )
                    detail = f"{response.status_code} {response.text[-300:]}"
            except httpx.HTTPError as exc:
                ok, detail = False, repr(exc)
            self.outcomes.append(("stream" if stream else "plain", ok, detail))


REPLICA_STARTED = re.compile(
    r"^INFO (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ (\S+) (\S+) -- Replica started successfully"
)


def llm_replicas_started(serve_log: str, model: str, since: datetime) -> set[str]:
    """Ids of the model's replicas whose start the Serve log records at or after `since`."""
    deployment = f"{APP_NAME}_{llm_deployment_name(model)}"
    started = set()
    for line in serve_log.splitlines():
        match = REPLICA_STARTED.match(line)
        if (
            match
            and match[2] == deployment
            and datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S") >= since.replace(microsecond=0)
        ):
            started.add(match[3])
    return started


@pytest.mark.timeout(
    3300
)  # its own waits: settle 840, two replicas 420, load drained 600, back to one 300, drained 600, logs and starts 120
@pytest.mark.saturates
def test_queueing_adds_a_replica_and_idleness_removes_it_without_failing_a_request(live, artifacts):
    settle(live)
    began = datetime.now()

    heavy = Load(live, workers=3 * live.max_num_seqs).start()
    try:
        to_two = wait_for_replicas(live, 2, timeout_s=420)
        assert to_two is not None, "sustained queueing never brought a second replica up"
        time.sleep(20)  # both replicas serve the load for a while
    finally:
        heavy.finish()
    served = query(
        live, "count(sum by (ReplicaId) (increase(ray_vllm_generation_tokens_total[1m])) > 0)"
    )
    assert served and float(served[0]["value"][1]) >= 2, "the second replica never served"

    trickle = Load(live, workers=1).start()  # a stream in flight through the scale-down
    try:
        to_one = wait_for_replicas(live, 1, timeout_s=300)
        assert to_one is not None, "the idle second replica was never removed"
        time.sleep(10)
    finally:
        trickle.finish()

    outcomes = heavy.outcomes + trickle.outcomes
    failed = [o for o in outcomes if not o[1]]
    assert not failed, failed[:5]
    assert {kind for kind, _, _ in heavy.outcomes} == {"stream", "plain"}

    serve_log = live.cli("logs", "serve", "-n", "50000", timeout=60).stdout
    assert "Scaling up deployment: adding replica" in serve_log
    assert "Scaling down deployment: removing replica" in serve_log
    started = llm_replicas_started(serve_log, live.model, since=began)
    assert len(started) >= 1, "no replica of the model logged its start during the test"
    starts = eventually(
        lambda: query(
            live,
            f"sum(increase(ray_serve_deployment_replica_starts_total{{{LLM_DEPLOYMENT_MATCHER}}}[15m])) > 0",
        ),
        timeout_s=60,
    )
    assert starts, "ray_serve_deployment_replica_starts_total did not count the new replica"
    decisions = query(live, "sum by (direction) (ray_gpucluster_autoscaling_decisions_total)")
    assert {d["metric"]["direction"] for d in decisions} >= {"up", "down"}

    figures = {
        "load_start_to_second_replica_serving_s": round(to_two, 1),
        "load_end_to_scaled_down_s": round(to_one, 1),
        "requests": len(outcomes),
        "streams": sum(kind == "stream" for kind, _, _ in outcomes),
        "trickle_requests_during_scale_down": len(trickle.outcomes),
    }
    (artifacts / "autoscaling.json").write_text(json.dumps(figures, indent=2))
