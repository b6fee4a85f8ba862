"""The autoscaling decision replayed over sequences of load snapshots (no Ray needed)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable

import pytest

from gpucluster.serving.scaling_rules import (
    Decision,
    LoadSnapshot,
    ScalingSettings,
    ScalingState,
    decide,
)

SETTINGS = ScalingSettings(
    min_replicas=1,
    max_replicas=3,
    kv_cache_high=0.8,
    kv_cache_low=0.2,
    waiting_requests_high=0,
    target_ongoing_requests=16,
    upscale_delay_s=30,
    downscale_delay_s=120,
)
TICK_S = 1.0
BUSY = {"kv_cache_usage": 0.9, "waiting_requests": 0.0, "ongoing_requests": 14.0}
QUEUEING = {"kv_cache_usage": 0.5, "waiting_requests": 3.0, "ongoing_requests": 19.0}
MODERATE = {"kv_cache_usage": 0.5, "waiting_requests": 0.0, "ongoing_requests": 8.0}
IDLE = {"kv_cache_usage": 0.02, "waiting_requests": 0.0, "ongoing_requests": 0.0}


def replay(
    loads: Iterable[dict[str, float]],
    settings: ScalingSettings = SETTINGS,
    replicas: int = 1,
    start_s: float = 1000.0,
    started: Callable[[int], int] = lambda target: target,
) -> list[tuple[float, int, Decision]]:
    """Feed one load per tick; replicas follow each decision at once (or as `started` says).

    Returns (time, replicas before, decision) for every decision that changed the count.
    """
    state, target, changes = ScalingState(), replicas, []
    for i, load in enumerate(loads):
        now = start_s + i * TICK_S
        snap = LoadSnapshot(
            now=now, running_replicas=started(target), target_replicas=target, **load
        )
        decision, state = decide(settings, snap, state)
        assert settings.min_replicas <= decision.replicas <= settings.max_replicas
        if decision.replicas != target:
            changes.append((now, target, decision))
            target = decision.replicas
    return changes


def ticks(seconds: float, load: dict[str, float]) -> list[dict[str, float]]:
    return [load] * int(seconds / TICK_S)


def test_sustained_kv_pressure_adds_a_replica_after_the_delay():
    changes = replay(ticks(40, BUSY))
    assert len(changes) == 1
    at, before, decision = changes[0]
    assert (before, decision.replicas, decision.direction, decision.signal) == (
        1,
        2,
        "up",
        "kv_cache",
    )
    assert at - 1000.0 == pytest.approx(SETTINGS.upscale_delay_s)
    assert "KV cache 90% above 80%" in decision.reason


def test_waiting_requests_add_a_replica():
    changes = replay(ticks(35, QUEUEING))
    assert [(d.direction, d.signal) for _, _, d in changes] == [("up", "waiting")]


def test_ongoing_requests_over_their_target_are_the_fallback_signal():
    load = {"kv_cache_usage": 0.0, "waiting_requests": 0.0, "ongoing_requests": 20.0}
    changes = replay(ticks(35, load))
    assert [(d.direction, d.signal) for _, _, d in changes] == [("up", "ongoing")]


def test_a_single_spike_changes_nothing():
    spike = ticks(10, MODERATE) + ticks(5, QUEUEING) + ticks(10, BUSY) + ticks(200, MODERATE)
    assert replay(spike) == []


def test_a_break_in_the_signal_restarts_the_clock():
    loads = ticks(25, BUSY) + ticks(1, MODERATE) + ticks(25, BUSY)
    assert replay(loads) == []


def test_idleness_removes_a_replica_only_after_the_downscale_delay():
    changes = replay(ticks(119, IDLE), replicas=2)
    assert changes == []
    changes = replay(ticks(125, IDLE), replicas=2)
    assert [(before, d.replicas, d.direction) for _, before, d in changes] == [(2, 1, "down")]
    assert "nothing waiting" in changes[0][2].reason


def test_waiting_requests_block_a_scale_down_even_when_the_cache_is_empty():
    load = {"kv_cache_usage": 0.0, "waiting_requests": 1.0, "ongoing_requests": 1.0}
    settings = dataclasses.replace(SETTINGS, waiting_requests_high=5)
    assert replay(ticks(300, load), settings=settings, replicas=2) == []


def test_moderate_load_between_the_thresholds_holds():
    assert replay(ticks(600, MODERATE), replicas=2) == []


def test_never_beyond_the_bounds():
    up = replay(ticks(600, BUSY))
    assert [d.replicas for _, _, d in up] == [2, 3]
    down = replay(ticks(1200, IDLE), replicas=3)
    assert [d.replicas for _, _, d in down] == [2, 1]
    below = replay(ticks(3, MODERATE), replicas=0)
    assert [(d.replicas, d.signal) for _, _, d in below] == [(1, "bounds")]


def test_no_decision_while_a_new_replica_is_still_starting():
    # The new replica takes 90 s to start: pressure all along must not pile up replicas.
    starts_at: dict[int, float] = {}
    clock = iter(range(10_000))

    def started(target: int) -> int:
        now = next(clock)
        starts_at.setdefault(target, now)
        return target if now - starts_at[target] >= 90 or target == 1 else target - 1

    changes = replay(ticks(200, BUSY), started=started)
    assert [d.replicas for _, _, d in changes] == [2, 3]
    first, second = changes[0][0], changes[1][0]
    assert second - first >= 90 + SETTINGS.upscale_delay_s


@pytest.mark.parametrize("half_period_s", [5, 20, 29, 60, 200])
def test_a_sawtooth_changes_the_count_at_most_once_per_delay_window(half_period_s):
    loads = (ticks(half_period_s, QUEUEING) + ticks(half_period_s, IDLE)) * (
        1800 // (2 * half_period_s)
    )
    changes = replay(loads, replicas=2)
    times = [at for at, _, _ in changes]
    window = min(SETTINGS.upscale_delay_s, SETTINGS.downscale_delay_s)
    assert all(later - earlier >= window for earlier, later in itertools.pairwise(times))
    if half_period_s < SETTINGS.upscale_delay_s:
        assert changes == []  # neither signal ever holds for its delay
