"""The vLLM protocol models the platform names itself, where Ray Serve LLM has no wrapper.

Everything else of vLLM's OpenAI protocol reaches the platform through Ray Serve LLM's wrappers
(serving.ray_internals, `ray.serve.llm.openai_api_models`); the engine itself runs inside Ray's
LLMServer. tests/unit/test_layering.py keeps every other module off vllm. As in vLLM 0.29.

- RerankRequest: the body of /rerank (Jina's API, served by vLLM's scoring handler), parsed by
  the ingress before it hands the request to the model's replica (serving.ingress); Ray Serve
  LLM routes no /rerank.
- VLLMErrorResponse (vLLM's ErrorResponse): what that scoring handler returns for a request it
  refuses; the LLM server turns it into Ray's ErrorResponse (serving.llm_server).
"""

from __future__ import annotations

from vllm.entrypoints.pooling.scoring.protocol import RerankRequest
from vllm.entrypoints.serve.engine.protocol import ErrorResponse as VLLMErrorResponse

__all__ = ["RerankRequest", "VLLMErrorResponse"]
