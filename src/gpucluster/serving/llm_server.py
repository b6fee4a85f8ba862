"""The LLM deployment: Ray Serve LLM's LLMServer, speaking the guide's log lines.

The operator guide promises `Loading model <id>...`, `Model loaded successfully`,
`Replica started successfully` and, when start-up fails, one of its ERROR lines (the table in
config.guide_errors, with the fix `up` and `diagnose` print for each). They go to the replica's
log (with Serve's timestamp and level) where `gpucluster logs serve` and the Ray dashboard show
them.

Besides, each replica reports its engine's load to the autoscaling policy
(`record_autoscaling_stats`, see serving.autoscaling) and counts the requests whose client
went away mid-answer (`ray_gpucluster_requests_aborted_total`). Deployed as the ingress itself
(direct streaming), it serves HTTP through `__serve_build_asgi_app__` (see serving.direct).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

from ray import serve
from ray.serve.llm import LLMServer
from ray.util import metrics

from gpucluster.config.guide_errors import (
    GPU_ALLOCATION_FAILED,
    MODEL_LOADING_FAILED,
    MODEL_LOADING_TIMEOUT,
    OUT_OF_MEMORY,
)
from gpucluster.config.keys import KeySources
from gpucluster.serving.adapters import LocalAdapterLoader
from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.direct import AdmissionLimits, build_direct_app
from gpucluster.serving.engine_load import EngineLoad, attach
from gpucluster.serving.json_body import DEFAULT_MAX_BODY_BYTES
from gpucluster.serving.ray_internals import ErrorInfo, ErrorResponse, to_model_metadata
from gpucluster.serving.vllm_protocol import VLLMErrorResponse

logger = logging.getLogger("ray.serve")

_OOM_MARKERS = ("out of memory", "outofmemory", "cannot allocate memory", "insufficient memory")
_OOM_MARKERS_CPU_KV = ("kv cache", "vllm_cpu_kvcache_space")
_GPU_MARKERS = ("no cuda gpus", "cuda error", "no gpu", "nvml", "gpu allocation")


def classify_start_failure(exc: BaseException, root_cause: str = "") -> str:
    """The guide's ERROR line for an engine start-up failure (`root_cause`: the engine
    process's own error line, when the exception only says to look above)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return MODEL_LOADING_TIMEOUT
    text = f"{type(exc).__name__}: {exc} {root_cause}".lower()
    if any(marker in text for marker in _OOM_MARKERS) or isinstance(exc, MemoryError):
        return OUT_OF_MEMORY
    if any(marker in text for marker in _GPU_MARKERS):
        return GPU_ALLOCATION_FAILED
    if "memory" in text and any(marker in text for marker in _OOM_MARKERS_CPU_KV):
        return OUT_OF_MEMORY
    return MODEL_LOADING_FAILED


_ERROR_LINE = re.compile(r"\b[A-Za-z]*(Error|Exception): .+")


def engine_root_cause(stderr: str = "/proc/self/fd/2", tail_bytes: int = 65536) -> str:
    """The last `SomeError: message` line the engine process wrote to this replica's stderr.

    vLLM's engine runs in a child process that shares the replica's stderr (Ray's worker log);
    when it dies starting up, the replica only hears "Engine core initialization failed. See
    root cause above" and the reason (memory, GPUs) is in that log.
    """
    try:
        with open(os.path.realpath(stderr), "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - tail_bytes))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        match = _ERROR_LINE.search(line)
        if match and "initialization failed" not in line:
            return match.group(0)[:500]
    return ""


class PlatformLLMServer(LLMServer):
    """LLMServer that reports its start-up in the operator guide's words and its engine's load
    to the autoscaler."""

    _engine_load: EngineLoad | None = None
    _aborted: Any = None
    # When this replica serves HTTP itself (see `direct_server`): files of the valid API keys,
    # how many generation requests it admits, where it reports each request's usage, and the
    # largest body it reads.
    key_sources: KeySources = KeySources()
    admission_limits: AdmissionLimits | None = None
    usage_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    async def start(self) -> None:
        model_id = self._llm_config.model_id
        logger.info("Loading model %s...", model_id)
        started = time.monotonic()
        try:
            await super().start()
        except BaseException as exc:
            cause = engine_root_cause()
            because = f"; engine: {cause}" if cause else ""
            logger.error(
                "%s (model %s): %s%s", classify_start_failure(exc, cause), model_id, exc, because
            )
            raise
        logger.info("Model loaded successfully (%s, %.1f s)", model_id, time.monotonic() - started)
        load = EngineLoad()
        if attach(getattr(self.engine, "_engine_client", None), load):
            self._engine_load = load
        else:
            logger.warning(
                "The engine keeps no stat loggers: the autoscaler sees ongoing requests only"
            )
        self._aborted = metrics.Counter(
            "gpucluster_requests_aborted",
            description="Requests whose client went away before the answer was complete; "
            "their engine work was stopped.",
            tag_keys=("model",),
        )
        logger.info("Replica started successfully")

    def _init_multiplex_loader(self, model_downloader_cls: Any = None) -> None:
        # LoRA adapters come from local directories (serving.adapters), not cloud storage.
        super()._init_multiplex_loader(LocalAdapterLoader)

    async def rerank(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
        """vLLM's rerank on this embedding model (its scoring handler serves /rerank too)."""
        scores = getattr(self.engine, "_oai_serving_scores", None)
        if scores is None:
            yield ErrorResponse(
                error=ErrorInfo(
                    message=f"The model '{self._llm_config.model_id}' does not serve rerank.",
                    type="invalid_request_error",
                    code=400,
                )
            )
            return
        try:
            response = await scores(request, raw_request=None)
        except ValueError as exc:  # vLLM's request errors (a query beyond the context, say)
            yield ErrorResponse(
                error=ErrorInfo(
                    message=str(exc),
                    type="invalid_request_error",
                    code=400,
                )
            )
            return
        if isinstance(response, VLLMErrorResponse):
            yield ErrorResponse(error=ErrorInfo(**response.error.model_dump()))
            return
        body = json.loads(response.body)
        status = getattr(response, "status_code", 200)
        if status >= 400 or "error" in body:  # an error answered as a JSON response
            error = body.get("error") or {}
            yield ErrorResponse(
                error=ErrorInfo(
                    message=str(error.get("message") or body)[:500],
                    type=str(error.get("type") or "invalid_request_error"),
                    code=max(status, 400),
                )
            )
            return
        yield body

    async def _start_engine(self) -> None:
        # Ray Serve LLM's own also pushes a usage-telemetry report, even with usage stats off:
        # it creates a detached actor on the head and waits for it, 3 s of every replica start.
        if self.engine is None:
            raise ValueError("Engine is not set")
        await self.engine.start()
        # Ray 2.60 looks for vLLM's tokenizer service under its old name
        # (openai_serving_tokenization; vLLM 0.29 calls it serving_tokenization), so /tokenize
        # and /detokenize would answer that the model does not support them.
        state = getattr(self.engine, "_app_state", None)
        if getattr(self.engine, "_oai_serving_tokenization", None) is None and state is not None:
            self.engine._oai_serving_tokenization = getattr(state, "serving_tokenization", None)

    async def __serve_build_asgi_app__(self) -> Any:
        """Serve's hook for an ingress replica: vLLM's app behind the platform's API contract."""
        engine_app = await super().__serve_build_asgi_app__()
        model_id = self._llm_config.model_id
        return build_direct_app(
            engine_app,
            api_keys=ApiKeys.of(self.key_sources),
            usage_url=self.usage_url,
            max_body_bytes=self.max_body_bytes,
            card=to_model_metadata(model_id, self._llm_config),
            limits=self.admission_limits,
            check_health=self.check_health,
            on_abort=self._count_abort,
            parses_tools="tool_call_parser" in self._llm_config.engine_kwargs,
        )

    def _count_abort(self) -> None:
        if self._aborted is not None:
            self._aborted.inc(1, tags={"model": self._llm_config.model_id})

    async def chat(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
        return self._counting_aborts(await super().chat(request, raw_request_info))

    async def completions(
        self, request: Any, raw_request_info: Any = None
    ) -> AsyncGenerator[Any, None]:
        return self._counting_aborts(await super().completions(request, raw_request_info))

    async def _counting_aborts(
        self, stream: AsyncGenerator[Any, None]
    ) -> AsyncGenerator[Any, None]:
        """`stream` unchanged; a client gone mid-answer is counted and the engine's work closed.

        Serve cancels the request (CancelledError reaches the engine's generator, which aborts
        the sequence) or closes this generator (GeneratorExit: the inner one is closed too, so
        that vLLM aborts at once rather than when it is garbage-collected).
        """
        try:
            async for item in stream:
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            self._count_abort()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            raise

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's hook: this replica's engine load, averaged by the controller for the policy."""
        return self._engine_load.figures() if self._engine_load is not None else {}


def direct_server(
    keys: KeySources,
    limits: AdmissionLimits,
    usage_url: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> type:
    """PlatformLLMServer as an ingress deployment class: it serves HTTP itself, requires one
    of the keys of `keys` on /v1 (none: authentication is off), admits `limits`, reports
    each request's usage to `usage_url` and reads bodies up to `max_body_bytes`."""
    attributes = {
        "key_sources": keys,
        "admission_limits": limits,
        "usage_url": usage_url,
        "max_body_bytes": max_body_bytes,
    }
    return serve.ingress()(type("PlatformLLMServer", (PlatformLLMServer,), attributes))
