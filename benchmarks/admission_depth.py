"""How many requests each replica should admit: `max_ongoing_requests` at 1x and 2x max_num_seqs.

With 1x, the engine has no queue of its own: each finished sequence leaves a batch slot empty
until Serve routes the next request to it. With 2x, a full batch waits in the engine. Needs a
platform serving the built-in model twice, under two ids that differ only in admission:

    models:
      - {id: admit-1x, max_num_seqs: 16, admission: {max_ongoing_requests: 16}}
      - {id: admit-2x, max_num_seqs: 16}        # default: 2 x max_num_seqs

Runs `gpucluster bench` against the two alternately (A B A B ...) at a concurrency of
3 x max_num_seqs straight to Serve (no API keys configured), and prints output throughput and
TTFT p50 of each with the ratio B / A.

    .venv/bin/python benchmarks/admission_depth.py [--rounds 2] [--concurrency 48] [--requests 96]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

MODELS = ("admit-1x", "admit-2x")


def bench(model: str, args: argparse.Namespace) -> dict:
    argv = [
        sys.executable,
        "-m",
        "gpucluster",
        "bench",
        "--json",
        "--url",
        args.url,
        "--model",
        model,
        "--concurrency",
        str(args.concurrency),
        "-n",
        str(args.requests),
        "--input-tokens",
        "128",
        "--output-tokens",
        str(args.output_tokens),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    (run,) = json.loads(result.stdout)["runs"]
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Serve directly: admission happens there, and nginx's per-client rate limit would turn
    # a 48-request burst away before it.
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--output-tokens", type=int, default=64)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {m: [] for m in MODELS}
    for _ in range(args.rounds):
        for model in MODELS:
            runs[model].append(bench(model, args))
    summary = {}
    for model, results in runs.items():
        summary[model] = {
            "output_tokens_per_s": statistics.mean(r["output_throughput"] for r in results),
            "ttft_p50_ms": statistics.mean(r["ttft_ms"]["p50"] for r in results),
            "failed": sum(r["failed"] for r in results),
        }
    a, b = (summary[m] for m in MODELS)
    summary["ratio_2x_over_1x"] = {
        "output_tokens_per_s": round(b["output_tokens_per_s"] / a["output_tokens_per_s"], 3),
        "ttft_p50_ms": round(b["ttft_p50_ms"] / a["ttft_p50_ms"], 3),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
