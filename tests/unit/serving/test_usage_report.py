"""What a replica reports to the gatekeeper when a /v1 request ends, and what the client sees."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx

from gpucluster.serving.usage_report import (
    FORCED_USAGE,
    KEY_NAME,
    MODEL,
    SettleClient,
    UsageMiddleware,
    UsageRecord,
    usage_forced,
    with_usage,
)

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
EVENTS = [
    b'data: {"choices":[{"delta":{"content":"Hi"}}],"usage":null}\n\n',
    b'data: {"choices":[{"delta":{"content":"!"}}],"usage":null}\n\n',
    b'data: {"choices":[],"usage":' + json.dumps(USAGE).encode() + b"}\n\n",
    b"data: [DONE]\n\n",
]


class Answer:
    """An ASGI app answering like vLLM: an SSE stream, or one JSON body; notes the request state
    as the request checks would."""

    def __init__(self, stream: bool, forced: bool = False, status: int = 200) -> None:
        self.stream, self.forced, self.status = stream, forced, status

    async def __call__(self, scope, receive, send) -> None:
        state = scope.setdefault("state", {})
        state[MODEL] = "m"
        state[KEY_NAME] = "team-a"
        if self.forced:
            state[FORCED_USAGE] = True
        kind = b"text/event-stream" if self.stream else b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", kind)],
            }
        )
        if self.stream:
            for event in EVENTS:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            body = json.dumps({"choices": [{"message": {"content": "Hi!"}}], "usage": USAGE})
            await send({"type": "http.response.body", "body": body.encode()})


def call(app, path: str = "/v1/chat/completions", headers: dict | None = None):
    records: list[UsageRecord] = []

    async def report(record: UsageRecord) -> None:
        records.append(record)

    async def go() -> httpx.Response:
        middleware = UsageMiddleware(app, report)
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            reply = await client.post(path, json={}, headers=headers or {})
        await asyncio.sleep(0)  # let the fire-and-forget report run
        return reply

    return asyncio.run(go()), records


def test_a_forced_usage_event_is_reported_and_not_shown_to_the_client():
    reply, (record,) = call(Answer(stream=True, forced=True), headers={"X-Request-Id": "r-1"})
    assert b'"usage":{' not in reply.content
    assert reply.text.endswith("data: [DONE]\n\n") and '"Hi"' in reply.text
    assert (record.request_id, record.key, record.model, record.status) == (
        "r-1",
        "team-a",
        "m",
        200,
    )
    assert (record.prompt_tokens, record.completion_tokens) == (7, 3)
    assert record.ttft_ms is not None and record.duration_ms >= record.ttft_ms


def test_a_client_that_asked_for_usage_gets_it():
    reply, (record,) = call(Answer(stream=True, forced=False))
    assert b'"usage":{"prompt_tokens": 7' in reply.content
    assert record.completion_tokens == 3


def test_a_json_answer_is_read_for_its_usage():
    reply, (record,) = call(Answer(stream=False))
    assert reply.json()["usage"] == USAGE
    assert (record.prompt_tokens, record.completion_tokens, record.status) == (7, 3, 200)


def test_the_key_comes_from_nginx_when_the_replica_checks_none():
    async def refused(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    _, (record,) = call(refused, headers={"X-Gpucluster-Key": "team-b"})
    assert (record.key, record.model, record.status, record.prompt_tokens) == (
        "team-b",
        "-",
        401,
        0,
    )


def test_health_and_other_paths_are_not_reported():
    _, records = call(Answer(stream=False), path="/health")
    assert records == []


def test_a_failing_app_is_reported_as_500_and_still_fails():
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("engine gone")

    records: list[UsageRecord] = []

    async def report(record: UsageRecord) -> None:
        records.append(record)

    async def go() -> None:
        scope = {"type": "http", "path": "/v1/completions", "headers": [], "method": "POST"}
        try:
            await UsageMiddleware(broken, report)(scope, None, None)
        except RuntimeError:
            pass
        await asyncio.sleep(0)

    asyncio.run(go())
    assert [r.status for r in records] == [500]


def test_usage_is_forced_only_for_streams_that_did_not_ask():
    state: dict = {}
    ask = SimpleNamespace(stream=True, stream_options=None)
    assert usage_forced(ask, state) and state[FORCED_USAGE]
    assert not usage_forced(
        SimpleNamespace(stream=True, stream_options={"include_usage": True}), {}
    )
    asked = SimpleNamespace(stream=True, stream_options=SimpleNamespace(include_usage=True))
    assert not usage_forced(asked, {})
    assert not usage_forced(SimpleNamespace(stream=False, stream_options=None), {})


def test_an_unreachable_gatekeeper_costs_a_log_line_not_the_request(caplog):
    record = UsageRecord("r", "k", "m", "/v1/completions", 200)
    asyncio.run(SettleClient("http://127.0.0.1:9/settle")(record))  # port 9: nothing listens
    assert "not reported to the gatekeeper" in caplog.text


def test_asking_for_usage_keeps_the_clients_other_stream_options():
    assert with_usage(None) == {"include_usage": True}
    assert with_usage({"continuous_usage_stats": True}) == {
        "continuous_usage_stats": True,
        "include_usage": True,
    }
    from ray.serve.llm.openai_api_models import ChatCompletionRequest

    body = ChatCompletionRequest(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"continuous_usage_stats": True},
    )
    assert with_usage(body.stream_options) == {
        "continuous_usage_stats": True,
        "include_usage": True,
    }
