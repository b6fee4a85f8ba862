"""Benchmark statistics on synthetic timings: percentiles, TPOT, ITL, goodput, usage tokens."""

from __future__ import annotations

import pytest

from gpucluster.ops.bench.stats import (
    RequestRecord,
    Slo,
    inter_token_gaps,
    meets_slo,
    percentile,
    run_stats,
    summarize,
    tpot,
)


def record(start=0.0, ttft=0.1, gaps=(0.02, 0.02, 0.02), tokens=4, ok=True, prompt=10, end=None):
    """A successful request: first chunk at start+ttft, then chunks `gaps` apart."""
    chunks = [start + ttft]
    for gap in gaps:
        chunks.append(chunks[-1] + gap)
    return RequestRecord(
        start=start,
        end=end if end is not None else chunks[-1],
        first_token=chunks[0],
        chunk_times=chunks,
        ok=ok,
        prompt_tokens=prompt,
        completion_tokens=tokens,
    )


def failed(kind="HTTP 500", message="HTTP 500: boom"):
    return RequestRecord(start=0.0, end=0.01, ok=False, error=message, error_kind=kind)


def test_percentiles_interpolate_linearly_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0]  # order does not matter
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3.7)  # rank 2.7: 3 + 0.7 x (4 - 3)
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_scales_seconds_to_milliseconds():
    s = summarize([0.1, 0.2, 0.3], 1000)
    assert s["count"] == 3
    assert s["mean"] == pytest.approx(200)
    assert s["p50"] == pytest.approx(200)
    assert s["p90"] == pytest.approx(280)
    assert summarize([])["p50"] is None and summarize([])["mean"] is None


def test_tpot_is_decode_time_over_tokens_after_the_first():
    assert tpot(e2e=1.1, ttft=0.1, completion_tokens=11) == pytest.approx(0.1)
    assert tpot(e2e=1.0, ttft=0.1, completion_tokens=1) is None
    assert tpot(e2e=1.0, ttft=None, completion_tokens=5) is None
    r = record(ttft=0.2, gaps=(0.05,) * 9, tokens=10)
    assert r.ttft == pytest.approx(0.2)
    assert r.e2e == pytest.approx(0.65)
    assert r.tpot == pytest.approx(0.05)


def test_inter_token_latency_is_the_gaps_between_content_chunks():
    assert inter_token_gaps([1.0, 1.5, 1.75]) == pytest.approx([0.5, 0.25])
    assert inter_token_gaps([1.0]) == []
    stats = run_stats([record(gaps=(0.01, 0.03)), record(gaps=(0.02,))], 1.0, Slo())
    assert stats["itl_ms"]["count"] == 3
    assert stats["itl_ms"]["p50"] == pytest.approx(20)
    assert stats["itl_ms"]["mean"] == pytest.approx(20)


def test_tokens_come_from_usage_not_from_chunk_counts():
    # A server may pack several tokens per chunk: 3 chunks, 12 tokens.
    r = record(gaps=(0.01, 0.01), tokens=12, prompt=100)
    no_usage = record(tokens=None, prompt=None)
    stats = run_stats([r, r, no_usage], duration=2.0, slo=Slo())
    assert stats["output_tokens"] == 24
    assert stats["input_tokens"] == 200
    assert stats["output_throughput"] == pytest.approx(12)
    assert stats["total_token_throughput"] == pytest.approx(112)
    assert stats["mean_output_tokens"] == 12
    assert stats["without_usage"] == 1
    assert stats["tpot_ms"]["count"] == 2  # TPOT needs the usage count


def test_counts_throughput_and_failures():
    stats = run_stats(
        [record(), record(), failed(), failed(), failed("ReadTimeout", "ReadTimeout: x")],
        duration=4.0,
        slo=Slo(),
    )
    assert (stats["requests"], stats["ok"], stats["failed"]) == (5, 2, 3)
    assert stats["request_throughput"] == pytest.approx(0.5)
    assert stats["ttft_ms"]["count"] == 2  # latencies only over successful requests
    assert stats["errors"][0] == {"kind": "HTTP 500", "count": 2, "example": "HTTP 500: boom"}
    assert stats["errors"][1]["kind"] == "ReadTimeout"
    assert stats["goodput"] is None and stats["good"] is None  # no SLO given


def test_goodput_counts_requests_meeting_every_given_slo():
    fast = record(ttft=0.05, gaps=(0.01,) * 3, tokens=4)  # TPOT 10 ms, e2e 80 ms
    slow_first = record(ttft=0.5, gaps=(0.01,) * 3, tokens=4)  # TTFT 500 ms
    slow_decode = record(ttft=0.05, gaps=(0.1,) * 3, tokens=4)  # TPOT 100 ms
    records = [fast, fast, slow_first, slow_decode, failed()]
    assert run_stats(records, 2.0, Slo(ttft_ms=100))["good"] == 3
    assert run_stats(records, 2.0, Slo(tpot_ms=50))["good"] == 3
    both = run_stats(records, 2.0, Slo(ttft_ms=100, tpot_ms=50))
    assert both["good"] == 2
    assert both["goodput"] == pytest.approx(1.0)
    assert run_stats(records, 2.0, Slo(e2e_ms=100))["good"] == 2
    assert run_stats(records, 2.0, Slo(e2e_ms=1))["goodput"] == 0


def test_slo_edge_cases():
    one_token = record(gaps=(), tokens=1)
    assert meets_slo(one_token, Slo(tpot_ms=1))  # nothing decoded after the first token
    no_first_token = RequestRecord(start=0, end=0.1, ok=True, completion_tokens=0)
    assert not meets_slo(no_first_token, Slo(ttft_ms=1000))
    assert meets_slo(no_first_token, Slo(e2e_ms=1000))
    assert not meets_slo(failed(), Slo(e2e_ms=1e9))
    assert meets_slo(record(ttft=0.1), Slo(ttft_ms=100))  # the limit itself is met
