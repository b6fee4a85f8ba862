"""The gatekeeper's counting: token buckets, sliding 60 s windows and concurrency slots.

Every class takes its clock (monotonic seconds) so that tests move time by hand. Nothing here
knows about HTTP or keys: a bucket, window or slot belongs to whatever string it is given (a key
name or a client address). Memory is bounded by the number of those strings, and the per-address
buckets, which an attacker can multiply, by `max_entries`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any

Clock = Callable[[], float]


class TokenBuckets:
    """A token bucket per owner: `rate` tokens a second, at most `capacity` saved up.

    An owner not seen for `capacity / rate` seconds has a full bucket, the same as a new one, so
    the least recently used buckets are the ones dropped when there are more than `max_entries`.
    """

    def __init__(
        self, rate: float, capacity: float, clock: Clock, max_entries: int = 100_000
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._clock = clock
        self._max = max_entries
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, owner: Hashable) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(owner, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[owner] = (tokens, now)  # to the end: the most recently used
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class SlidingWindows:
    """Amounts recorded per owner over the last `span_s` seconds (1 a request, or tokens)."""

    def __init__(self, clock: Clock, span_s: float = 60.0) -> None:
        self._clock = clock
        self.span_s = span_s
        self._events: dict[Hashable, deque[tuple[float, int]]] = {}
        self._totals: Counter[Hashable] = Counter()

    def add(self, owner: Hashable, amount: int = 1) -> None:
        """Record `amount` for `owner` now."""
        if amount <= 0:
            return
        self._prune(owner)
        self._events.setdefault(owner, deque()).append((self._clock(), amount))
        self._totals[owner] += amount

    def total(self, owner: Hashable) -> int:
        """What `owner` recorded in the window."""
        self._prune(owner)
        return self._totals[owner]

    def wait_below(self, owner: Hashable, limit: int) -> float:
        """Seconds until `owner`'s total is below `limit` (0.0: it is already)."""
        excess = self.total(owner) - limit
        if excess < 0:
            return 0.0
        for stamp, amount in self._events[owner]:
            excess -= amount
            if excess < 0:  # once this event has aged out, the total is below the limit
                return stamp + self.span_s - self._clock()
        return self.span_s  # not reached: the events sum to the total

    def _prune(self, owner: Hashable) -> None:
        events = self._events.get(owner)
        if events is None:
            return
        horizon = self._clock() - self.span_s
        while events and events[0][0] <= horizon:
            self._totals[owner] -= events.popleft()[1]
        if not events:
            del self._events[owner]
            del self._totals[owner]


class Expiring:
    """Values by id that vanish `ttl_s` after they were put; at most `max_entries` (the oldest
    go first). One ttl for all means the oldest entry always expires first: expiry is cheap."""

    def __init__(self, ttl_s: float, clock: Clock, max_entries: int = 1_000_000) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def put(self, key: Hashable, value: Any) -> list[tuple[Hashable, Any]]:
        """Keep `value` under `key`; returns the (key, value) pairs that expired meanwhile."""
        gone = self.expire()
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + self.ttl_s, value)
        while len(self._entries) > self._max:
            old_key, (_, old_value) = self._entries.popitem(last=False)
            gone.append((old_key, old_value))
        return gone

    def pop(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value) removing `key`, or (False, None) when it is not there (or expired)."""
        entry = self._entries.pop(key, None)
        if entry is None or entry[0] <= self._clock():
            return False, None
        return True, entry[1]

    def __contains__(self, key: Hashable) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[0] > self._clock()

    def expire(self) -> list[tuple[Hashable, Any]]:
        """Drop what has expired; returns the (key, value) pairs dropped."""
        now = self._clock()
        gone = []
        while self._entries:
            key, (expires, value) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]
            gone.append((key, value))
        return gone


class Slots:
    """Concurrency slots: each request id holds one of its owner's until released, or until
    `ttl_s` passes (a request whose end was never reported must not hold a slot for ever)."""

    def __init__(self, ttl_s: float, clock: Clock) -> None:
        self._held = Expiring(ttl_s, clock)
        self._counts: Counter[Hashable] = Counter()

    def count(self, owner: Hashable) -> int:
        """Slots `owner` holds now."""
        self._forget(self._held.expire())
        return self._counts[owner]

    def take(self, request_id: Hashable, owner: Hashable) -> None:
        """`request_id` holds one of `owner`'s slots."""
        self.release(request_id)  # the same id twice holds one slot
        self._forget(self._held.put(request_id, owner))
        self._counts[owner] += 1

    def release(self, request_id: Hashable) -> bool:
        """Free the slot `request_id` holds; False when it holds none."""
        self._forget(self._held.expire())  # so that pop never drops an expired, counted slot
        held, owner = self._held.pop(request_id)
        if held:
            self._forget([(request_id, owner)])
        return held

    def _forget(self, gone: list[tuple[Hashable, Any]]) -> None:
        for _, owner in gone:
            self._counts[owner] -= 1
            if self._counts[owner] <= 0:
                del self._counts[owner]
