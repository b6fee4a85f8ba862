"""The platform's API contract in front of vLLM's own app inside a direct-streaming replica."""

from __future__ import annotations

import asyncio
import json

import httpx

from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.direct import AdmissionLimits, build_direct_app
from gpucluster.serving.ray_internals import ModelCard

SSE = [(b"content-type", b"text/event-stream; charset=utf-8")]
CARD = ModelCard(
    id="m",
    object="model",
    owned_by="me",
    permission=[],
    metadata={"max_request_context_length": 64},
)


class EngineApp:
    """Stands in for vLLM's ASGI app: echoes the body it received, as a stream of chunks."""

    def __init__(self, chunks: int = 2, hang: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.chunks = chunks
        self.hang = hang

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        for _ in range(self.chunks):
            await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
        if self.hang:
            await asyncio.sleep(3600)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


ROOMY = AdmissionLimits(8, 8, 2)  # more room than any test here fills


def client(
    engine: EngineApp, aborts: list, keys: ApiKeys | None = None, limits: AdmissionLimits = ROOMY
) -> httpx.AsyncClient:
    async def healthy() -> None:
        return None

    app = build_direct_app(
        engine,
        api_keys=keys or ApiKeys([]),
        usage_url=None,
        card=CARD,
        limits=limits,
        check_health=healthy,
        on_abort=lambda: aborts.append(1),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica")


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_a_valid_stream_reaches_the_engine_asking_for_its_usage():
    engine, aborts = EngineApp(), []

    async def go() -> httpx.Response:
        async with client(engine, aborts) as c:
            return await c.post("/v1/chat/completions", json=CHAT)

    reply = asyncio.run(go())
    assert reply.status_code == 200
    assert reply.text.endswith("data: [DONE]\n\n")
    # the usage settles the key's token quota; the client, who did not ask, never sees it
    assert json.loads(engine.bodies[0]) == {**CHAT, "stream_options": {"include_usage": True}}
    assert aborts == []


def test_bad_requests_get_the_platform_errors_and_never_reach_the_engine(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("sekret\n")
    engine, aborts = EngineApp(), []
    cases = [
        ({}, {**CHAT, "model": "other"}, 404, "model_not_found"),
        ({}, {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, 400, "invalid_parameter"),
        ({}, {**CHAT, "max_tokens": 65}, 400, "invalid_parameter"),
        ({"Authorization": "Bearer wrong"}, CHAT, 401, "invalid_api_key"),
    ]

    async def go() -> list[httpx.Response]:
        async with client(engine, aborts, ApiKeys([str(keys_file)])) as c:
            replies = []
            for headers, body, _, _ in cases:
                auth = headers or {"Authorization": "Bearer sekret"}
                replies.append(await c.post("/v1/chat/completions", json=body, headers=auth))
            return replies

    for reply, (_, _, status, code) in zip(asyncio.run(go()), cases, strict=True):
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["code"] == code
    assert engine.bodies == []


def test_health_and_models_answer_in_the_platform_shape():
    engine, aborts = EngineApp(), []

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with client(engine, aborts) as c:
            return (
                await c.get("/health"),
                await c.get("/v1/models"),
                await c.get("/v1/models/nope"),
            )

    health, models, missing = asyncio.run(go())
    assert health.json() == {"status": "ok", "models": {"m": "ok"}}
    assert [m["id"] for m in models.json()["data"]] == ["m"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_a_request_cancelled_mid_answer_counts_one_abort(wait_until_async):
    engine, aborts = EngineApp(hang=True), []

    async def go() -> None:
        async with client(engine, aborts) as c:
            request = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT))
            await wait_until_async(lambda: engine.bodies, "the request to reach the engine")
            request.cancel()
            try:
                await request
            except asyncio.CancelledError:
                pass

    asyncio.run(go())
    assert aborts == [1]


class FailingEngineApp:
    """vLLM's app answering with its own error shape: a 400 response, or an SSE error event as
    the stream's first event (a parameter vLLM checks once it streams) or after one."""

    def __init__(self, where: str) -> None:
        self.where = where

    async def __call__(self, scope, receive, send) -> None:
        await receive()
        vllm_error = {
            "error": {
                "message": "This model's maximum context length is 64 tokens.",
                "type": "BadRequestError",
                "param": "input_tokens",
                "code": 400,
            }
        }
        if self.where != "response":
            await send({"type": "http.response.start", "status": 200, "headers": SSE})
            if self.where == "later in the stream":
                await send(
                    {"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True}
                )
            event = f"data: {json.dumps(vllm_error)}\n\ndata: [DONE]\n\n".encode()
            await send({"type": "http.response.body", "body": event})
            return
        body = json.dumps(vllm_error).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


PLATFORM_ERROR = {
    "message": "This model's maximum context length is 64 tokens.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "invalid_parameter",
}


def answer_of(engine) -> httpx.Response:
    async def go() -> httpx.Response:
        async with client(engine, []) as c:
            return await c.post("/v1/chat/completions", json=CHAT)

    return asyncio.run(go())


def test_the_engines_own_errors_reach_the_client_in_the_platform_shape():
    refused = answer_of(FailingEngineApp("response"))
    assert refused.status_code == 400
    assert refused.json()["error"] == PLATFORM_ERROR
    streamed = answer_of(FailingEngineApp("later in the stream"))
    assert streamed.status_code == 200
    first, event, done = [line for line in streamed.text.split("\n\n") if line]
    assert first == "data: {}"  # the engine's event before its error, passed on as is
    assert json.loads(event.removeprefix("data: "))["error"] == PLATFORM_ERROR
    assert done == "data: [DONE]"


def test_a_stream_that_opens_with_an_error_is_answered_as_that_error():
    refused = answer_of(FailingEngineApp("first in the stream"))
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"] == PLATFORM_ERROR


def test_a_full_replica_refuses_generations_at_once_but_still_answers_health(wait_until_async):
    engine = EngineApp(hang=True)

    async def go() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async with client(engine, [], limits=AdmissionLimits(1, 1, 3)) as c:
            held = [
                asyncio.create_task(c.post("/v1/chat/completions", json=CHAT)) for _ in range(2)
            ]  # one running, one queued
            await wait_until_async(lambda: engine.bodies, "the request to reach the engine")
            await asyncio.sleep(0.05)
            refused = [await c.post("/v1/chat/completions", json=CHAT) for _ in range(2)]
            health, models = await c.get("/health"), await c.get("/v1/models")
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            return refused, health, models

    refused, health, models = asyncio.run(go())
    for reply in refused:
        assert reply.status_code == 429
        assert reply.headers["retry-after"] == "3"
        assert reply.json()["error"]["code"] == "model_at_capacity"
    assert health.status_code == 200 and models.status_code == 200
    assert len(engine.bodies) == 1  # the queued one never reached the engine
