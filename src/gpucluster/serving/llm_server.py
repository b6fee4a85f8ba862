"""The LLM deployment: Ray Serve LLM's LLMServer, speaking the guide's log lines.

The operator guide promises `Loading model <id>...`, `Model loaded successfully`,
`Replica started successfully` and, when start-up fails, one of `ERROR: Model loading timeout`,
`ERROR: Out of memory` or `ERROR: GPU allocation failed`. They go to the replica's log (with
Serve's timestamp and level) where `gpucluster logs serve` and the Ray dashboard show them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ray.serve.llm import LLMServer

from gpucluster.serving.engine_load import EngineLoad, attach

logger = logging.getLogger("ray.serve")

_OOM_MARKERS = ("out of memory", "outofmemory", "cannot allocate memory", "insufficient memory")
_OOM_MARKERS_CPU_KV = ("kv cache", "vllm_cpu_kvcache_space")
_GPU_MARKERS = ("no cuda gpus", "cuda error", "no gpu", "nvml", "gpu allocation")


def classify_start_failure(exc: BaseException) -> str:
    """The guide's ERROR line for an engine start-up failure."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "ERROR: Model loading timeout"
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(marker in text for marker in _OOM_MARKERS) or isinstance(exc, MemoryError):
        return "ERROR: Out of memory"
    if any(marker in text for marker in _GPU_MARKERS):
        return "ERROR: GPU allocation failed"
    if "memory" in text and any(marker in text for marker in _OOM_MARKERS_CPU_KV):
        return "ERROR: Out of memory"
    return "ERROR: Model loading failed"


class PlatformLLMServer(LLMServer):
    """LLMServer that reports its start-up in the operator guide's words and its engine's load
    to the autoscaler."""

    _engine_load: EngineLoad | None = None

    async def start(self) -> None:
        model_id = self._llm_config.model_id
        logger.info("Loading model %s...", model_id)
        started = time.monotonic()
        try:
            await super().start()
        except BaseException as exc:
            logger.error("%s (model %s): %s", classify_start_failure(exc), model_id, exc)
            raise
        logger.info("Model loaded successfully (%s, %.1f s)", model_id, time.monotonic() - started)
        load = EngineLoad()
        if attach(getattr(self.engine, "_engine_client", None), load):
            self._engine_load = load
        else:
            logger.warning(
                "The engine keeps no stat loggers: the autoscaler sees ongoing requests only"
            )
        logger.info("Replica started successfully")

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's hook: this replica's engine load, averaged by the controller for the policy."""
        return self._engine_load.figures() if self._engine_load is not None else {}
