"""The platform's serving path against a bare vLLM server, judged by vLLM's own client; and
both servers' cold start.

Throughput and latency (default): needs a platform started with `gpucluster up`. Starts a bare
`python -m vllm.entrypoints.openai.api_server` with the same model and engine arguments
(benchmarks/overhead.py), then runs vLLM's benchmark client (`vllm.benchmarks.serve`) on the
random dataset against both, interleaved (benchmarks/vllm_client.py): after a warm-up run on
each, for each concurrency c, 4*c prompts to each server, `--rounds` times.

    .venv/bin/python benchmarks/serving_path.py --concurrency 1,8,32 --rounds 3

Cold start (`--cold-start`): stops the platform, then `--rounds` times: a bare vLLM server from
its process start to its answer to the request `up` waits for, then `gpucluster up --json`
from its deploy phase to that answer through nginx (the phases `up` reports), one after the
other, never together.

    .venv/bin/python benchmarks/serving_path.py --cold-start --rounds 2

Cross-check (`--cross-check`): `gpucluster bench` against vLLM's client on the same platform
and workload, alternating, `--rounds` times; prints each figure of ours over vLLM's.

    .venv/bin/python benchmarks/serving_path.py --cross-check --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from overhead import BARE_PORT, start_bare_vllm, wait_ready
from vllm_client import FIGURES, Target, bench, report, versus_bare

from gpucluster.config import load_config
from gpucluster.models import prepare_model
from gpucluster.runtime.readiness import answers

GPUCLUSTER = [sys.executable, "-m", "gpucluster"]


def platform_target() -> Target:
    config = load_config()
    keys = config.platform.security.api_keys_file
    key = keys.read_text().split()[0] if keys else "none"
    return Target("platform", f"http://127.0.0.1:{config.platform.ports.nginx_http}", key)


def bare_cold_start(model: str) -> dict:
    started = time.monotonic()
    bare = start_bare_vllm(Path("serving-path-bare-vllm.log"))
    try:
        wait_ready(f"http://127.0.0.1:{BARE_PORT}/v1", timeout_s=600)
        ready = time.monotonic() - started
        # the request `gpucluster up` waits for through nginx (its "first token" phase)
        ok, detail = answers(f"http://127.0.0.1:{BARE_PORT}/v1", model, api_key=None, timeout_s=60)
        if not ok:
            raise RuntimeError(f"bare vLLM does not answer: {detail}")
        return {
            "target": "bare",
            "ready_s": round(ready, 1),
            "to_first_token_s": round(time.monotonic() - started, 1),
        }
    finally:
        bare.terminate()
        bare.wait(timeout=60)


def platform_cold_start() -> dict:
    up = subprocess.run([*GPUCLUSTER, "up", "--json"], capture_output=True, text=True, check=True)
    phases: dict[str, float] = json.loads(up.stdout)["phases"]
    deploy = next(v for k, v in phases.items() if k.startswith("deploy"))
    token = next(v for k, v in phases.items() if k.startswith("first token"))
    return {
        "target": "platform",
        "phases": phases,
        "to_first_token_s": round(deploy + token, 1),
        "up_total_s": round(sum(phases.values()), 1),
    }


def cold_start(model: str, rounds: int, out: Path) -> None:
    subprocess.run([*GPUCLUSTER, "down"], capture_output=True, check=False)
    runs = []
    for _ in range(rounds):
        runs.append(bare_cold_start(model))
        print(runs[-1], flush=True)
        runs.append(platform_cold_start())
        print(runs[-1], flush=True)
        subprocess.run([*GPUCLUSTER, "down"], capture_output=True, check=True)
    out.write_text(json.dumps(runs, indent=2))
    bare = statistics.mean(r["to_first_token_s"] for r in runs if r["target"] == "bare")
    platform = statistics.mean(r["to_first_token_s"] for r in runs if r["target"] == "platform")
    print(
        f"to first token: bare {bare:.1f} s, platform deploy {platform:.1f} s "
        f"(+{platform - bare:.1f} s); runs: {out}"
    )


def gpucluster_bench(
    target: Target, concurrency: int, input_tokens: int, output_tokens: int
) -> dict:
    """One `gpucluster bench --json` run with vLLM's client's workload; the figures it shares."""
    argv = [
        *GPUCLUSTER,
        "bench",
        "--url",
        f"{target.url}/v1",
        "--api-key",
        target.key,
        "--concurrency",
        str(concurrency),
        "-n",
        str(4 * concurrency),
        "--input-tokens",
        str(input_tokens),
        "--output-tokens",
        str(output_tokens),
        "--ignore-eos",
        "--seed",
        str(concurrency),
        "--json",
    ]
    run = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    (result,) = run["runs"]
    return {
        "completed": result["ok"],
        "failed": result["failed"],
        "output_throughput": result["output_throughput"],
        "median_ttft_ms": result["ttft_ms"]["p50"],
        "median_itl_ms": result["itl_ms"]["p50"],
    }


def cross_check(model: str, tokenizer: str, concurrencies: list[int], args) -> None:
    target = platform_target()
    tokens = (args.input_tokens, args.output_tokens)
    # Warm-up, not measured: each client's prompts once at every concurrency (the engine's
    # prefix cache then holds both clients' prompts alike).
    for c in concurrencies:
        bench(target, model, tokenizer, c, *tokens)
        gpucluster_bench(target, c, *tokens)
    runs = []
    for round_no in range(args.rounds):
        for c in concurrencies:
            for name in ("vllm-bench", "gpucluster-bench"):
                if name == "vllm-bench":
                    result = bench(target, model, tokenizer, c, *tokens)
                else:
                    result = gpucluster_bench(target, c, *tokens)
                runs.append(
                    {
                        "target": name,
                        "concurrency": c,
                        "round": round_no,
                        **{k: result[k] for k in ("completed", "failed", *FIGURES)},
                    }
                )
    report(runs, "vllm-bench", "gpucluster-bench", args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--cold-start", action="store_true")
    parser.add_argument("--cross-check", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("serving-path.json"))
    args = parser.parse_args()
    config = load_config()
    model = config.models[0]
    if args.cold_start:
        cold_start(model.id, args.rounds, args.out)
        return
    tokenizer = prepare_model(model.source, config.platform.model_cache_dir)
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    if args.cross_check:
        cross_check(model.id, tokenizer, concurrencies, args)
        return
    runs = versus_bare(
        platform_target(),
        model.id,
        tokenizer,
        concurrencies,
        args.rounds,
        args.input_tokens,
        args.output_tokens,
        Path("serving-path-bare-vllm.log"),
    )
    report(runs, "bare", "platform", args.out)


if __name__ == "__main__":
    main()
