"""The OpenAI-compatible ingress: Ray Serve LLM's router with our error contract and /health.

Thin handlers: validate and resolve the model before the first byte, then hand the request to
the model's LLM deployment through Ray Serve LLM's OpenAiIngress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, ClassVar

from fastapi import Request
from ray.serve.exceptions import BackPressureError
from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress
from starlette.responses import JSONResponse, Response

from gpucluster.config.keys import KeySources
from gpucluster.serving.adapters import available
from gpucluster.serving.api_app import (
    body_has,
    build_fastapi_app,
    check_tools,
    checked_request,
    engine_health,
    health_response,
    resolve_model,
    with_sse_errors,
    wrong_model_type,
)
from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.errors import overloaded
from gpucluster.serving.json_body import DEFAULT_MAX_BODY_BYTES
from gpucluster.serving.ray_internals import (
    DetokenizeRequest,
    EmbeddingChatRequest,
    EmbeddingCompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
    OpenAIHTTPException,
    ScoreRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
)
from gpucluster.serving.usage_report import MODEL, usage_forced, with_usage
from gpucluster.serving.validation import check_pooling, parse_body
from gpucluster.serving.vllm_protocol import RerankRequest

logger = logging.getLogger("ray.serve")

ENDPOINTS = {
    "models": lambda app: app.get("/v1/models"),
    "model_data": lambda app: app.get("/v1/models/{model:path}"),
    "completions": lambda app: app.post("/v1/completions"),
    "chat": lambda app: app.post("/v1/chat/completions"),
    "embeddings": lambda app: app.post("/v1/embeddings"),
    "score": lambda app: app.post("/v1/score"),
    "rerank": lambda app: app.post("/v1/rerank"),
    "tokenize": lambda app: app.post("/tokenize"),
    "detokenize": lambda app: app.post("/detokenize"),
    "health": lambda app: app.get("/health"),
}


class PlatformIngress(OpenAiIngress):
    """OpenAI API front of the platform: one per application, routing to model deployments.

    API keys are checked by the app's middleware (see `build_fastapi_app`) before any body is
    read, here in the ingress rather than only at nginx, so that a request reaching Serve
    directly is refused too.
    """

    # Set by make_ingress_class: each base model's adapter table (serving.adapters), the ids
    # of the embedding models and of the models with a tool-call parser.
    adapter_tables: ClassVar[dict[str, dict[str, Any]]] = {}
    embedding_models: ClassVar[frozenset[str]] = frozenset()
    tool_models: ClassVar[frozenset[str]] = frozenset()

    def _adapters(self) -> dict[str, str]:
        """Adapter model id (`<base>:<name>`) -> its base model id, as the directories are now."""
        return {
            f"{base}:{name}": base
            for base, table in self.adapter_tables.items()
            for name in available(table)
        }

    def _served(self) -> list[str]:
        return [*self._model_cards, *self._adapters()]

    def _base(self, model_id: str) -> str:
        return self._adapters().get(model_id, model_id)

    def _context_len(self, model_id: str) -> int | None:
        card = self._model_cards[self._base(model_id)]
        return card.metadata.get("max_request_context_length")

    async def _get_model_id(self, model: str | None) -> str:
        return resolve_model(model, self._served())

    def _card(self, model_id: str) -> ModelCard:
        if model_id in self._model_cards:
            return self._model_cards[model_id]
        base = self._model_cards[self._base(model_id)]
        return ModelCard(
            id=model_id,
            object="model",
            owned_by=base.owned_by,
            permission=[],
            metadata={**base.metadata, "base_model": base.id},
        )

    async def models(self) -> ModelList:
        """The served models, then each LoRA adapter as `<base>:<name>` (metadata.base_model)."""
        return ModelList(data=[self._card(model_id) for model_id in self._served()])

    async def model_data(self, model: str) -> Any:
        return self._card(await self._get_model_id(model))

    def _require(self, model_id: str, embedding: bool) -> None:
        """A 400 when the model is not of the kind (`embedding` or not) this endpoint needs."""
        embeds = self._base(model_id) in self.embedding_models
        if embeds != embedding:
            raise wrong_model_type(model_id, embeds)

    async def chat(self, request: Request) -> Response:
        body, model_id = await self._checked(request, chat=True)
        return await self._answer(model_id, super().chat(body, request), request)

    async def completions(self, request: Request) -> Response:
        body, model_id = await self._checked(request, chat=False)
        return await self._answer(model_id, super().completions(body, request), request)

    async def embeddings(self, request: Request) -> Response:
        kind = (
            EmbeddingChatRequest
            if await body_has(request, "messages")
            else EmbeddingCompletionRequest
        )
        body = await self._pooling_body(request, kind, embedding=True)
        return await self._answer(body.model, super().embeddings(body, request), request)

    async def score(self, request: Request) -> Response:
        body = await self._pooling_body(request, ScoreRequest, embedding=True)
        return await self._answer(body.model, super().score(body, request), request)

    async def rerank(self, request: Request) -> Response:
        """vLLM's /rerank (Jina's API): Ray Serve LLM's ingress has no route for it."""
        body = await self._pooling_body(request, RerankRequest, embedding=True)
        return await self._answer(body.model, self._rerank(body), request)

    async def _rerank(self, body: RerankRequest) -> Response:
        handle = self._get_configured_serve_handle(body.model)
        result = await anext(handle.rerank.remote(body))
        if isinstance(result, ErrorResponse):
            error = result.error
            raise OpenAIHTTPException(error.code, error.message, error.type)
        return JSONResponse(result)

    async def tokenize(self, request: Request) -> Response:
        kind = (
            TokenizeChatRequest
            if await body_has(request, "messages")
            else TokenizeCompletionRequest
        )
        body = await self._pooling_body(request, kind)
        return await self._answer(body.model, super().tokenize(body, request), request)

    async def detokenize(self, request: Request) -> Response:
        body = await self._pooling_body(request, DetokenizeRequest)
        return await self._answer(body.model, super().detokenize(body, request), request)

    async def _pooling_body(
        self, request: Request, kind: type, *, embedding: bool | None = None
    ) -> Any:
        """The parsed body of a request that is not a generation, its `model` resolved (and an
        embedding model or not, unless `embedding` is None: tokenizing takes either)."""
        body = await parse_body(request, kind)
        body.model = await self._get_model_id(body.model)
        setattr(request.state, MODEL, body.model)  # for the usage report
        if embedding is not None:
            self._require(body.model, embedding)
        if embedding:
            check_pooling(body)
        return body

    async def _checked(self, request: Request, chat: bool) -> tuple[Any, str]:
        """The checked request, asking the engine for a stream's usage (serving.usage_report)."""
        body, model_id = await checked_request(request, chat, self._served(), self._context_len)
        self._require(model_id, embedding=False)
        check_tools(body, model_id, self._base(model_id) in self.tool_models)
        if usage_forced(body, request.scope.setdefault("state", {})):
            body = type(body).model_validate(
                {
                    **body.model_dump(exclude_unset=True),
                    "stream_options": with_usage(body.stream_options),
                }
            )
        return body, model_id

    async def _answer(
        self, model_id: str, reply: Awaitable[Response], request: Request
    ) -> Response:
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
            *(
                engine_health(lambda name=name: handles[name].check_health.remote())
                for name in names
            )
        )
        return health_response(dict(zip(names, results, strict=True)))


def make_ingress_class(
    keys: KeySources,
    usage_url: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    adapter_tables: dict[str, dict[str, Any]] | None = None,
    embedding_models: frozenset[str] = frozenset(),
    tool_models: frozenset[str] = frozenset(),
) -> type:
    """PlatformIngress bound to a new FastAPI app (reading bodies up to `max_body_bytes`) as a
    Serve ingress class, knowing each base model's adapters, which models embed and which parse
    tool calls."""
    app = build_fastapi_app(ApiKeys.of(keys), usage_url, max_body_bytes)
    attributes = {
        "adapter_tables": adapter_tables or {},
        "embedding_models": embedding_models,
        "tool_models": tool_models,
    }
    cls = type("PlatformIngress", (PlatformIngress,), attributes)
    return make_fastapi_ingress(cls, endpoint_map=ENDPOINTS, app=app)
