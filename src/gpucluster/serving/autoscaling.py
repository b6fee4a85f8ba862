"""The LLM deployment's autoscaling: Ray Serve's custom-policy hook around `scaling_rules.decide`.

Each LLM replica reports its engine's KV cache usage and waiting requests every 2 s
(`PlatformLLMServer.record_autoscaling_stats`); Serve's controller averages them over the
look-back window and calls `LLMAutoscalingPolicy` with them and its own count of ongoing
requests. The policy logs each change in the operator guide's words (`Scaling up deployment:
adding replica`, `Scaling down deployment: removing replica`) to the Serve controller log, and
exports what it decided and why as Ray metrics (`ray_gpucluster_autoscaling_*` in Prometheus).
Ray's own delay logic is switched off (delays 0): `decide` applies the configured delays itself.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from gpucluster.config import ModelConfig
from gpucluster.serving.engine_load import KV_CACHE_USAGE, WAITING_REQUESTS
from gpucluster.serving.scaling_rules import (
    Decision,
    LoadSnapshot,
    ScalingSettings,
    ScalingState,
    decide,
)

logger = logging.getLogger("ray.serve")

# How often each replica reports its engine's load to the controller.
REPORT_INTERVAL_S = 2.0
SIGNALS = ("kv_cache", "waiting", "ongoing", "idle", "steady", "starting", "bounds")
_STATE_KEYS = {"pressure_since": "gpucluster_pressure_since", "idle_since": "gpucluster_idle_since"}


def scaling_settings(model: ModelConfig) -> ScalingSettings:
    """The policy's settings for `model`, from `replicas` and `autoscaling`."""
    knobs = model.autoscaling
    return ScalingSettings(
        min_replicas=model.replicas.min,
        max_replicas=model.replicas.max,
        kv_cache_high=knobs.kv_cache_high,
        kv_cache_low=knobs.kv_cache_low,
        waiting_requests_high=knobs.waiting_requests_high,
        target_ongoing_requests=knobs.target_ongoing_requests or float(model.max_num_seqs),
        upscale_delay_s=knobs.upscale_delay_s,
        downscale_delay_s=knobs.downscale_delay_s,
    )


def deployment_options(model: ModelConfig) -> dict[str, Any]:
    """The LLM deployment's autoscaling and drain options for Ray Serve."""
    settings = scaling_settings(model)
    replicas = model.replicas
    return {
        "autoscaling_config": {
            "min_replicas": replicas.min,
            "max_replicas": replicas.max,
            "initial_replicas": replicas.initial if replicas.initial is not None else replicas.min,
            "target_ongoing_requests": settings.target_ongoing_requests,
            "metrics_interval_s": REPORT_INTERVAL_S,
            "look_back_period_s": model.autoscaling.look_back_period_s,
            "upscale_delay_s": 0,
            "downscale_delay_s": 0,
            "policy": {
                "policy_function": f"{__name__}:LLMAutoscalingPolicy",
                "policy_kwargs": dataclasses.asdict(settings),
            },
        },
        "graceful_shutdown_timeout_s": model.autoscaling.drain_timeout_s,
    }


def snapshot(ctx: Any) -> LoadSnapshot:
    """The load Serve's autoscaling context describes, averaged over its look-back window."""
    metrics = ctx.aggregated_metrics or {}
    running = set(ctx.running_replicas)

    def per_replica(name: str) -> list[float]:
        return [v for replica, v in metrics.get(name, {}).items() if replica in running]

    kv = per_replica(KV_CACHE_USAGE)
    return LoadSnapshot(
        now=ctx.current_time,
        running_replicas=ctx.current_num_replicas,
        target_replicas=ctx.target_num_replicas,
        kv_cache_usage=sum(kv) / len(kv) if kv else 0.0,
        waiting_requests=sum(per_replica(WAITING_REQUESTS)),
        ongoing_requests=float(ctx.total_num_requests),
    )


class LLMAutoscalingPolicy:
    """Ray Serve deployment-scoped policy; Serve creates one per deployment with `policy_kwargs`."""

    def __init__(self, **settings: Any) -> None:
        self._settings = ScalingSettings(**settings)
        self._metrics: _DecisionMetrics | None = None

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        state = ScalingState(**{f: ctx.policy_state.get(k) for f, k in _STATE_KEYS.items()})
        snap = snapshot(ctx)
        decision, state = decide(self._settings, snap, state)
        if decision.direction != "hold":
            _log(ctx, snap, decision)
        if self._metrics is None:
            self._metrics = _DecisionMetrics()
        self._metrics.record(ctx, decision)
        self._metrics.count_starts(ctx)
        policy_state = dict(ctx.policy_state)
        policy_state.update({k: getattr(state, f) for f, k in _STATE_KEYS.items()})
        return decision.replicas, policy_state


def _log(ctx: Any, snap: LoadSnapshot, decision: Decision) -> None:
    verb = (
        "Scaling up deployment: adding replica"
        if decision.direction == "up"
        else ("Scaling down deployment: removing replica")
    )
    logger.info(
        "%s (%s/%s %d -> %d): %s",
        verb,
        ctx.app_name,
        ctx.deployment_name,
        snap.target_replicas,
        decision.replicas,
        decision.reason,
    )


class _DecisionMetrics:
    """Ray metrics of the policy's decisions, exported from the Serve controller."""

    def __init__(self) -> None:
        from ray.util import metrics

        tags = ("application", "deployment")
        self._desired = metrics.Gauge(
            "gpucluster_autoscaling_desired_replicas",
            description="Replicas the LLM autoscaling policy wants now.",
            tag_keys=tags,
        )
        self._signal = metrics.Gauge(
            "gpucluster_autoscaling_signal",
            description="1 for the signal behind the policy's current decision, 0 for the others.",
            tag_keys=(*tags, "signal"),
        )
        self._decisions = metrics.Counter(
            "gpucluster_autoscaling_decisions",
            description="Replica count changes made by the LLM autoscaling policy.",
            tag_keys=(*tags, "direction", "signal"),
        )
        # Ray's own ray_serve_deployment_replica_starts_total is one series per replica that
        # is born at 1, so rate() over it never moves; this one counts each new replica.
        self._starts = metrics.Counter(
            "gpucluster_replica_starts",
            description="Replicas that came up running (scale-ups and replacements).",
            tag_keys=tags,
        )
        self._last: tuple[int, str] | None = None
        self._last_set_at = 0.0
        self._seen: set[Any] = set()

    def record(self, ctx: Any, decision: Decision) -> None:
        tags = {"application": ctx.app_name or "", "deployment": ctx.deployment_name}
        if decision.direction != "hold":
            self._decisions.inc(
                1, tags={**tags, "direction": decision.direction, "signal": decision.signal}
            )
        # Ray stops exporting a gauge that is not set for a while: refresh every second.
        now = ctx.current_time
        if self._last == (decision.replicas, decision.signal) and now - self._last_set_at < 1:
            return
        self._last, self._last_set_at = (decision.replicas, decision.signal), now
        self._desired.set(decision.replicas, tags=tags)
        for signal in SIGNALS:
            self._signal.set(1 if signal == decision.signal else 0, tags={**tags, "signal": signal})

    def count_starts(self, ctx: Any) -> None:
        running = set(ctx.running_replicas)
        new = running - self._seen
        self._seen = running
        if new:
            tags = {"application": ctx.app_name or "", "deployment": ctx.deployment_name}
            self._starts.inc(len(new), tags=tags)
