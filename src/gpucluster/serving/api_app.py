"""What every HTTP front of the platform's OpenAI API shares, whichever replica serves it.

The ingress deployment (serving.ingress) and an LLM replica serving HTTP itself
(serving.direct) both build their app here: the same API-key and JSON gates, error contract,
request checks and /health answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.errors import (
    ApiError,
    error_body,
    error_response,
    install_error_handlers,
    request_id_of,
    unexpected_error,
)
from gpucluster.serving.json_body import DEFAULT_MAX_BODY_BYTES, check_depth, load_json, too_large
from gpucluster.serving.usage_report import (
    KEY_NAME,
    MODEL,
    SettleClient,
    UsageMiddleware,
)
from gpucluster.serving.validation import check_chat, check_completion, parse_body

HEALTH_CHECK_TIMEOUT_S = 5.0

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
# vLLM serves these outside /v1; they are part of the API all the same (keys, limits).
TOKENIZE_PATHS = ("/tokenize", "/detokenize")
# What each kind of model serves (ModelConfig.embeds): a request to the other kind is a 400.
GENERATION_PATHS = (CHAT_PATH, COMPLETIONS_PATH)
EMBEDDING_PATHS = ("/v1/embeddings", "/v1/score", "/v1/rerank")


def is_api_path(path: str) -> bool:
    """Whether `path` is part of the OpenAI API (keys checked, usage counted)."""
    return path.startswith("/v1") or path in TOKENIZE_PATHS


def wrong_model_type(model_id: str, embeds: bool) -> ApiError:
    """A request to a model of the other kind: generation to an embedding model, or back."""
    kind, serves = (
        ("an embedding", EMBEDDING_PATHS) if embeds else ("a generative", GENERATION_PATHS)
    )
    return ApiError(
        400,
        f"The model '{model_id}' is {kind} model: it serves {', '.join(serves)} (and "
        f"{', '.join(TOKENIZE_PATHS)}).",
        param="model",
        code="wrong_model_type",
    )


def resolve_model(model: str | None, served: list[str]) -> str:
    """The served model a request names; no name is fine while only one model is served."""
    if model is None and len(served) == 1:
        return served[0]
    if model is None:
        raise ApiError(400, "The 'model' parameter is required.", param="model")
    if model not in served:
        raise ApiError(
            404,
            f"The model '{model}' does not exist. Available models: {', '.join(sorted(served))}.",
            param="model",
            code="model_not_found",
        )
    return model


def check_tools(body: Any, model_id: str, parses_tools: bool) -> None:
    """A request asking for tool calls from a model set up without a tool-call parser: a 400
    naming the settings, rather than vLLM's advice about its command-line flags."""
    tools = getattr(body, "tools", None)
    if tools and getattr(body, "tool_choice", None) not in (None, "none") and not parses_tools:
        raise ApiError(
            400,
            f"The model '{model_id}' is not set up for tool calls: its config needs "
            "`tool_call_parser` and `enable_auto_tool_choice: true` (and a chat template that "
            "shows the model the tools; docs/configuration.md). Send `tool_choice: none` to "
            "answer without tools.",
            param="tool_choice",
            code="tools_not_enabled",
        )


async def body_has(request: Request, field: str) -> bool:
    """Whether the JSON object body has `field` (a malformed body is parse_body's to refuse):
    which request model of an endpoint that takes two (a prompt, or chat `messages`) applies."""
    try:
        data = load_json(await request.body())
    except ApiError:
        return False
    return isinstance(data, dict) and field in data


async def checked_request(
    request: Request, chat: bool, served: list[str], context_len: Callable[[str], int | None]
) -> tuple[Any, str]:
    """The parsed chat (or completion) body of `request` and its model id, refused (ApiError,
    RequestValidationError) as the OpenAI API would refuse it, before any engine sees it."""
    body = await parse_body(request, ChatCompletionRequest if chat else CompletionRequest)
    model_id = resolve_model(body.model, served)
    setattr(request.state, MODEL, model_id)  # for the usage report
    (check_chat if chat else check_completion)(body, context_len(model_id))
    return body, model_id


async def engine_health(check: Callable[[], Awaitable[Any]]) -> str:
    """ "ok", or why one model's engine health check failed."""
    try:
        await asyncio.wait_for(check(), HEALTH_CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"engine health check timed out after {HEALTH_CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:  # noqa: BLE001 - reported to the caller, not raised
        return f"engine health check failed ({type(exc).__name__})"
    return "ok"


def health_response(models: dict[str, str]) -> JSONResponse:
    """200 when every model's engine is "ok", else 503 naming the failures."""
    failing = {name: state for name, state in models.items() if state != "ok"}
    if not failing:
        return JSONResponse({"status": "ok", "models": models})
    reasons = "; ".join(f"{name}: {state}" for name, state in failing.items())
    body = error_body(f"Models not ready: {reasons}", "server_error", code="unhealthy")
    body["status"] = "unhealthy"
    body["models"] = models
    return JSONResponse(body, status_code=503)


def with_sse_errors(response: Response, request: Request) -> Response:
    """A stream that fails after its first byte (its replica died, say) ends with an SSE error
    event in the OpenAI shape and `[DONE]`, rather than a connection cut mid-chunk."""
    if not isinstance(response, StreamingResponse):
        return response
    chunks = response.body_iterator

    async def guarded() -> AsyncIterator[Any]:
        try:
            async for chunk in chunks:
                yield chunk
        except Exception as exc:  # noqa: BLE001 - reported to the client, then logged
            error = unexpected_error(exc, request_id_of(request), request.url.path)
            body = error_body(error.message, error.error_type, error.param, error.code)
            yield f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n"

    response.body_iterator = guarded()
    return response


class ApiKeyMiddleware:
    """Refuses /v1 requests without a valid `Authorization: Bearer <key>` (401, OpenAI shape)."""

    def __init__(self, app: ASGIApp, api_keys: ApiKeys) -> None:
        self.app = app
        self.api_keys = api_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]):
            headers = dict(scope.get("headers", []))
            authorization = headers.get(b"authorization", b"").decode("latin-1") or None
            try:
                matched = self.api_keys.check(authorization)
            except ApiError as exc:
                await error_response(exc)(scope, receive, send)
                return
            if matched is not None:  # the key's name, for the usage report
                scope.setdefault("state", {})[KEY_NAME] = matched.name
        await self.app(scope, receive, send)


class JsonBodyMiddleware:
    """Refuses POST bodies that are not declared JSON (415), larger than `max_body_bytes` (413)
    or nested too deep (400), before anything parses them; the app then reads the body as sent.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            raw = await self._checked_body(scope, receive)
        except ApiError as error:
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, replaying(raw, receive), send)

    async def _checked_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = dict(scope.get("headers", []))
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if content_type.split(";")[0].strip() != "application/json":
            raise ApiError(
                415,
                "The request body must be JSON, sent with 'Content-Type: application/json'.",
                code="unsupported_media_type",
                error_type="invalid_request_error",
            )
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        check_depth(raw)
        return raw


def replaying(raw: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read body `raw` once, then the client's messages (a
    disconnect, say)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return replay


def build_fastapi_app(
    api_keys: ApiKeys, usage_url: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """A fresh FastAPI app with the platform's error contract and request gates installed;
    with `usage_url`, each /v1 request's usage is reported there (the gatekeeper's /settle);
    POST bodies up to `max_body_bytes` (the edge's limit, for callers that bypass it)."""
    app = FastAPI(title="gpu-cluster OpenAI API", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware, max_body_bytes=max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, api_keys=api_keys)  # keys before any body is read
    # Outermost: refusals by the gates above are reported too.
    app.add_middleware(UsageMiddleware, report=SettleClient(usage_url) if usage_url else None)
    return app
