"""Benchmark statistics over recorded request timings: pure functions, no I/O, no clock.

Definitions (docs/bench.md explains each):
- TTFT: first content chunk arrival - request start.
- end-to-end (e2e): end of the stream - request start.
- TPOT (time per output token after the first): (e2e - TTFT) / (completion_tokens - 1), with
  completion_tokens from the server's `usage`; requests with one token or fewer have none.
- ITL (inter-token latency): gaps between consecutive content chunks, pooled over requests. A
  server that batches several tokens per chunk shows fewer, longer gaps: ITL is per chunk.
- goodput: successful requests meeting every given SLO, per second of the run.
Percentiles interpolate linearly between the closest ranks (numpy's default "linear" method).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

QUANTILES = (50, 90, 95, 99)
MAX_ERROR_KINDS = 5


@dataclass
class RequestRecord:
    """One request's timings (seconds on the runner's clock) and outcome."""

    start: float
    end: float | None = None
    first_token: float | None = None
    chunk_times: list[float] = field(default_factory=list)  # arrival of every content chunk
    ok: bool = False
    error: str | None = None  # what went wrong, with the server's message
    error_kind: str | None = None  # "HTTP 500", "ReadTimeout", "stream error", ...: for counting
    prompt_tokens: int | None = None  # from the final `usage`, never counted from chunks
    completion_tokens: int | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start

    @property
    def e2e(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def itl(self) -> list[float]:
        return inter_token_gaps(self.chunk_times)

    @property
    def tpot(self) -> float | None:
        return tpot(self.e2e, self.ttft, self.completion_tokens)


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in milliseconds; None means not required."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))

    def as_dict(self) -> dict[str, float | None]:
        return {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "e2e_ms": self.e2e_ms}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must lie in [0, 100], not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    """Count, mean and p50/p90/p95/p99 of `values` times `scale` (1000: seconds to ms)."""
    scaled = [v * scale for v in values]
    summary: dict[str, float | None] = {
        "count": len(scaled),
        "mean": sum(scaled) / len(scaled) if scaled else None,
    }
    for q in QUANTILES:
        summary[f"p{q}"] = percentile(scaled, q)
    return summary


def tpot(e2e: float | None, ttft: float | None, completion_tokens: int | None) -> float | None:
    """Time per output token after the first; None when it is undefined (<= 1 token)."""
    if e2e is None or ttft is None or completion_tokens is None or completion_tokens <= 1:
        return None
    return (e2e - ttft) / (completion_tokens - 1)


def inter_token_gaps(chunk_times: Sequence[float]) -> list[float]:
    """Gaps between consecutive content-chunk arrivals."""
    return [b - a for a, b in pairwise(chunk_times)]


def meets_slo(record: RequestRecord, slo: Slo) -> bool:
    """Whether a request succeeded and every given SLO holds for it.

    A request without a first token fails a TTFT objective; one with a single output token has
    no TPOT and counts as meeting a TPOT objective (nothing was decoded after the first token).
    """
    if not record.ok:
        return False
    checks = (
        (slo.ttft_ms, record.ttft),
        (slo.e2e_ms, record.e2e),
        (slo.tpot_ms, record.tpot if record.tpot is not None else 0.0),
    )
    for limit_ms, value in checks:
        if limit_ms is not None and (value is None or value * 1000 > limit_ms):
            return False
    return True


def run_stats(records: Iterable[RequestRecord], duration: float, slo: Slo) -> dict[str, Any]:
    """Every figure of one run: counts, throughput, goodput, latency summaries in ms."""
    records = list(records)
    done = [r for r in records if r.ok]
    failed = len(records) - len(done)
    with_usage = [r for r in done if r.completion_tokens is not None]
    output_tokens = sum(r.completion_tokens or 0 for r in with_usage)
    input_tokens = sum(r.prompt_tokens or 0 for r in with_usage)
    per_s = (lambda n: n / duration) if duration > 0 else (lambda n: None)
    good = sum(meets_slo(r, slo) for r in records) if slo.given else None
    return {
        "requests": len(records),
        "ok": len(done),
        "failed": failed,
        "duration_s": duration,
        "request_throughput": per_s(len(done)),
        "output_throughput": per_s(output_tokens),
        "total_token_throughput": per_s(output_tokens + input_tokens),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "mean_input_tokens": input_tokens / len(with_usage) if with_usage else None,
        "mean_output_tokens": output_tokens / len(with_usage) if with_usage else None,
        "without_usage": len(done) - len(with_usage),
        "good": good,
        "goodput": per_s(good) if good is not None else None,
        "ttft_ms": summarize([r.ttft for r in done if r.ttft is not None], 1000),
        "tpot_ms": summarize([r.tpot for r in done if r.tpot is not None], 1000),
        "itl_ms": summarize([gap for r in done for gap in r.itl], 1000),
        "e2e_ms": summarize([r.e2e for r in done if r.e2e is not None], 1000),
        "errors": error_summary(r for r in records if not r.ok),
    }


def error_summary(failed: Iterable[RequestRecord]) -> list[dict[str, Any]]:
    """The most frequent kinds of failure, each with a count and one full message."""
    failed = list(failed)
    counts = Counter(r.error_kind or "error" for r in failed)
    examples: dict[str, str] = {}
    for r in failed:
        examples.setdefault(r.error_kind or "error", r.error or "")
    return [
        {"kind": kind, "count": count, "example": examples[kind]}
        for kind, count in counts.most_common(MAX_ERROR_KINDS)
    ]


def request_detail(record: RequestRecord, run_start: float) -> dict[str, Any]:
    """One request as JSON, times in ms relative to the run's start (for --details)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else (value - run_start) * 1000

    return {
        "start_ms": ms(record.start),
        "end_ms": ms(record.end),
        "ok": record.ok,
        "error": record.error,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "ttft_ms": None if record.ttft is None else record.ttft * 1000,
        "chunk_ms": [ms(t) for t in record.chunk_times],
    }
