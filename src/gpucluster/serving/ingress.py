"""The OpenAI-compatible ingress: Ray Serve LLM's router with our error contract and /health.

Thin handlers: validate and resolve the model before the first byte, then hand the request to
the model's LLM deployment through Ray Serve LLM's OpenAiIngress.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
)
from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress, make_fastapi_ingress
from starlette.responses import JSONResponse, Response

from gpucluster.serving.errors import (
    ApiError,
    error_body,
    install_error_handlers,
)

logger = logging.getLogger("ray.serve")

HEALTH_CHECK_TIMEOUT_S = 5.0

ENDPOINTS = {
    "models": lambda app: app.get("/v1/models"),
    "model_data": lambda app: app.get("/v1/models/{model:path}"),
    "completions": lambda app: app.post("/v1/completions"),
    "chat": lambda app: app.post("/v1/chat/completions"),
    "health": lambda app: app.get("/health"),
}


def _check_token_limits(body: ChatCompletionRequest | CompletionRequest) -> None:
    for param in ("max_tokens", "max_completion_tokens"):
        value = getattr(body, param, None)
        if value is not None and value < 1:
            raise ApiError(
                400,
                f"Invalid value for '{param}': {value}. It must be at least 1.",
                param=param,
                code="invalid_parameter",
            )


class PlatformIngress(OpenAiIngress):
    """OpenAI API front of the platform: one per application, routing to model deployments."""

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

    async def chat(self, body: ChatCompletionRequest, request: Request) -> Response:
        _check_token_limits(body)
        await self._get_model_id(body.model)
        return await super().chat(body, request)

    async def completions(self, body: CompletionRequest, request: Request) -> Response:
        _check_token_limits(body)
        await self._get_model_id(body.model)
        return await super().completions(body, request)

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


def build_fastapi_app() -> FastAPI:
    """A fresh FastAPI app with the platform's error contract installed."""
    app = FastAPI(title="gpu-cluster OpenAI API", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    return app


def make_ingress_class() -> type:
    """PlatformIngress bound to a new FastAPI app as a Serve ingress class."""
    return make_fastapi_ingress(PlatformIngress, endpoint_map=ENDPOINTS, app=build_fastapi_app())
