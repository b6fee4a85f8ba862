"""An in-process fake OpenAI server (streamed chat completions) and a fake clock for the bench."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest


class FakeOpenAI:
    """Streams one content chunk per requested token, then usage, then [DONE].

    `fail_every=k` answers every k-th chat request with HTTP `fail_status` (500);
    `usage=False` leaves usage out;
    `error_event=True` sends an SSE error event after the first chunk.
    """

    def __init__(
        self,
        model: str = "fake-model",
        *,
        fail_every: int | None = None,
        fail_status: int = 500,
        usage: bool = True,
        error_event: bool = False,
        default_tokens: int = 16,
    ) -> None:
        self.model = model
        self.fail_every = fail_every
        self.fail_status = fail_status
        self.usage = usage
        self.error_event = error_event
        self.default_tokens = default_tokens
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/v1/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": self.model}]})
        if request.method == "POST" and path.endswith("/v1/chat/completions"):
            return self._chat(request)
        return httpx.Response(404, json={"error": {"message": f"no route {path}"}})

    def _chat(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        if self.fail_every and len(self.bodies) % self.fail_every == 0:
            return httpx.Response(
                self.fail_status,
                json={
                    "error": {
                        "message": f"engine failed (request {len(self.bodies)})",
                        "type": "InternalServerError",
                        "param": None,
                        "code": self.fail_status,
                    }
                },
            )
        tokens = body.get("max_tokens", self.default_tokens)
        prompt_tokens = sum(len(str(m["content"]).split()) for m in body["messages"])
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"]}
        events: list[Any] = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
        for i in range(tokens):
            events.append({**base, "choices": [{"index": 0, "delta": {"content": f" t{i}"}}]})
            if self.error_event and i == 0:
                events.append({"error": {"message": "engine died mid-stream", "code": 500}})
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        if self.usage:
            events.append(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": tokens,
                        "total_tokens": prompt_tokens + tokens,
                    },
                }
            )
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=text)


class Router:
    """One transport for several fake servers, chosen by host."""

    def __init__(self, servers: dict[str, FakeOpenAI]) -> None:
        self.servers = servers

    def __call__(self, request: httpx.Request) -> httpx.Response:
        server = self.servers.get(request.url.host)
        if server is None:
            raise httpx.ConnectError("connection refused", request=request)
        return server.handle(request)


class FakeClock:
    """Virtual time: each reading advances 1 ms; sleeping jumps ahead."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        self.t += 0.001
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def client_for(servers: dict[str, FakeOpenAI]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(Router(servers)))


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_fake():
    """FakeOpenAI's constructor, for tests that want several servers or special behaviour."""
    return FakeOpenAI


@pytest.fixture
def make_client():
    """An httpx.AsyncClient over fake servers by host: make_client({"a.test": fake})."""
    return client_for
