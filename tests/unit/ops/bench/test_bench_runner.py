"""The runner end to end against an in-process fake OpenAI streaming server (no timing asserts)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gpucluster.ops.bench.report import build_report
from gpucluster.ops.bench.runner import BenchError, Endpoint, Runner, RunSpec, run_sweep
from gpucluster.ops.bench.stats import Slo
from gpucluster.ops.bench.workload import BenchRequest, Workload

A = Endpoint("A", "http://a.test/v1", "key-a", "fake-model")
B = Endpoint("B", "http://b.test/v1", None, "fake-model")


def bench(servers, make_client, clock, specs, endpoints=(A,), workload=None, slo=None, **runner_kw):
    slo = slo or Slo()
    workload = workload or Workload(input_tokens=12, output_tokens=8, seed=1)

    async def go():
        async with make_client(servers) as client:
            runner = Runner(client, clock, **runner_kw)
            return await run_sweep(runner, list(endpoints), specs, workload)

    results = asyncio.run(go())
    return build_report(results, list(endpoints), workload, slo, ignore_eos=True)


def test_fixed_concurrency_counts_every_token_from_usage(fake, make_client, clock):
    report = bench({"a.test": fake}, make_client, clock, [RunSpec("concurrency", 4, requests=20)])
    run = report["runs"][0]
    assert report["ok"] is True
    assert (run["requests"], run["ok"], run["failed"]) == (20, 20, 0)
    assert run["output_tokens"] == 20 * 8  # requests x max_tokens
    assert run["mean_input_tokens"] == 12  # the fake counts words: one word per wanted token
    assert run["ttft_ms"]["count"] == 20
    assert run["itl_ms"]["count"] == 20 * 7
    assert run["tpot_ms"]["count"] == 20
    assert run["output_throughput"] > 0 and run["request_throughput"] > 0
    assert run["label"] == "c=4"


def test_requests_are_streamed_with_usage_exact_length_and_the_key(fake, make_client, clock):
    bench({"a.test": fake}, make_client, clock, [RunSpec("concurrency", 2, requests=3)])
    body = fake.bodies[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 8
    assert body["ignore_eos"] is True
    assert body["model"] == "fake-model"
    assert fake.headers[0]["authorization"] == "Bearer key-a"
    assert len({b["messages"][0]["content"] for b in fake.bodies}) == 3  # distinct prompts


def test_no_ignore_eos_leaves_the_extension_out(fake, make_client, clock):
    bench(
        {"a.test": fake},
        make_client,
        clock,
        [RunSpec("concurrency", 1, requests=2)],
        ignore_eos=False,
    )
    assert all("ignore_eos" not in body for body in fake.bodies)


def test_server_errors_are_counted_as_failures(make_fake, make_client, clock):
    failing = make_fake(fail_every=4)
    report = bench(
        {"a.test": failing}, make_client, clock, [RunSpec("concurrency", 3, requests=20)]
    )
    run = report["runs"][0]
    assert report["ok"] is False
    assert (run["ok"], run["failed"]) == (15, 5)
    assert run["output_tokens"] == 15 * 8
    assert run["errors"][0]["kind"] == "HTTP 500"
    assert run["errors"][0]["count"] == 5
    assert "engine failed" in run["errors"][0]["example"]


def test_errors_mid_stream_and_unreachable_servers_fail_requests(make_fake, make_client, clock):
    broken = make_fake(error_event=True)
    report = bench({"a.test": broken}, make_client, clock, [RunSpec("concurrency", 1, requests=2)])
    assert report["runs"][0]["errors"][0]["kind"] == "stream error"
    assert "engine died mid-stream" in report["runs"][0]["errors"][0]["example"]
    nowhere = Endpoint("A", "http://nowhere.test/v1", None, "m")
    report = bench(
        {}, make_client, clock, [RunSpec("concurrency", 1, requests=2)], endpoints=[nowhere]
    )
    assert report["runs"][0]["failed"] == 2
    assert report["runs"][0]["errors"][0]["kind"] == "ConnectError"


def test_a_stream_without_usage_succeeds_but_is_flagged(make_fake, make_client, clock):
    report = bench(
        {"a.test": make_fake(usage=False)},
        make_client,
        clock,
        [RunSpec("concurrency", 1, requests=3)],
    )
    run = report["runs"][0]
    assert run["ok"] == 3 and run["without_usage"] == 3
    assert run["output_tokens"] == 0  # never guessed from chunk counts


def test_poisson_rate_runs_send_the_same_seeded_schedule(fake, make_client, clock):
    spec = RunSpec("rate", 5.0, requests=12, seed=42)

    async def starts():
        async with make_client({"a.test": fake}) as client:
            result = await Runner(client, clock).run(A, spec, Workload(output_tokens=2))
        return [r.start - result.start for r in result.records], result

    first, result = asyncio.run(starts())
    second, _ = asyncio.run(starts())
    assert len(result.records) == 12 and all(r.ok for r in result.records)
    assert first == pytest.approx(second, abs=0.05)  # the fake clock adds 1 ms per reading
    assert first == sorted(first)


def test_a_duration_bounds_a_run(fake, make_client, clock):
    async def go(spec):
        async with make_client({"a.test": fake}) as client:
            return await Runner(client, clock).run(A, spec, Workload(output_tokens=4))

    closed = asyncio.run(go(RunSpec("concurrency", 2, duration=0.2)))
    assert 0 < len(closed.records) < 1000
    opened = asyncio.run(go(RunSpec("rate", 50.0, duration=1.0)))
    assert 10 < len(opened.records) < 200  # about 50 arrivals in 1 s
    with pytest.raises(ValueError):
        asyncio.run(go(RunSpec("concurrency", 1)))


def test_compare_mode_interleaves_runs_and_reports_ratios(make_fake, make_client, clock):
    servers = {"a.test": make_fake(), "b.test": make_fake()}
    specs = [RunSpec("concurrency", c, requests=6) for c in (1, 2, 3)]
    report = bench(servers, make_client, clock, specs, endpoints=(A, B))
    assert [(r["endpoint"], r["label"]) for r in report["runs"]] == [
        ("A", "c=1"),
        ("B", "c=1"),
        ("B", "c=2"),
        ("A", "c=2"),
        ("A", "c=3"),
        ("B", "c=3"),
    ]
    assert len(servers["a.test"].bodies) == len(servers["b.test"].bodies) == 18
    assert [c["label"] for c in report["comparisons"]] == ["c=1", "c=2", "c=3"]
    runs = {(r["endpoint"], r["label"]): r for r in report["runs"]}
    for row in report["comparisons"]:
        a, b = runs[("A", row["label"])], runs[("B", row["label"])]
        ratios = row["ratios"]
        assert ratios["output_throughput"] == pytest.approx(
            b["output_throughput"] / a["output_throughput"]
        )
        assert ratios["ttft_p50"] == pytest.approx(b["ttft_ms"]["p50"] / a["ttft_ms"]["p50"])
        assert ratios["e2e_p50"] == pytest.approx(b["e2e_ms"]["p50"] / a["e2e_ms"]["p50"])
        assert ratios["goodput"] is None  # no SLO given
    # Identical fakes on a clock that only counts readings: the same work takes the same time.
    assert report["comparisons"][0]["ratios"]["output_throughput"] == pytest.approx(1.0)


def test_compare_against_a_failing_server(make_fake, make_client, clock):
    servers = {"a.test": make_fake(), "b.test": make_fake(fail_every=2)}
    report = bench(
        servers,
        make_client,
        clock,
        [RunSpec("concurrency", 1, requests=10)],
        endpoints=(A, B),
        slo=Slo(e2e_ms=1e6),
    )
    a, b = report["runs"]
    assert (a["failed"], b["failed"]) == (0, 5)
    assert report["ok"] is False
    ratios = report["comparisons"][0]["ratios"]
    assert ratios["request_throughput"] == pytest.approx(
        b["request_throughput"] / a["request_throughput"]
    )
    assert ratios["goodput"] == pytest.approx(b["goodput"] / a["goodput"])


def test_the_first_model_is_discovered_and_failures_are_explained(fake, make_client, clock):
    async def first(servers, endpoint):
        async with make_client(servers) as client:
            return await Runner(client, clock).first_model(endpoint)

    assert asyncio.run(first({"a.test": fake}, Endpoint("A", "http://a.test/v1"))) == "fake-model"
    with pytest.raises(BenchError, match="cannot reach http://x.test/v1/models"):
        asyncio.run(first({}, Endpoint("A", "http://x.test/v1")))
    with pytest.raises(BenchError, match="HTTP 404"):
        asyncio.run(first({"a.test": fake}, Endpoint("A", "http://a.test/wrong")))


def test_warmup_reports_the_first_failure(make_fake, make_client, clock):
    async def warm(server, count):
        async with make_client({"a.test": server}) as client:
            return await Runner(client, clock).warmup(A, Workload(output_tokens=64), count)

    assert asyncio.run(warm(make_fake(), 2)) is None
    failure = asyncio.run(warm(make_fake(fail_every=1), 1))
    assert failure is not None and failure.error_kind == "HTTP 500"


def test_reasoning_chunks_count_as_tokens(make_client, clock):
    def handler(request: httpx.Request) -> httpx.Response:
        text = (
            'data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n'
            'data: {"choices":[{"delta":{"content":"answer"}}]}\n\n'
            'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
            "data: [DONE]\n\n"
        )
        return httpx.Response(200, text=text)

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await Runner(client, clock).one(
                A, BenchRequest([{"role": "user", "content": "q"}], 2)
            )

    record = asyncio.run(go())
    assert record.ok and len(record.chunk_times) == 2 and record.completion_tokens == 2
