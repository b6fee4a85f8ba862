"""The autoscaling decision as a pure function: a load snapshot in, a replica count and its reason out.

The operator guide's Scaling Decisions: scale up when the KV cache stays above 80% or requests
wait (or, as a fallback, ongoing requests exceed their target); scale down when utilisation stays
below 20% with nothing waiting. "Stays" is what keeps the replica count from flapping: a signal
must hold, unbroken, for its delay before a replica is added or removed, any change resets both
clocks, and nothing is decided while a new replica is still starting. Between the two thresholds
the count holds.

The Serve controller calls the policy (`serving.autoscaling`) once per control loop: every 0.5 s
as every runner starts Ray (config.ray_node.CONTROL_LOOP_INTERVAL_S; Ray's own default is 0.1 s).
Time and state are passed in and returned, so that unit tests replay sequences of snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down", "hold"]


@dataclass(frozen=True)
class ScalingSettings:
    """One model's bounds, thresholds and delays (from `models[].replicas` and `.autoscaling`)."""

    min_replicas: int
    max_replicas: int
    kv_cache_high: float
    kv_cache_low: float
    waiting_requests_high: float
    target_ongoing_requests: float
    upscale_delay_s: float
    downscale_delay_s: float


@dataclass(frozen=True)
class LoadSnapshot:
    """What the policy sees at one instant, each figure averaged over Serve's look-back window."""

    now: float
    running_replicas: int
    target_replicas: int
    kv_cache_usage: float  # mean over the replicas, 0-1
    waiting_requests: float  # total in the engines' queues
    ongoing_requests: float  # total, as Serve counts them (queued at handles + running)


@dataclass(frozen=True)
class ScalingState:
    """Since when the current scale-up or scale-down signal has held without a break."""

    pressure_since: float | None = None
    idle_since: float | None = None


@dataclass(frozen=True)
class Decision:
    replicas: int
    direction: Direction
    signal: str  # kv_cache | waiting | ongoing | idle | steady | starting | bounds
    reason: str


def utilisation(settings: ScalingSettings, snap: LoadSnapshot) -> float:
    """The larger of KV cache usage and ongoing requests per replica over their target."""
    per_replica = snap.ongoing_requests / max(snap.running_replicas, 1)
    return max(snap.kv_cache_usage, per_replica / settings.target_ongoing_requests)


def pressure(settings: ScalingSettings, snap: LoadSnapshot) -> tuple[str, str] | None:
    """The scale-up signal present in `snap`, as (signal, reason), or None."""
    replicas = max(snap.running_replicas, 1)
    if snap.kv_cache_usage > settings.kv_cache_high:
        return "kv_cache", (
            f"KV cache {snap.kv_cache_usage:.0%} above {settings.kv_cache_high:.0%}"
        )
    if snap.waiting_requests / replicas > settings.waiting_requests_high:
        return "waiting", f"{snap.waiting_requests:.1f} requests waiting"
    if snap.ongoing_requests / replicas > settings.target_ongoing_requests:
        return "ongoing", (
            f"{snap.ongoing_requests / replicas:.1f} ongoing requests per replica above the "
            f"target {settings.target_ongoing_requests:g}"
        )
    return None


def idleness(settings: ScalingSettings, snap: LoadSnapshot) -> str | None:
    """Why the replicas count as idle in `snap`, or None when they do not."""
    used = utilisation(settings, snap)
    if snap.waiting_requests == 0 and used < settings.kv_cache_low:
        return f"utilisation {used:.0%} below {settings.kv_cache_low:.0%}, nothing waiting"
    return None


def decide(
    settings: ScalingSettings, snap: LoadSnapshot, state: ScalingState
) -> tuple[Decision, ScalingState]:
    """The replica count to move to now, and the state to pass to the next call."""
    target = snap.target_replicas
    if target < settings.min_replicas:
        return Decision(settings.min_replicas, "up", "bounds", "below min_replicas"), ScalingState()
    if target > settings.max_replicas:
        return Decision(
            settings.max_replicas, "down", "bounds", "above max_replicas"
        ), ScalingState()
    if snap.running_replicas != target:
        reason = f"waiting for {target} replicas to run ({snap.running_replicas} now)"
        return Decision(target, "hold", "starting", reason), ScalingState()

    up = pressure(settings, snap)
    if up is not None:
        signal, reason = up
        since = state.pressure_since if state.pressure_since is not None else snap.now
        held = snap.now - since
        if target >= settings.max_replicas:
            reason = f"{reason}; at max_replicas {settings.max_replicas}"
        elif held >= settings.upscale_delay_s:
            return Decision(target + 1, "up", signal, f"{reason} for {held:.0f} s"), ScalingState()
        else:
            reason = f"{reason} for {held:.0f} of {settings.upscale_delay_s:g} s"
        return Decision(target, "hold", signal, reason), ScalingState(pressure_since=since)

    idle = idleness(settings, snap)
    if idle is not None:
        since = state.idle_since if state.idle_since is not None else snap.now
        held = snap.now - since
        if target <= settings.min_replicas:
            hold = Decision(target, "hold", "idle", f"{idle}; at min_replicas")
            return hold, ScalingState(idle_since=since)
        if held >= settings.downscale_delay_s:
            return Decision(target - 1, "down", "idle", f"{idle} for {held:.0f} s"), ScalingState()
        reason = f"{idle} for {held:.0f} of {settings.downscale_delay_s:g} s"
        return Decision(target, "hold", "idle", reason), ScalingState(idle_since=since)

    return Decision(target, "hold", "steady", "load between the thresholds"), ScalingState()
