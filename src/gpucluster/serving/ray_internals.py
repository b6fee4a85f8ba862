"""The names the platform takes from Ray's private modules, all here and only here.

Ray's public Serve LLM API (`ray.serve.llm`: LLMConfig, LLMServer, build_llm_deployment,
`ray.serve.llm.ingress`, `ray.serve.llm.openai_api_models`) is used wherever it has the piece;
what it lacks comes from the private modules below, which a Ray release may move or change
without notice. tests/unit/serving/test_ray_internals.py pins what the platform relies on of
each (its value, fields, signature), so that a Ray upgrade that changes one fails there first,
naming it; tests/unit/test_layering.py keeps every other module off Ray's private modules.

All are as in Ray 2.60.0 (requirements/cpu.lock), the version they were checked against. The
`ray.llm._internal.serve.core.*` paths date from Ray Serve LLM's re-layout of its code
(ray-project/ray#57760, late 2025); before it they lived under `ray.llm._internal.serve.configs`
and `.deployments`.

From `ray._common.constants`:

- HEAD_NODE_RESOURCE_NAME (`"node:__internal_head__"`): the custom resource only the head node
  has. The ingress asks for a sliver of it, so it runs on the head beside Serve's only HTTP
  proxy and the API key files (serving.app). Ray has no public name for it.

From `ray.llm._internal.serve.core.configs.openai_api_models`, Ray Serve LLM's wrappers of
vLLM's OpenAI protocol models (the public `ray.serve.llm.openai_api_models` has only the chat,
completion, embedding-response, transcription and error models, as subclasses):

- ModelCard, ModelList, to_model_metadata: the /v1/models answer. `to_model_metadata(id,
  llm_config)` is the card Ray's ingress is built with (serving.app) and the direct replica
  serves (serving.llm_server); the platform reads `metadata["max_request_context_length"]`
  (the engine's max_model_len) to refuse over-long prompts before the engine sees them, and
  builds adapters' cards from a base card's fields (serving.ingress).
- ErrorResponse, ErrorInfo: the error Ray's LLMServer yields instead of an answer; the
  platform's LLM server yields the same for /rerank and the ingress checks for it
  (`isinstance`: the public ErrorResponse is a subclass, which Ray's own instances are not).
- OpenAIHTTPException(status_code, message, type): what Ray's ingress raises for a client
  error; serving.ingress raises it too for /rerank, and serving.errors reads its
  `status_code` and `message`.
- EmbeddingChatRequest, EmbeddingCompletionRequest, ScoreRequest, TokenizeChatRequest,
  TokenizeCompletionRequest, DetokenizeRequest: the bodies of /v1/embeddings, /v1/score,
  /tokenize and /detokenize, parsed by the platform (their `model` resolved) before Ray's
  ingress methods take them.

From `ray.llm._internal.serve.core.configs.llm_config` and `ray.llm._internal.common.models`:

- DiskMultiplexConfig(model_id, max_total_tokens, local_path, lora_assigned_int_id): what a
  LoRA loader returns to Ray's LLMServer for an adapter (serving.adapters' local loader).
- global_id_manager: the process-wide counter (`.next()`) Ray numbers loaded adapters with;
  vLLM needs each adapter's int id unique, so the platform's loader draws from the same one.
"""

from __future__ import annotations

from ray._common.constants import HEAD_NODE_RESOURCE_NAME
from ray.llm._internal.common.models import global_id_manager
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
from ray.llm._internal.serve.core.configs.openai_api_models import (
    DetokenizeRequest,
    EmbeddingChatRequest,
    EmbeddingCompletionRequest,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    OpenAIHTTPException,
    ScoreRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
    to_model_metadata,
)

__all__ = [
    "HEAD_NODE_RESOURCE_NAME",
    "DetokenizeRequest",
    "DiskMultiplexConfig",
    "EmbeddingChatRequest",
    "EmbeddingCompletionRequest",
    "ErrorInfo",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "OpenAIHTTPException",
    "ScoreRequest",
    "TokenizeChatRequest",
    "TokenizeCompletionRequest",
    "global_id_manager",
    "to_model_metadata",
]
