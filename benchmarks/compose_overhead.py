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
from pathlib import Path

from vllm_client import Target, report, versus_bare

from gpucluster.assets import DEPLOY_DIR
from gpucluster.config import load_config
from gpucluster.models import prepare_model

COMPOSE_ENV = DEPLOY_DIR / "compose" / ".env"  # written by `make compose-up`


def compose_settings() -> tuple[str, str]:
    """The compose stack's nginx URL and first API key, from the .env `make compose-up` wrote."""
    values = dict(
        line.split("=", 1)
        for line in COMPOSE_ENV.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return f"http://127.0.0.1:{values['NGINX_HTTP_PORT']}", values["GPUCLUSTER_API_KEYS"].split(
        ","
    )[0]


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
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    runs = versus_bare(
        Target("compose", compose_url, key),
        model.id,
        tokenizer,
        concurrencies,
        args.rounds,
        args.input_tokens,
        args.output_tokens,
        Path("compose-overhead-bare-vllm.log"),
    )
    report(runs, "bare", "compose", args.out)


if __name__ == "__main__":
    main()
