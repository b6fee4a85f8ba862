"""benchmarks/prefix_routing.py without a stack: its workload, its metrics reading, its config
and its summary (the live run is the engineer's: it starts the platform twice)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from gpucluster.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import prefix_routing as bench  # a script beside the other benchmarks

# What Ray's metrics endpoint serves (shape copied from a live Ray 2.60 export, trimmed).
COMMON = 'Component="core_worker",NodeAddress="127.0.0.1",SessionName="session_x",Version="2.60.0"'
SAMPLE = f"""\
# HELP ray_vllm_prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE ray_vllm_prefix_cache_queries_total counter
ray_vllm_prefix_cache_queries_total{{{COMMON},ReplicaId="aaa",engine="0",model_name="smollm2-135m-instruct"}} 700.0
ray_vllm_prefix_cache_queries_total{{{COMMON},ReplicaId="bbb",engine="0",model_name="smollm2-135m-instruct"}} 1500.0
ray_vllm_prefix_cache_queries_total{{{COMMON},ReplicaId="ccc",engine="0",model_name="minilm"}} 99.0
# HELP ray_vllm_prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE ray_vllm_prefix_cache_hits_total counter
ray_vllm_prefix_cache_hits_total{{{COMMON},ReplicaId="aaa",engine="0",model_name="smollm2-135m-instruct"}} 384.0
ray_vllm_prefix_cache_hits_total{{{COMMON},ReplicaId="bbb",engine="0",model_name="smollm2-135m-instruct"}} 1024.0
ray_vllm_prefix_cache_hits_created{{{COMMON},ReplicaId="bbb",engine="0",model_name="smollm2-135m-instruct"}} 1.7e9
# TYPE ray_vllm_request_success_total counter
ray_vllm_request_success_total{{{COMMON},ReplicaId="aaa",engine="0",finished_reason="length",model_name="smollm2-135m-instruct"}} 2.0
ray_vllm_request_success_total{{{COMMON},ReplicaId="aaa",engine="0",finished_reason="stop",model_name="smollm2-135m-instruct"}} 3.0
ray_vllm_request_success_total{{{COMMON},ReplicaId="bbb",engine="0",finished_reason="length",model_name="smollm2-135m-instruct"}} 4.0
ray_vllm_request_success_total{{{COMMON},ReplicaId="ccc",engine="0",finished_reason="stop",model_name="minilm"}} 7.0
ray_vllm_num_requests_running{{{COMMON},ReplicaId="aaa",engine="0",model_name="smollm2-135m-instruct"}} 1.0
ray_node_cpu_utilization{{ip="127.0.0.1",note="a \\"quoted\\" value, {{braces}}"}} 12.5 1700000000000
up 1
"""
MODEL = "smollm2-135m-instruct"


def test_the_workload_is_deterministic():
    one = bench.make_conversations(8, 4, 560, seed=0)
    assert one == bench.make_conversations(8, 4, 560, seed=0)
    assert one != bench.make_conversations(8, 4, 560, seed=1)
    assert bench.warmup_prompts(4) == bench.warmup_prompts(4)


def test_each_conversation_has_its_own_long_document():
    conversations = bench.make_conversations(8, 4, 560)
    assert [c.index for c in conversations] == list(range(8))
    for c in conversations:
        assert 560 <= len(c.document.split()) <= 560 + 14 + 20  # last sentence, closing request
        assert len(c.questions) == 4 and len(set(c.questions)) == 4
    documents = [c.document for c in conversations]
    # No two share a prefix worth a cache block or the router's 10% match threshold.
    longest = max(
        len(os.path.commonprefix([a, b]))
        for i, a in enumerate(documents)
        for b in documents[i + 1 :]
    )
    assert longest < 20
    for prompt in bench.warmup_prompts(4):
        assert all(len(os.path.commonprefix([prompt[0]["content"], d])) < 20 for d in documents)


def test_every_turn_extends_the_previous_one():
    (conversation,) = bench.make_conversations(1, 4, 100)
    answers = ["first answer", "second answer", "third answer"]
    requests = [conversation.messages(answers[:turn]) for turn in range(4)]
    assert requests[0] == [
        {"role": "system", "content": conversation.document},
        {"role": "user", "content": conversation.questions[0]},
    ]
    for earlier, later in itertools.pairwise(requests):
        # the whole earlier request, its answer, then the next question
        assert later[: len(earlier)] == earlier
        assert later[len(earlier)]["role"] == "assistant"
        assert later[-1]["role"] == "user"
    assert [m["role"] for m in requests[3]] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert requests[3][-2]["content"] == "third answer"


def test_metrics_are_summed_per_replica_for_the_model():
    replicas = bench.per_replica(SAMPLE, MODEL)
    assert replicas == {
        "aaa": {"queries": 700.0, "hits": 384.0, "requests": 5.0},
        "bbb": {"queries": 1500.0, "hits": 1024.0, "requests": 4.0},
    }
    assert bench.totals(replicas) == {"queries": 2200.0, "hits": 1408.0, "requests": 9.0}
    assert bench.hit_rate(bench.totals(replicas)) == pytest.approx(1408 / 2200)
    assert bench.per_replica(SAMPLE, "minilm") == {
        "ccc": {"queries": 99.0, "hits": 0.0, "requests": 7.0}
    }


def test_counter_names_without_the_total_suffix_count_too():
    text = 'ray_vllm_prefix_cache_queries{ReplicaId="r",model_name="m"} 10\n'
    assert bench.per_replica(text, "m") == {"r": {"queries": 10.0, "hits": 0.0, "requests": 0.0}}


def test_the_parser_reads_escaped_labels_and_timestamps():
    samples = {name: (labels, value) for name, labels, value in bench.parse_samples(SAMPLE)}
    labels, value = samples["ray_node_cpu_utilization"]
    assert labels == {"ip": "127.0.0.1", "note": 'a "quoted" value, {braces}'}
    assert value == 12.5
    assert samples["up"] == ({}, 1.0)


def test_the_difference_counts_a_replica_first_seen_after_from_zero():
    before = {"aaa": {"queries": 100.0, "hits": 0.0, "requests": 1.0}}
    after = {
        "aaa": {"queries": 900.0, "hits": 512.0, "requests": 3.0},
        "bbb": {"queries": 750.0, "hits": 0.0, "requests": 1.0},
    }
    assert bench.difference(before, after) == {
        "aaa": {"queries": 800.0, "hits": 512.0, "requests": 2.0},
        "bbb": {"queries": 750.0, "hits": 0.0, "requests": 1.0},
    }


def test_the_workload_sends_each_history_streamed_and_greedy(make_fake, make_transport):
    fake = make_fake()
    conversations = bench.make_conversations(3, 3, 50)
    lines: list[str] = []

    async def go():
        import httpx

        async with httpx.AsyncClient(transport=make_transport({"a.test": fake})) as client:
            return await bench.run_workload(
                client, "http://a.test/v1", "fake-model", conversations, 2, 5, lines.append
            )

    turns, wall = asyncio.run(go())
    assert len(turns) == 9 and all(t.ok for t in turns) and wall > 0
    assert all(t.ttft_s is not None and t.completion_tokens == 5 for t in turns)
    assert len(lines) == 3 and lines[-1].endswith("(3/3 done)")
    assert {(t.conversation, t.turn) for t in turns} == {(c, t) for c in range(3) for t in range(3)}
    for body in fake.bodies:
        assert body["stream"] is True and body["temperature"] == 0 and body["max_tokens"] == 5
        assert body["stream_options"] == {"include_usage": True}
    last = [b for b in fake.bodies if len(b["messages"]) == 6]
    assert len(last) == 3  # each conversation's third turn carries two answers
    for body in last:
        assert [m["content"] for m in body["messages"] if m["role"] == "assistant"] == [
            " t0 t1 t2 t3 t4"
        ] * 2


def test_a_failed_turn_ends_its_conversation(make_fake, make_transport):
    fake = make_fake(fail_every=2)

    async def go():
        import httpx

        async with httpx.AsyncClient(transport=make_transport({"a.test": fake})) as client:
            return await bench.run_workload(
                client, "http://a.test/v1", "fake-model", bench.make_conversations(1, 4, 20), 1, 3
            )

    turns, _ = asyncio.run(go())
    assert [t.ok for t in turns] == [True, False]
    assert turns[1].error.startswith("500: engine failed")


def args(**overrides) -> argparse.Namespace:
    return argparse.Namespace(
        **({"max_num_seqs": 4, "kv_cache_gib": 1, "direct_baseline": False} | overrides)
    )


@pytest.mark.parametrize("router", bench.ROUTERS)
def test_both_routers_run_two_fixed_replicas_through_the_ingress(router, tmp_path):
    config = Config.model_validate(bench.platform_config(router, tmp_path / "state", args()))
    (model,) = config.models
    assert model.router == router
    assert (model.replicas.min, model.replicas.max) == (2, 2)
    assert model.engine_kwargs == {"enable_prefix_caching": True}
    assert (model.max_num_seqs, model.cpu_kvcache_gib) == (4, 1)
    assert config.platform.state_dir == tmp_path / "state"
    assert not config.serves_directly


def test_the_direct_baseline_serves_the_default_router_directly(tmp_path):
    direct = args(direct_baseline=True)
    assert Config.model_validate(
        bench.platform_config("power_of_two", tmp_path, direct)
    ).serves_directly
    assert not Config.model_validate(
        bench.platform_config("prefix_cache_affinity", tmp_path, direct)
    ).serves_directly


def test_rounds_alternate_which_router_goes_first():
    assert bench.order(3) == [
        (0, "power_of_two"),
        (0, "prefix_cache_affinity"),
        (1, "prefix_cache_affinity"),
        (1, "power_of_two"),
        (2, "power_of_two"),
        (2, "prefix_cache_affinity"),
    ]


def run(router: str, queries: float, hits: float, ttft_p50: float, wall: float) -> dict:
    return {
        "router": router,
        "prefix_cache": {"queries": queries, "hits": hits, "requests": 32},
        "ttft_ms": {"p50": ttft_p50, "p90": 2 * ttft_p50},
        "ttft_ms_later_turns": {"p50": ttft_p50 / 2},
        "wall_s": wall,
        "failed": 0,
        "requests_per_replica": [16, 16],
    }


def test_summary_pools_hit_rates_and_gives_prefix_over_default():
    runs = [
        run("power_of_two", 1000, 400, 300, 60),
        run("prefix_cache_affinity", 1000, 800, 200, 50),
        run("prefix_cache_affinity", 3000, 2400, 100, 40),
        run("power_of_two", 3000, 1200, 500, 80),
    ]
    summary = bench.router_summary(runs)
    assert summary["power_of_two"]["hit_rate"] == pytest.approx(0.4)
    assert summary["prefix_cache_affinity"]["hit_rate"] == pytest.approx(0.8)
    assert summary["prefix_cache_affinity"]["ttft_p50_ms"] == pytest.approx(150)
    assert summary["power_of_two"]["requests_per_replica"] == [[16, 16], [16, 16]]
    ratio = bench.ratios(summary)
    assert ratio["hit_rate"] == pytest.approx(2.0)
    assert ratio["ttft_p50_ms"] == pytest.approx(150 / 400)
    assert ratio["wall_s"] == pytest.approx(45 / 70)
    text = bench.table(summary, ratio)
    assert "prefix / default" in text and "16/16, 16/16" in text


def test_a_whole_run_against_a_fake_platform(make_fake, serve_fake, monkeypatch, tmp_path, capsys):
    """main() end to end: `up` and `down` faked, the chats served by a fake OpenAI server on a
    socket, the metrics made up from what it served (two replicas, a fixed hit rate)."""
    fake = make_fake(model=bench.BUILTIN_MODEL_ID, api_key="operator-key-0123")
    served = serve_fake(fake)
    calls: list[tuple[str, dict]] = []  # (command, its environment, the config's router)

    def cli(env, command, timeout, check=True):
        config = Path(env["GPUCLUSTER_CONFIG"])
        calls.append((command, env, "prefix" if "prefix_cache" in config.read_text() else "p2"))
        if command == "up":
            state = Path(env["GPUCLUSTER_CONFIG"]).parent / "state"
            state.mkdir()
            (state / "operator-key").write_text("operator-key-0123\n")
            return {
                "ok": True,
                "seconds": 1.0,
                "endpoints": {
                    "openai_api": served.url,
                    "ray_metrics": "http://metrics.test/metrics",
                },
            }
        return {"ok": True}

    def scrape(url, model):
        served = len(fake.bodies)  # since the first platform started; a also served up's probe
        rate = 0.75 if calls[-1][2] == "prefix" else 0.25
        return {
            "a": {
                "queries": 100.0 * served,
                "hits": rate * 100 * served,
                "requests": 1.0 + served - served // 2,
            },
            "b": {"queries": 0.0, "hits": 0.0, "requests": float(served // 2)},
        }

    monkeypatch.setattr(bench, "cli", cli)
    monkeypatch.setattr(bench, "scrape", scrape)
    monkeypatch.setattr(bench, "busy_ports", lambda path, wait_s=0: [])
    monkeypatch.setattr(bench, "METRICS_SETTLE_S", 0)
    monkeypatch.setattr("gpucluster.ops.bundle.versions", lambda: {"ray": "2.60.0"})
    monkeypatch.setenv("GPUCLUSTER_API_KEYS", "must-not-reach-up")
    out = tmp_path / "report.json"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "prefix_routing.py",
            "--conversations",
            "3",
            "--turns",
            "2",
            "--prefix-words",
            "40",
            "--warmup",
            "2",
            "--json",
            "--out",
            str(out),
        ],
    )
    assert bench.main() == 0
    assert [(c, router) for c, _, router in calls] == [
        ("up", "p2"),
        ("down", "p2"),
        ("up", "prefix"),
        ("down", "prefix"),
    ]
    assert all("GPUCLUSTER_API_KEYS" not in env for _, env, _ in calls)
    assert len(fake.bodies) == 2 * (2 + 3 * 2)  # per platform: warm-up, then 3 chats x 2 turns
    report = json.loads(capsys.readouterr().out)
    assert [r["router"] for r in report["runs"]] == list(bench.ROUTERS)
    first = report["runs"][0]
    assert (first["requests"], first["ok"], first["failed"]) == (6, 6, 0)
    assert first["prefix_cache"]["queries"] == 600 and first["hit_rate"] == pytest.approx(0.25)
    assert sum(first["requests_per_replica"]) == 6
    assert report["ratio_prefix_over_default"]["hit_rate"] == pytest.approx(3.0)
    assert report["machine"]["cpus"] == os.cpu_count()
    assert "turns" in json.loads(out.read_text())["runs"][0]


def test_a_port_in_use_is_found_before_anything_starts(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        config = tmp_path / "platform.yaml"
        config.write_text(f"platform:\n  ports:\n    nginx_http: {port}\n")
        assert port in bench.busy_ports(config)
