"""Engine efficiency: served output throughput at saturation vs the same engine run offline.

Needs a platform started with `gpucluster up`. Loads an offline `vllm.LLM` in this process with
the platform's engine arguments for its first model, starts a bare vLLM OpenAI server with the
same arguments (as benchmarks/overhead.py does), then alternates rounds: the workload served
through our nginx and by the bare server, each by `gpucluster bench` at a concurrency above
`max_num_seqs` (the engine is saturated), and the same prompts through `LLM.chat` (one batch,
the engine schedules them). While one side runs, the others' engines idle. One round of each
warms up first and is not counted (an engine's first saturated batches run slower).

    .venv/bin/python benchmarks/efficiency.py --requests 64 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from overhead import BARE_PORT, start_bare_vllm, wait_ready  # beside this script

from gpucluster.config import load_config
from gpucluster.models import prepare_model
from gpucluster.ops.bench.workload import Workload


def offline_engine(model, weights: str):
    """An offline vLLM engine with the arguments the platform gives `model`."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(model.cpu_kvcache_gib)
    from vllm import LLM  # after the environment is set: the CPU worker reads it at start

    from gpucluster.serving.app import engine_kwargs

    return LLM(model=weights, **engine_kwargs(model))


def offline_round(llm, workload: Workload, requests: int) -> dict[str, float]:
    from vllm import SamplingParams

    conversations = [workload.request(i).messages for i in range(requests)]
    params = SamplingParams(max_tokens=workload.output_tokens, ignore_eos=True, temperature=0)
    started = time.perf_counter()
    outputs = llm.chat(conversations, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"output_tokens": tokens, "seconds": seconds, "output_throughput": tokens / seconds}


def served_round(args, url: str | None = None) -> dict[str, float]:
    target = ["--url", url] if url else []
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpucluster",
            "bench",
            "--json",
            *target,
            "--concurrency",
            str(args.concurrency),
            "-n",
            str(args.requests),
            "--input-tokens",
            str(args.input_tokens),
            "--output-tokens",
            str(args.output_tokens),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (run,) = json.loads(result.stdout)["runs"]
    return {
        "output_tokens": run["output_tokens"],
        "seconds": run["duration_s"],
        "output_throughput": run["output_throughput"],
        "failed": run["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="served concurrency (default: 2 x max_num_seqs)",
    )
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("efficiency-report.json"))
    args = parser.parse_args()
    config = load_config()
    model = config.models[0]
    args.concurrency = args.concurrency or 2 * model.max_num_seqs
    llm = offline_engine(model, prepare_model(model.source, config.platform.model_cache_dir))
    workload = Workload(input_tokens=args.input_tokens, output_tokens=args.output_tokens)
    bare = start_bare_vllm(Path("efficiency-bare-vllm.log"))
    bare_url = f"http://127.0.0.1:{BARE_PORT}/v1"
    try:
        wait_ready(bare_url)
        rounds = [
            {
                "platform": served_round(args),
                "bare": served_round(args, bare_url),
                "offline": offline_round(llm, workload, args.requests),
            }
            for _ in range(args.rounds + 1)
        ][1:]  # the first round warms every engine up
    finally:
        bare.terminate()
        bare.wait(timeout=60)
    for number, entry in enumerate(rounds, 1):
        offline = entry["offline"]["output_throughput"]
        entry["platform_vs_offline"] = entry["platform"]["output_throughput"] / offline
        entry["bare_vs_offline"] = entry["bare"]["output_throughput"] / offline
        print(
            f"round {number}: platform {entry['platform']['output_throughput']:.1f}, bare "
            f"{entry['bare']['output_throughput']:.1f}, offline {offline:.1f} tok/s; "
            f"platform/offline {entry['platform_vs_offline']:.2f}, "
            f"bare/offline {entry['bare_vs_offline']:.2f}",
            flush=True,
        )
    report = {
        "model": model.id,
        "max_num_seqs": model.max_num_seqs,
        **vars(args) | {"out": str(args.out)},
        "rounds": rounds,
        "platform_vs_offline": statistics.fmean(r["platform_vs_offline"] for r in rounds),
        "bare_vs_offline": statistics.fmean(r["bare_vs_offline"] for r in rounds),
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"mean platform/offline {report['platform_vs_offline']:.2f}, "
        f"bare/offline {report['bare_vs_offline']:.2f}; report: {args.out}"
    )


if __name__ == "__main__":
    main()
