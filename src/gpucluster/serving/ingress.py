"""The OpenAI-compatible ingress: Ray Serve LLM's router with our error contract and /health.

Thin handlers: validate and resolve the model before the first byte, then hand the request to
the model's LLM deployment through Ray Serve LLM's OpenAiIngress.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import FastAPI, Request
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
)
from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress, make_fastapi_ingress
from ray.serve.exceptions import BackPressureError
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.errors import (
    ApiError,
    error_body,
    error_response,
    install_error_handlers,
    overloaded,
    request_id_of,
    unexpected_error,
)
from gpucluster.serving.validation import check_chat, check_completion, parse_body

logger = logging.getLogger("ray.serve")

HEALTH_CHECK_TIMEOUT_S = 5.0

ENDPOINTS = {
    "models": lambda app: app.get("/v1/models"),
    "model_data": lambda app: app.get("/v1/models/{model:path}"),
    "completions": lambda app: app.post("/v1/completions"),
    "chat": lambda app: app.post("/v1/chat/completions"),
    "health": lambda app: app.get("/health"),
}


class PlatformIngress(OpenAiIngress):
    """OpenAI API front of the platform: one per application, routing to model deployments.

    API keys are checked by the app's middleware (see `build_fastapi_app`) before any body is
    read, here in the ingress rather than only at nginx, so that a request reaching Serve
    directly is refused too.
    """

    def _context_len(self, model_id: str) -> int | None:
        return self._model_cards[model_id].metadata.get("max_request_context_length")

    async def _get_model_id(self, model: str | None) -> str:
        if model is None and len(self._model_cards) == 1:
            return next(iter(self._model_cards))
        if model is None:
            raise ApiError(400, "The 'model' parameter is required.", param="model")
        if model not in self._model_cards:
            available = ", ".join(sorted(self._model_cards))
            raise ApiError(
                404,
                f"The model '{model}' does not exist. Available models: {available}.",
                param="model",
                code="model_not_found",
            )
        return model

    async def model_data(self, model: str) -> Any:
        if model not in self._model_cards:
            await self._get_model_id(model)
        return self._model_cards[model]

    async def chat(self, request: Request) -> Response:
        body = await parse_body(request, ChatCompletionRequest)
        model_id = await self._get_model_id(body.model)
        check_chat(body, self._context_len(model_id))
        return await self._answer(model_id, super().chat(body, request), request)

    async def completions(self, request: Request) -> Response:
        body = await parse_body(request, CompletionRequest)
        model_id = await self._get_model_id(body.model)
        check_completion(body, self._context_len(model_id))
        return await self._answer(model_id, super().completions(body, request), request)

    async def _answer(self, model_id: str, reply: Awaitable[Response], request: Request) -> Response:
        """The model's reply; a full model is a 429, a stream failing midway an SSE error."""
        try:
            return with_sse_errors(await reply, request)
        except BackPressureError as exc:
            raise overloaded(model_id, exc) from None

    async def health(self) -> JSONResponse:
        """200 when every model's engine answers its health check, else 503 naming the failures."""
        names = list(self._default_serve_handles)
        results = await asyncio.gather(*(self._model_health(name) for name in names))
        models = dict(zip(names, results, strict=True))
        failing = {name: state for name, state in models.items() if state != "ok"}
        if not failing:
            return JSONResponse({"status": "ok", "models": models})
        reasons = "; ".join(f"{name}: {state}" for name, state in failing.items())
        body = error_body(f"Models not ready: {reasons}", "server_error", code="unhealthy")
        body["status"] = "unhealthy"
        body["models"] = models
        return JSONResponse(body, status_code=503)

    async def _model_health(self, model_id: str) -> str:
        handle = self._default_serve_handles[model_id]
        try:
            await asyncio.wait_for(handle.check_health.remote(), HEALTH_CHECK_TIMEOUT_S)
        except asyncio.TimeoutError:
            return f"engine health check timed out after {HEALTH_CHECK_TIMEOUT_S:.0f} s"
        except Exception as exc:  # noqa: BLE001 - reported to the caller, not raised
            return f"engine health check failed ({type(exc).__name__})"
        return "ok"


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
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = dict(scope.get("headers", []))
            authorization = headers.get(b"authorization", b"").decode("latin-1") or None
            try:
                self.api_keys.check(authorization)
            except ApiError as exc:
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class JsonBodyMiddleware:
    """Refuses POST bodies that are not declared JSON (415), before FastAPI reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope.get("headers", []))
            content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
            if content_type.split(";")[0].strip() != "application/json":
                error = ApiError(
                    415,
                    "The request body must be JSON, sent with 'Content-Type: application/json'.",
                    code="unsupported_media_type",
                    error_type="invalid_request_error",
                )
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_fastapi_app(api_keys: ApiKeys) -> FastAPI:
    """A fresh FastAPI app with the platform's error contract and request gates installed."""
    app = FastAPI(title="gpu-cluster OpenAI API", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(ApiKeyMiddleware, api_keys=api_keys)  # outermost: keys first
    return app


def make_ingress_class(api_key_files: list[str]) -> type:
    """PlatformIngress bound to a new FastAPI app as a Serve ingress class."""
    app = build_fastapi_app(ApiKeys(api_key_files))
    return make_fastapi_ingress(PlatformIngress, endpoint_map=ENDPOINTS, app=app)
