"""Direct streaming: an LLM replica that is itself the platform's HTTP ingress.

vLLM's own OpenAI app runs inside the replica (Ray Serve LLM's `__serve_build_asgi_app__`
hook) and Serve gives the replica its own loopback HTTP port (direct ingress), which nginx
proxies to: a streamed token leaves the engine's process straight for nginx. In front of vLLM's
app sits the platform's contract, the same one the ingress deployment keeps (serving.api_app):
API keys, JSON gate, request checks with OpenAI-shaped errors, admission (429 with
Retry-After), /health, /v1/models, and the count of requests whose client went away. Besides
chat and completions it passes /tokenize and /detokenize to vLLM's app; the embedding endpoints
answer that this generative model does not serve them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpucluster.serving.api_app import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    EMBEDDING_PATHS,
    TOKENIZE_PATHS,
    body_has,
    build_fastapi_app,
    check_tools,
    checked_request,
    engine_health,
    health_response,
    replaying,
    resolve_model,
    wrong_model_type,
)
from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.errors import (
    engine_error,
    engine_error_body,
    error_body,
    overloaded,
    request_id_of,
)
from gpucluster.serving.json_body import DEFAULT_MAX_BODY_BYTES
from gpucluster.serving.ray_internals import (
    DetokenizeRequest,
    ModelCard,
    ModelList,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
)
from gpucluster.serving.usage_report import usage_forced, with_usage
from gpucluster.serving.validation import parse_body


@dataclass(frozen=True)
class AdmissionLimits:
    """A model replica's admission (config.AdmissionSettings, resolved): requests running at
    once, requests waiting beyond them (-1: unbounded), and the Retry-After of a refusal."""

    max_ongoing: int
    max_queued: int
    retry_after_s: int


class Admission:
    """Bounds the generation requests of one replica; a full replica answers 429 at once.

    Done here rather than by Serve's replica admission, which counts every HTTP request: a
    full model must still answer /health and /v1/models.
    """

    status_code = 429

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._running = asyncio.Semaphore(limits.max_ongoing)
        self._queued = 0

    @property
    def retry_after_s(self) -> int:
        """What errors.overloaded reads for the refusal's Retry-After."""
        return self.limits.retry_after_s

    @asynccontextmanager
    async def slot(self, model_id: str) -> AsyncIterator[None]:
        """Hold one running place for the block; ApiError 429 when none is free or queued."""
        queue = self.limits.max_queued
        if self._running.locked() and queue != -1 and self._queued >= queue:
            raise overloaded(model_id, self)
        self._queued += 1
        try:
            await self._running.acquire()
        finally:
            self._queued -= 1
        try:
            yield
        finally:
            self._running.release()


class CheckedGeneration:
    """ASGI endpoint: checks a chat or completion request, then hands it to vLLM's app.

    The body read for the checks is replayed to vLLM's app (a stream asking for its usage, see
    serving.usage_report); its errors reach the
    client in the platform's shape (EngineAnswer). A request that ends before its answer was
    complete (client gone: Serve cancels it, or vLLM's stream stops on the disconnect) calls
    `on_abort`.
    """

    def __init__(
        self,
        engine_app: ASGIApp,
        *,
        chat: bool,
        model_id: str,
        context_len: int | None,
        admission: Admission,
        on_abort: Callable[[], None],
        parses_tools: bool = False,
    ) -> None:
        self.engine_app = engine_app
        self.chat = chat
        self.model_id = model_id
        self.context_len = context_len
        self.admission = admission
        self.on_abort = on_abort
        self.parses_tools = parses_tools

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        parsed, _ = await checked_request(
            request, self.chat, [self.model_id], lambda _: self.context_len
        )
        check_tools(parsed, self.model_id, self.parses_tools)
        raw = await request.body()
        if usage_forced(parsed, scope.setdefault("state", {})):
            body = json.loads(raw)
            body["stream_options"] = with_usage(body.get("stream_options"))
            raw = json.dumps(body).encode()
        answer = EngineAnswer(send, scope["path"], request_id_of(request))
        replay = replaying(raw, receive)
        try:
            async with self.admission.slot(self.model_id):
                await self.engine_app(scope, replay, answer.send)
        except asyncio.CancelledError:
            if not answer.finished:
                self.on_abort()
            raise
        if answer.started and not answer.finished:
            self.on_abort()


class CheckedPassthrough:
    """ASGI endpoint for vLLM's other routes (/tokenize, /detokenize): the body parsed and its
    model resolved as for a generation, then handed to vLLM's app as it came, its errors in the
    platform's shape. No admission: these do not run the engine."""

    def __init__(self, engine_app: ASGIApp, *, model_id: str, kinds: tuple[type, type]) -> None:
        self.engine_app = engine_app
        self.model_id = model_id
        self.plain, self.with_messages = kinds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        raw = await request.body()
        chat = await body_has(request, "messages")
        body = await parse_body(request, self.with_messages if chat else self.plain)
        resolve_model(body.model, [self.model_id])
        answer = EngineAnswer(send, scope["path"], request_id_of(request))
        await self.engine_app(scope, replaying(raw, receive), answer.send)


ERROR_EVENT = b'data: {"error"'


class EngineAnswer:
    """Passes vLLM's answer on, in the platform's error shape where vLLM's own differs: an
    error response (buffered, it is small) or an SSE error event. A stream whose first event
    is an error (vLLM checks some parameters only once it streams) becomes that error's
    response, a 4xx rather than a 200 carrying it: the stream's start waits for its first
    event. Notes whether the answer started and finished."""

    def __init__(self, send: Send, path: str, request_id: str) -> None:
        self._send = send
        self._path = path
        self._request_id = request_id
        self._error_start: Message | None = None
        self._error_body = b""
        self._stream_start: Message | None = None
        self.started = self.finished = False

    async def send(self, message: Message) -> None:
        if self.finished:
            return  # what follows an error answered in place of its stream
        if message["type"] == "http.response.start":
            self.started = True
            if message["status"] >= 400:
                self._error_start = message
                return
            if _is_event_stream(message):
                self._stream_start = message
                return
        elif message["type"] == "http.response.body":
            more = message.get("more_body", False)
            if self._error_start is not None:
                self._error_body += message.get("body", b"")
                if not more:
                    await self._send_error()
                return
            chunk = message.get("body", b"")
            if self._stream_start is not None:
                start, self._stream_start = self._stream_start, None
                if chunk.startswith(ERROR_EVENT):
                    self._error_start = start
                    self._error_body = chunk.partition(b"\n\n")[0][len(b"data: ") :]
                    await self._send_error()
                    return
                await self._send(start)
            if chunk.startswith(ERROR_EVENT):
                message = {**message, "body": self._error_event(chunk)}
            self.finished = not more
        await self._send(message)

    async def _send_error(self) -> None:
        start = self._error_start
        status = start["status"] if start["status"] >= 400 else 500
        error = engine_error(status, self._error_body, self._path, self._request_id)
        body = json.dumps(error_body(error.message, error.error_type, error.param, error.code))
        headers = [
            (k, v)
            for k, v in start.get("headers", [])
            if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await self._send({**start, "status": error.status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body.encode()})
        self.finished = True

    def _error_event(self, chunk: bytes) -> bytes:
        event, separator, rest = chunk.partition(b"\n\n")
        body = engine_error_body(500, event[len(b"data: ") :], self._path, self._request_id)
        return b"data: " + json.dumps(body).encode() + separator + rest


def _is_event_stream(start: Message) -> bool:
    headers = dict(start.get("headers", []))
    return headers.get(b"content-type", b"").startswith(b"text/event-stream")


def build_direct_app(
    engine_app: ASGIApp,
    *,
    api_keys: ApiKeys,
    usage_url: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    card: ModelCard,
    limits: AdmissionLimits,
    check_health: Callable[[], Awaitable[Any]],
    on_abort: Callable[[], None],
    parses_tools: bool = False,
) -> FastAPI:
    """The replica's HTTP app: the platform's API in front of vLLM's `engine_app`
    (`parses_tools`: the engine has a tool-call parser)."""
    app = build_fastapi_app(api_keys, usage_url, max_body_bytes)
    admission = Admission(limits)
    model_id = card.id
    context_len = card.metadata.get("max_request_context_length")

    @app.get("/health")
    async def health() -> Any:
        return health_response({model_id: await engine_health(check_health)})

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[card])

    @app.get("/v1/models/{model:path}")
    async def model_data(model: str) -> ModelCard:
        resolve_model(model, [model_id])
        return card

    for path, chat in ((CHAT_PATH, True), (COMPLETIONS_PATH, False)):
        endpoint = CheckedGeneration(
            engine_app,
            chat=chat,
            model_id=model_id,
            context_len=context_len,
            admission=admission,
            on_abort=on_abort,
            parses_tools=parses_tools,
        )
        app.router.add_route(path, endpoint, methods=["POST"])
    tokenizing = {
        TOKENIZE_PATHS[0]: (TokenizeCompletionRequest, TokenizeChatRequest),
        TOKENIZE_PATHS[1]: (DetokenizeRequest, DetokenizeRequest),
    }
    for path, kinds in tokenizing.items():
        passthrough = CheckedPassthrough(engine_app, model_id=model_id, kinds=kinds)
        app.router.add_route(path, passthrough, methods=["POST"])

    async def embedding_only(request: Request) -> Any:
        raise wrong_model_type(model_id, embeds=False)

    for path in EMBEDDING_PATHS:
        app.router.add_route(path, embedding_only, methods=["POST"])
    return app
