"""Serving overhead of the compose stack: its nginx vs a bare vLLM server, judged by vLLM's own client.

Needs the CPU compose stack up (`make compose-up`). Starts a bare
`python -m vllm.entrypoints.openai.api_server` on this host with the engine arguments of the
built-in model (benchmarks/overhead.py's), then runs vLLM's benchmark client
(`vllm.benchmarks.serve`, the referee no one here wrote) on the random dataset against both,
interleaved: after a warm-up run on each, for each concurrency c, 4*c prompts to bare vLLM,
then to the compose stack, for `--rounds` rounds. Prints ratios; writes every run to `--out`.

    .venv/bin/python benchmarks/compose_overhead.py --concurrency 1,8,32 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from overhead import BARE_PORT, start_bare_vllm, wait_ready
from vllm.benchmarks.serve import add_cli_args
from vllm.benchmarks.serve import main as vllm_bench
from vllm.utils.argparse_utils import FlexibleArgumentParser

from gpucluster.config import load_config
from gpucluster.models import prepare_model

COMPOSE_ENV = Path(__file__).resolve().parents[1] / "deploy" / "compose" / ".env"


def compose_settings() -> tuple[str, str]:
    """The compose stack's nginx URL and first API key, from the .env `make compose-up` wrote."""
    values = dict(
        line.split("=", 1) for line in COMPOSE_ENV.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return f"http://127.0.0.1:{values['NGINX_HTTP_PORT']}", values["GPUCLUSTER_API_KEYS"].split(",")[0]


def bench(base_url: str, model: str, tokenizer: str, concurrency: int, args, key: str) -> dict:
    """One run of vLLM's benchmark client; its result dict."""
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = [
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
        "--base-url", base_url, "--model", model, "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", str(args.input_tokens),
        "--random-output-len", str(args.output_tokens), "--ignore-eos",
        "--num-prompts", str(4 * concurrency), "--max-concurrency", str(concurrency),
        "--percentile-metrics", "ttft,tpot,itl", "--disable-tqdm", "--seed", str(concurrency),
    ]
    os.environ["OPENAI_API_KEY"] = key  # vLLM's client sends it as the bearer token
    return vllm_bench(parser.parse_args(argv))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("compose-overhead.json"))
    args = parser.parse_args()
    config = load_config()
    model = config.models[0]
    tokenizer = prepare_model(model.source, config.platform.model_cache_dir)
    compose_url, key = compose_settings()
    bare_url = f"http://127.0.0.1:{BARE_PORT}"
    bare = start_bare_vllm(Path("compose-overhead-bare-vllm.log"))
    runs: list[dict] = []
    try:
        wait_ready(f"{bare_url}/v1")
        # Not measured: each engine compiles its sampler at its first sampled request.
        for url, api_key in ((bare_url, "none"), (compose_url, key)):
            bench(url, model.id, tokenizer, 1, args, api_key)
        for _ in range(args.rounds):
            for c in (int(x) for x in args.concurrency.split(",")):
                for name, url, api_key in (("bare", bare_url, "none"), ("compose", compose_url, key)):
                    result = bench(url, model.id, tokenizer, c, args, api_key)
                    runs.append({"target": name, "concurrency": c, **{
                        k: result[k] for k in ("completed", "failed", "output_throughput",
                                               "median_ttft_ms", "median_itl_ms")}})
    finally:
        bare.terminate()
        bare.wait(timeout=60)
    args.out.write_text(json.dumps(runs, indent=2))
    print(f"\n{'c':>3} {'bare tok/s':>11} {'compose tok/s':>14} {'ratio':>6} "
          f"{'TTFT p50 ms bare/compose':>26} {'ITL p50 ms bare/compose':>25} {'failed':>7}")
    for c in dict.fromkeys(r["concurrency"] for r in runs):
        by = {t: [r for r in runs if r["concurrency"] == c and r["target"] == t]
              for t in ("bare", "compose")}
        mean = {t: {k: statistics.mean(r[k] for r in rs) for k in
                    ("output_throughput", "median_ttft_ms", "median_itl_ms")} for t, rs in by.items()}
        failed = sum(r["failed"] for rs in by.values() for r in rs)
        b, p = mean["bare"], mean["compose"]
        print(f"{c:>3} {b['output_throughput']:>11.1f} {p['output_throughput']:>14.1f} "
              f"{p['output_throughput'] / b['output_throughput']:>6.2f} "
              f"{b['median_ttft_ms']:>12.0f} / {p['median_ttft_ms']:<11.0f} "
              f"{b['median_itl_ms']:>11.1f} / {p['median_itl_ms']:<11.1f} {failed:>7}")
    print(f"runs: {args.out}")


if __name__ == "__main__":
    main()
