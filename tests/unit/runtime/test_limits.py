"""The gatekeeper's counters: buckets, sliding windows and slots, on a clock moved by hand."""

from __future__ import annotations

import pytest

from gpucluster.runtime.limits import SlidingWindows, Slots, TokenBuckets


def test_bucket_admits_its_capacity_then_says_how_long_to_wait(clock):
    buckets = TokenBuckets(rate=4, capacity=2, clock=clock)
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0  # owners do not share


def test_buckets_are_bounded_dropping_the_least_recently_used(clock):
    buckets = TokenBuckets(rate=1, capacity=1, clock=clock, max_entries=3)
    for owner in range(10):
        buckets.take(owner)
    assert len(buckets) == 3


def test_sliding_window_totals_and_waits(clock):
    window = SlidingWindows(clock, span_s=60)
    window.add("k", 30)
    clock.now = 20
    window.add("k", 50)
    window.add("k", 0)  # nothing to record
    assert window.total("k") == 80
    assert window.wait_below("k", 100) == 0.0
    assert window.wait_below("k", 80) == 40  # the first 30 leave at 60
    assert window.wait_below("k", 10) == 60  # both must leave: the second at 80
    clock.now = 60
    assert window.total("k") == 50
    clock.now = 80
    assert window.total("k") == 0 and window.total("other") == 0


def test_slots_count_release_and_expire(clock):
    slots = Slots(ttl_s=30, clock=clock)
    slots.take("r1", "k")
    slots.take("r1", "k")  # one id holds one slot
    slots.take("r2", "k")
    assert slots.count("k") == 2
    assert slots.release("r1") and not slots.release("r1")
    assert slots.count("k") == 1
    clock.now = 30
    assert slots.count("k") == 0
    assert not slots.release("r2")  # expired: nothing left to free
    assert slots.count("k") == 0
