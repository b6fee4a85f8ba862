"""An engine's current load (running and waiting requests, KV cache usage) for the autoscaler.

vLLM hands its scheduler's figures to every stat logger after each engine step; `EngineLoad` is
one more such logger that keeps the latest figures. An idle engine takes no steps and so sends
nothing: figures older than `stale_after_s` therefore read as an idle engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

STALE_AFTER_S = 5.0
# The keys of `EngineLoad.figures()`, which the autoscaling policy reads back.
RUNNING_REQUESTS = "running_requests"
WAITING_REQUESTS = "waiting_requests"
KV_CACHE_USAGE = "kv_cache_usage"


class EngineLoad:
    """Latest scheduler figures per engine, fed through vLLM's stat-logger interface."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, stale_after_s: float = STALE_AFTER_S
    ) -> None:
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._latest: dict[int, tuple[float, float, float, float]] = {}

    # vLLM's StatLoggerManager calls these four on each of its loggers.
    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        if scheduler_stats is None:
            return
        self._latest[engine_idx] = (
            self._clock(),
            float(scheduler_stats.num_running_reqs),
            float(scheduler_stats.num_waiting_reqs),
            float(scheduler_stats.kv_cache_usage),
        )

    def record_sleep_state(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self) -> None:
        pass

    def log_engine_initialized(self) -> None:
        pass

    def figures(self) -> dict[str, float]:
        """Running and waiting requests summed over engines, and their mean KV cache usage."""
        now = self._clock()
        fresh = [v for v in self._latest.values() if now - v[0] <= self._stale_after_s]
        if not fresh:
            return {RUNNING_REQUESTS: 0.0, WAITING_REQUESTS: 0.0, KV_CACHE_USAGE: 0.0}
        return {
            RUNNING_REQUESTS: sum(v[1] for v in fresh),
            WAITING_REQUESTS: sum(v[2] for v in fresh),
            KV_CACHE_USAGE: sum(v[3] for v in fresh) / len(fresh),
        }


def attach(engine_client: Any, load: EngineLoad) -> bool:
    """Make `load` one of the stat loggers of a vLLM AsyncLLM; False when it keeps none."""
    manager = getattr(engine_client, "logger_manager", None)
    loggers = getattr(manager, "stat_loggers", None)
    if not isinstance(loggers, list):
        return False
    loggers.append(load)
    return True
