"""What nginx adds to streaming: TTFT and inter-token latency via nginx vs Serve directly.

Runs against a platform started with `gpucluster up`; requests alternate between the two
paths so that both see the same engine state. Prints a table and the ratios.

    .venv/bin/python benchmarks/proxy_overhead.py --requests 20 --max-tokens 64 [--api-key KEY]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import httpx


def one_stream(
    url: str, model: str, max_tokens: int, headers: dict[str, str]
) -> tuple[float, list[float]]:
    """(time to first token, gaps between later tokens) of one streamed chat completion."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    stamps = []
    started = time.perf_counter()
    with httpx.stream("POST", url, json=body, headers=headers, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                stamps.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return stamps[0] - started, gaps


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="http://127.0.0.1:18080")
    parser.add_argument("--serve", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    paths = {
        "nginx": f"{args.proxy}/v1/chat/completions",
        "direct": f"{args.serve}/v1/chat/completions",
    }
    ttft: dict[str, list[float]] = {name: [] for name in paths}
    itl: dict[str, list[float]] = {name: [] for name in paths}
    one_stream(paths["direct"], args.model, 4, headers)  # warm-up
    for _ in range(args.requests):
        for name, url in paths.items():
            first, gaps = one_stream(url, args.model, args.max_tokens, headers)
            ttft[name].append(first)
            itl[name].extend(gaps)
    print(f"{'path':<8} {'TTFT p50':>10} {'TTFT p95':>10} {'ITL p50':>10} {'ITL p95':>10}")
    for name in paths:
        print(
            f"{name:<8} {statistics.median(ttft[name]) * 1000:>8.1f}ms {pct(ttft[name], 0.95) * 1000:>8.1f}ms "
            f"{statistics.median(itl[name]) * 1000:>8.1f}ms {pct(itl[name], 0.95) * 1000:>8.1f}ms"
        )
    print(
        f"ratios nginx/direct: TTFT p50 {statistics.median(ttft['nginx']) / statistics.median(ttft['direct']):.3f}, "
        f"ITL p50 {statistics.median(itl['nginx']) / statistics.median(itl['direct']):.3f}"
    )


if __name__ == "__main__":
    main()
