"""What the platform relies on of Ray's private names (serving/ray_internals.py) and of the
private hooks of Ray Serve LLM's public classes it overrides, pinned: a Ray upgrade that moves
or changes one fails here first, saying which (no Ray cluster needed)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
import typing
from typing import Any

import pytest
import ray.llm._internal.serve.core.ingress.ingress as ray_ingress
from pydantic import BaseModel
from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine
from ray.serve.llm import LLMConfig, LLMServer
from ray.serve.llm import openai_api_models as public_models
from ray.serve.llm.ingress import OpenAiIngress

from gpucluster.config import BUILTIN_MODEL_ID, ModelConfig
from gpucluster.serving import ray_internals
from gpucluster.serving.adapters import LocalAdapterLoader
from gpucluster.serving.api_app import ChatCompletionRequest, CompletionRequest
from gpucluster.serving.app import llm_config
from gpucluster.serving.ray_internals import (
    HEAD_NODE_RESOURCE_NAME,
    DiskMultiplexConfig,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    OpenAIHTTPException,
    global_id_manager,
    to_model_metadata,
)
from gpucluster.serving.vllm_protocol import RerankRequest, VLLMErrorResponse


def test_every_name_the_docstring_explains_is_exported_and_explained():
    doc = ray_internals.__doc__ or ""
    assert ray_internals.__all__, "nothing exported"
    assert [name for name in ray_internals.__all__ if name not in doc] == []
    assert all(hasattr(ray_internals, name) for name in ray_internals.__all__)


def test_the_head_node_resource_is_the_one_ray_gives_the_head():
    # The ingress's resource request (serving.app) schedules it on the head node only.
    assert HEAD_NODE_RESOURCE_NAME == "node:__internal_head__"


def test_a_model_card_carries_the_context_length_the_platform_checks_prompts_against():
    config = LLMConfig(
        model_loading_config={"model_id": "m", "model_source": "/m"},
        engine_kwargs={"max_model_len": 512},
    )
    card = to_model_metadata("m", config)
    assert isinstance(card, ModelCard)
    assert (card.id, card.object) == ("m", "model")
    assert card.metadata["max_request_context_length"] == 512
    # An adapter's card is built from the base card's fields (serving.ingress._card).
    adapter = ModelCard(
        id="m:a",
        object="model",
        owned_by=card.owned_by,
        permission=[],
        metadata={**card.metadata, "base_model": card.id},
    )
    listed = ModelList(data=[card, adapter]).model_dump()
    assert listed["object"] == "list"
    assert [entry["id"] for entry in listed["data"]] == ["m", "m:a"]


def test_the_error_the_llm_server_yields_takes_vllms_error_fields():
    vllm_error = VLLMErrorResponse(
        error={"message": "too long", "type": "BadRequestError", "code": 400}
    )
    # serving.llm_server: ErrorResponse(error=ErrorInfo(**vllm_error.error.model_dump()))
    converted = ErrorResponse(error=ErrorInfo(**vllm_error.error.model_dump()))
    assert (converted.error.code, converted.error.message) == (400, "too long")
    made = ErrorResponse(
        error=ErrorInfo(message="no rerank", type="invalid_request_error", code=400)
    )
    assert made.error.type == "invalid_request_error"
    # The public ErrorResponse subclasses this one: Ray's own instances pass the ingress's check.
    assert issubclass(public_models.ErrorResponse, ErrorResponse)


def test_rays_http_exception_carries_what_the_error_mapping_reads():
    exc = OpenAIHTTPException(404, "no such model", "NotFoundError")
    assert (exc.status_code, exc.message, exc.type) == (404, "no such model", "NotFoundError")
    params = list(inspect.signature(OpenAIHTTPException).parameters)
    assert params[:3] == ["status_code", "message", "type"]  # positional in serving.ingress


@pytest.mark.parametrize(
    "name",
    [
        "EmbeddingChatRequest",
        "EmbeddingCompletionRequest",
        "ScoreRequest",
        "TokenizeChatRequest",
        "TokenizeCompletionRequest",
        "DetokenizeRequest",
    ],
)
def test_the_bodies_the_platform_parses_name_their_model(name):
    kind = getattr(ray_internals, name)
    assert issubclass(kind, BaseModel)
    assert "model" in kind.model_fields  # resolved by the ingress before Ray's method runs


@pytest.mark.parametrize(
    ("method", "kinds"),
    [
        ("embeddings", {"EmbeddingCompletionRequest", "EmbeddingChatRequest"}),
        ("score", {"ScoreRequest"}),
        ("tokenize", {"TokenizeCompletionRequest"}),
        ("detokenize", {"DetokenizeRequest"}),
    ],
)
def test_rays_ingress_methods_take_the_bodies_the_platform_parses(method, kinds):
    annotation = inspect.signature(getattr(OpenAiIngress, method)).parameters["body"].annotation
    taken = set(typing.get_args(annotation)) or {annotation}
    assert taken == {getattr(ray_internals, kind) for kind in kinds}


def test_the_public_request_models_are_what_rays_ingress_checks_for():
    # serving.api_app parses chat and completion bodies into the public classes; Ray's ingress
    # tells them apart with isinstance on its own.
    assert issubclass(ChatCompletionRequest, ray_ingress.ChatCompletionRequest)
    assert issubclass(CompletionRequest, ray_ingress.CompletionRequest)
    assert ChatCompletionRequest.__module__ == "ray.serve.llm.openai_api_models"
    assert issubclass(RerankRequest, BaseModel) and "model" in RerankRequest.model_fields


def test_an_adapter_is_handed_to_ray_as_a_disk_multiplex_config():
    fields = {"model_id", "max_total_tokens", "local_path", "lora_assigned_int_id"}
    assert fields <= set(DiskMultiplexConfig.model_fields)
    first, second = global_id_manager.next(), global_id_manager.next()
    assert isinstance(first, int) and second > first


def _calls_in(function: Any, callee: str) -> list[ast.Call]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == callee or getattr(node.func, "attr", None) == callee)
    ]


def test_ray_builds_and_calls_the_adapter_loader_the_way_the_local_one_takes(tmp_path):
    """LLMServer._init_multiplex_loader(model_downloader_cls) makes the loader and calls its
    load_model_from_config; the platform's override passes LocalAdapterLoader."""
    hook = LLMServer._init_multiplex_loader
    assert "model_downloader_cls" in inspect.signature(hook).parameters
    (make,) = _calls_in(hook, "model_downloader_cls")
    (load,) = _calls_in(hook, "load_model_from_config")
    make_kwargs = {keyword.arg: None for keyword in make.keywords}
    loader = LocalAdapterLoader(**make_kwargs)  # Ray's keywords bind to our signature
    load_kwargs = [keyword.arg for keyword in load.keywords]
    assert not make.args and not load.args and load_kwargs == ["lora_model_id", "llm_config"]
    model = ModelConfig(lora={"adapters": {"pirate": str(tmp_path)}})
    config = llm_config(
        model, {BUILTIN_MODEL_ID: "/m", f"{BUILTIN_MODEL_ID}:pirate": str(tmp_path)}
    )
    loaded = asyncio.run(
        loader.load_model_from_config(lora_model_id=f"{BUILTIN_MODEL_ID}:pirate", llm_config=config)
    )
    assert isinstance(loaded, DiskMultiplexConfig) and loaded.local_path == str(tmp_path)


def test_the_llm_server_hooks_the_platform_overrides_are_there():
    # serving.llm_server overrides these and calls super() on them.
    for name in (
        "start",
        "_start_engine",
        "_init_multiplex_loader",
        "__serve_build_asgi_app__",
        "chat",
        "completions",
        "check_health",
    ):
        assert callable(getattr(LLMServer, name, None)), name
    assert list(inspect.signature(LLMServer._start_engine).parameters) == ["self"]
    # What the platform reads of the vLLM engine object (serving.llm_server): its client (the
    # engine's stat loggers), its scoring handler (/rerank), its app state and tokenizer service
    # (the tokenizer's name Ray 2.60 looks up under the old name).
    source = inspect.getsource(VLLMEngine)
    for attribute in (
        "_engine_client",
        "_oai_serving_scores",
        "_oai_serving_tokenization",
        "_app_state",
    ):
        assert f"self.{attribute}" in source, attribute


def test_the_ingress_internals_the_platform_ingress_uses_are_there():
    init = inspect.getsource(ray_ingress.OpenAiIngress.__init__)
    for attribute in ("_default_serve_handles", "_model_cards"):
        assert f"self.{attribute}" in init, attribute
    handle = inspect.signature(OpenAiIngress._get_configured_serve_handle)
    assert list(handle.parameters) == ["self", "model_id"]
    assert list(inspect.signature(OpenAiIngress._get_model_id).parameters) == ["self", "model"]
    for name in ("chat", "completions", "embeddings", "score", "tokenize", "detokenize"):
        params = list(inspect.signature(getattr(OpenAiIngress, name)).parameters)
        assert params[:3] == ["self", "body", "request"], name  # super().<name>(body, request)
    assert "llm_configs" in inspect.signature(OpenAiIngress.get_deployment_options).parameters
