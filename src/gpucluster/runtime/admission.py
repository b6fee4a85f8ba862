"""The gatekeeper's decisions: who may pass the edge, and what each finished request cost.

`Gatekeeper.auth` answers nginx's `auth_request` subrequest for every /v1 request: the key's
name when admitted, else why not (missing or unknown key, rate limit, quota). `settle` takes a
replica's report of a finished request: it frees the request's concurrency slot, charges its
tokens, counts it and writes its usage line. The HTTP side is runtime.gatekeeper.

Limits (docs/configuration.md, `platform.edge` and `platform.security`):
- a token bucket per key name (`rate_limit_rps`, `rate_limit_burst` + 1 at once, like nginx's
  `limit_req burst=... nodelay`), and one per client address for requests without a valid key
  (so a flood of random keys is throttled before it costs anything downstream);
- per key name: requests per sliding minute; tokens per sliding minute (charged at settle,
  checked at admission); generation requests in flight, each slot held until settled or until
  `read_timeout_s` passes.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from gpucluster.config import Config
from gpucluster.config.keys import Denial, KeyRing, NamedKey, Quota, effective_quota
from gpucluster.config.schema import SecurityConfig
from gpucluster.errors import InputError
from gpucluster.observability.key_metrics import NO_KEY, OTHER_MODEL
from gpucluster.runtime.edge_metrics import EdgeMetrics
from gpucluster.runtime.limits import Expiring, SlidingWindows, Slots, TokenBuckets
from gpucluster.runtime.usage_log import LastUsed, Usage, UsageLog

GENERATION_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
)
# Retry-After of a refusal for concurrency: when a slot frees is not known in advance.
CONCURRENCY_RETRY_S = 1
_MAX_FIELD = 256  # longest request id or path kept: they come from outside


@dataclass(frozen=True)
class Limits:
    """The edge's rate limit and how long an unsettled request may hold a slot."""

    rate_per_s: float
    burst: int
    slot_ttl_s: float

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        edge = config.platform.edge
        return cls(edge.rate_limit_rps, edge.rate_limit_burst, edge.read_timeout_s)


@dataclass(frozen=True)
class AuthRequest:
    """What nginx tells about a request it asks the gatekeeper about."""

    authorization: str | None
    client: str
    method: str = "GET"
    uri: str = "/"
    request_id: str | None = None

    @property
    def path(self) -> str:
        """The URI's path, its slashes folded, so every spelling of a route is one route."""
        path = re.sub(r"/+", "/", self.uri.split("?", 1)[0])[:_MAX_FIELD]
        return path.rstrip("/") or "/"

    @property
    def generation(self) -> bool:
        """Whether this request runs the engine (a concurrency slot is held for it)."""
        return self.method.upper() == "POST" and self.path in GENERATION_PATHS


@dataclass(frozen=True)
class Verdict:
    """The answer to nginx: 204 admitted, 401 no valid key, 403 refused (nginx sends 429)."""

    status: int
    headers: dict[str, str]


class InvalidSettlement(InputError, ValueError):
    """A /settle body that is not a report; the message names the field."""


def parse_settlement(data: Any) -> Usage:
    """A replica's report of a finished request, from /settle's JSON body; InvalidSettlement
    naming the first bad field."""
    if not isinstance(data, dict):
        raise InvalidSettlement("the body must be a JSON object")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= _MAX_FIELD:
        raise InvalidSettlement("request_id: a non-empty string is required")
    status = data.get("status")
    if not _is_int(status) or not 100 <= status <= 599:
        raise InvalidSettlement("status: an HTTP status code is required")
    return Usage(
        request_id=request_id,
        key=_optional(data, "key", str),
        model=_optional(data, "model", str),
        path=(_optional(data, "path", str) or "")[:_MAX_FIELD],
        status=status,
        prompt_tokens=_count(data, "prompt_tokens"),
        completion_tokens=_count(data, "completion_tokens"),
        ttft_ms=_milliseconds(data, "ttft_ms"),
        duration_ms=_milliseconds(data, "duration_ms"),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(data: dict, name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidSettlement(f"{name}: must be a {kind.__name__} or null")
    return value


def _count(data: dict, name: str) -> int:
    value = data.get(name)
    if value is None:
        return 0
    if not _is_int(value) or value < 0:
        raise InvalidSettlement(f"{name}: must be a whole number >= 0 or null")
    return value


def _milliseconds(data: dict, name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidSettlement(f"{name}: must be a number >= 0 or null")
    return float(value)


def _plain(message: str) -> str:
    """A message nginx can paste into a JSON string: ASCII, without `"` or `\\`."""
    text = message.replace('"', "'").replace("\\", "/")
    return text.encode("ascii", "replace").decode("ascii")


class Gatekeeper:
    """Admits or refuses requests at the edge and accounts for the ones that finish."""

    def __init__(
        self,
        ring: KeyRing,
        security: SecurityConfig,
        models: Iterable[str],
        limits: Limits,
        usage: UsageLog,
        last_used: LastUsed,
        metrics: EdgeMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._ring = ring
        self._security = security
        self._models = frozenset(models)
        self._limits = limits
        self._usage = usage
        self.last_used = last_used
        self.metrics = metrics
        self._wall = wall
        capacity = limits.burst + 1
        self._by_key = TokenBuckets(limits.rate_per_s, capacity, clock)
        self._by_address = TokenBuckets(limits.rate_per_s, capacity, clock)
        self._requests = SlidingWindows(clock)
        self._tokens = SlidingWindows(clock)
        self._slots = Slots(limits.slot_ttl_s, clock)
        self._settled = Expiring(limits.slot_ttl_s, clock)

    def auth(self, request: AuthRequest) -> Verdict:
        """Admit `request` (204 + X-Key-Name) or say why not (401/403 + X-Deny-*)."""
        found = self._ring.authenticate(request.authorization)
        if isinstance(found, NamedKey):
            return self._admit_key(found, request)
        limited = self._rate_limited(
            request,
            self._by_address,
            request.client,
            NO_KEY,
            "from one address without a valid API key",
        )
        if limited is not None:
            return limited
        if isinstance(found, Denial):
            return self._refuse(
                request, NO_KEY, found.code, found.message, None, error="unauthorized"
            )
        return self._admit(NO_KEY)

    def settle(self, report: Usage) -> None:
        """Account for a finished request: once per request id, however often it is reported."""
        if report.request_id in self._settled:
            return
        self._settled.put(report.request_id, True)
        self._slots.release(report.request_id)
        key = report.key if report.key in self._ring.names() else NO_KEY
        model = report.model if report.model in self._models else OTHER_MODEL
        if key != NO_KEY:
            self._tokens.add(key, report.prompt_tokens + report.completion_tokens)
        duration_s = report.duration_ms / 1000 if report.duration_ms is not None else None
        self.metrics.request(
            key,
            model,
            report.status,
            prompt_tokens=report.prompt_tokens,
            completion_tokens=report.completion_tokens,
            duration_s=duration_s,
        )
        self._usage.write(self._wall(), replace(report, key=key, model=model))

    def close(self) -> None:
        """Write what is pending (last use) and close the usage log."""
        self.last_used.flush()
        self._usage.close()

    def _admit_key(self, key: NamedKey, request: AuthRequest) -> Verdict:
        name = key.name
        limited = self._rate_limited(request, self._by_key, name, name, f"for key {name}")
        if limited is not None:
            return limited
        quota = effective_quota(key, self._security)
        over = self._over_quota(name, quota, request.generation)
        if over is not None:
            which, limit, wait = over
            self.metrics.quota_refusal(name, which)
            message = f"Quota exceeded for key {name}: {which} is {limit}."
            return self._refuse(
                request, name, "quota_exceeded", message, wait, error="quota_exceeded"
            )
        self._requests.add(name)
        if request.generation and quota.concurrent_requests is not None:
            self._slots.take(request.request_id or f"gatekeeper-{uuid.uuid4().hex}", name)
        return self._admit(name)

    def _over_quota(
        self, name: str, quota: Quota, generation: bool
    ) -> tuple[str, int, float] | None:
        """(quota, its limit, seconds until it admits again) of the first quota exceeded."""
        rpm = quota.requests_per_minute
        if rpm is not None and (wait := self._requests.wait_below(name, rpm)):
            return "requests_per_minute", rpm, wait
        if not generation:
            return None
        tpm = quota.tokens_per_minute
        if tpm is not None and (wait := self._tokens.wait_below(name, tpm)):
            return "tokens_per_minute", tpm, wait
        slots = quota.concurrent_requests
        if slots is not None and self._slots.count(name) >= slots:
            return "concurrent_requests", slots, CONCURRENCY_RETRY_S
        return None

    def _rate_limited(
        self, request: AuthRequest, buckets: TokenBuckets, owner: str, key: str, whose: str
    ) -> Verdict | None:
        """A refusal when `owner` (a key name or an address) has no token left, else None."""
        wait = buckets.take(owner)
        if not wait:
            return None
        message = (
            f"Rate limit exceeded: at most {self._limits.rate_per_s:g} requests per second {whose}."
        )
        return self._refuse(
            request, key, "rate_limit_exceeded", message, wait, error="rate_limited"
        )

    def _admit(self, name: str) -> Verdict:
        if name != NO_KEY:
            self.last_used.touch(name)
        return Verdict(204, {"X-Key-Name": name})

    def _refuse(
        self,
        request: AuthRequest,
        key: str,
        code: str,
        message: str,
        wait: float | None,
        *,
        error: str,
    ) -> Verdict:
        """Count and log a refusal; 401 for a key problem, else 403 (nginx answers 429)."""
        status = 401 if error == "unauthorized" else 429
        if key == NO_KEY:
            self.metrics.edge_refusal(code)
        self.metrics.request(key, OTHER_MODEL, status, error=error)
        usage = Usage(request.request_id, key, OTHER_MODEL, request.path, status)
        self._usage.write(self._wall(), usage, refused=code)
        headers = {"X-Deny-Code": code, "X-Deny-Message": _plain(message)}
        if wait:
            retry = max(1, math.ceil(wait))
            headers["X-Retry-After"] = str(retry)
            headers["X-Deny-Message"] = _plain(f"{message} Retry after {retry} s.")
        return Verdict(401 if status == 401 else 403, headers)
