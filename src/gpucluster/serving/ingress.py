"""The OpenAI-compatible ingress: Ray Serve LLM's router with our error contract and /health.

Thin handlers: validate and resolve the model before the first byte, then hand the request to
the model's LLM deployment through Ray Serve LLM's OpenAiIngress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from fastapi import Request
from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress, make_fastapi_ingress
from ray.serve.exceptions import BackPressureError
from starlette.responses import JSONResponse, Response

from gpucluster.config.keys import KeySources
from gpucluster.serving.api_app import (
    build_fastapi_app,
    checked_request,
    engine_health,
    health_response,
    resolve_model,
    with_sse_errors,
)
from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.errors import overloaded
from gpucluster.serving.usage_report import usage_forced, with_usage

logger = logging.getLogger("ray.serve")

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
        return resolve_model(model, list(self._model_cards))

    async def model_data(self, model: str) -> Any:
        if model not in self._model_cards:
            await self._get_model_id(model)
        return self._model_cards[model]

    async def chat(self, request: Request) -> Response:
        body, model_id = await self._checked(request, chat=True)
        return await self._answer(model_id, super().chat(body, request), request)

    async def completions(self, request: Request) -> Response:
        body, model_id = await self._checked(request, chat=False)
        return await self._answer(model_id, super().completions(body, request), request)

    async def _checked(self, request: Request, chat: bool) -> tuple[Any, str]:
        """The checked request, asking the engine for a stream's usage (serving.usage_report)."""
        body, model_id = await checked_request(
            request, chat, list(self._model_cards), self._context_len
        )
        if usage_forced(body, request.scope.setdefault("state", {})):
            body = type(body).model_validate(
                {**body.model_dump(exclude_unset=True),
                 "stream_options": with_usage(body.stream_options)}
            )
        return body, model_id

    async def _answer(self, model_id: str, reply: Awaitable[Response], request: Request) -> Response:
        """The model's reply; a full model is a 429, a stream failing midway an SSE error."""
        try:
            return with_sse_errors(await reply, request)
        except BackPressureError as exc:
            raise overloaded(model_id, exc) from None

    async def health(self) -> JSONResponse:
        """200 when every model's engine answers its health check, else 503 naming the failures."""
        handles = self._default_serve_handles
        names = list(handles)
        results = await asyncio.gather(
            *(engine_health(lambda name=name: handles[name].check_health.remote()) for name in names)
        )
        return health_response(dict(zip(names, results, strict=True)))


def make_ingress_class(keys: KeySources, usage_url: str | None = None) -> type:
    """PlatformIngress bound to a new FastAPI app as a Serve ingress class."""
    app = build_fastapi_app(ApiKeys.of(keys), usage_url)
    return make_fastapi_ingress(PlatformIngress, endpoint_map=ENDPOINTS, app=app)
