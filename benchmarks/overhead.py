"""Serving overhead: our platform (through nginx) vs a bare vLLM OpenAI server, side by side.

Starts a bare `python -m vllm.entrypoints.openai.api_server` with the same model and engine
arguments as the platform's configured model, then runs `gpucluster bench --compare` against
both in one interleaved run (A = platform, B = bare vLLM) and prints the report path. Needs a
platform started with `gpucluster up`.

    .venv/bin/python benchmarks/overhead.py --concurrency 1,8,32 --requests 32 --output-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gpucluster.config import load_config
from gpucluster.models import prepare_model

BARE_PORT = 18100


def start_bare_vllm(log: Path) -> subprocess.Popen:
    config = load_config()
    model = config.models[0]
    weights = prepare_model(model.source, config.platform.model_cache_dir)
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        weights,
        "--served-model-name",
        model.id,
        "--host",
        "127.0.0.1",
        "--port",
        str(BARE_PORT),
        "--max-num-seqs",
        str(model.max_num_seqs),
        "--dtype",
        model.dtype,
    ]
    if model.max_model_len:
        argv += ["--max-model-len", str(model.max_model_len)]
    if model.accelerator == "cpu":
        argv.append("--enforce-eager")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(model.cpu_kvcache_gib)}
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise SystemExit(f"bare vLLM did not start within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", default="32")
    parser.add_argument("--input-tokens", default="128")
    parser.add_argument("--output-tokens", default="64")
    parser.add_argument("--out", type=Path, default=Path("overhead-report.json"))
    args = parser.parse_args()
    bare_url = f"http://127.0.0.1:{BARE_PORT}/v1"
    bare = start_bare_vllm(Path("overhead-bare-vllm.log"))
    try:
        wait_ready(bare_url)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gpucluster",
                "bench",
                "--json",
                "--concurrency",
                args.concurrency,
                "-n",
                args.requests,
                "--input-tokens",
                args.input_tokens,
                "--output-tokens",
                args.output_tokens,
                "--compare",
                bare_url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        bare.terminate()
        bare.wait(timeout=60)
    args.out.write_text(result.stdout)
    report = json.loads(result.stdout)
    print(
        f"{'run':<6} {'platform tok/s':>15} {'bare tok/s':>11} {'platform/bare':>14} "
        f"{'TTFT p50 ms (plat/bare)':>26} {'ITL p50 ms (plat/bare)':>24}"
    )
    runs = {(r["label"], r["endpoint"]): r for r in report["runs"]}
    for label in dict.fromkeys(r["label"] for r in report["runs"]):
        a, b = runs[(label, "A")], runs[(label, "B")]
        print(
            f"{label:<6} {a['output_throughput']:>15.1f} {b['output_throughput']:>11.1f} "
            f"{a['output_throughput'] / b['output_throughput']:>14.2f} "
            f"{a['ttft_ms']['p50']:>12.0f} / {b['ttft_ms']['p50']:<11.0f} "
            f"{a['itl_ms']['p50']:>10.1f} / {b['itl_ms']['p50']:<10.1f}"
        )
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
