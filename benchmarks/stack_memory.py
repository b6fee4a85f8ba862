"""Memory of the running platform: every process `gpucluster up` started (tag or descent),
idle and at peak while 16 chat requests run concurrently.

    .venv/bin/python benchmarks/stack_memory.py [--api-key KEY]

PSS splits shared pages among the processes sharing them (the honest total); RSS counts
shared pages once per process (an upper bound).
"""

from __future__ import annotations

import argparse
import asyncio

import httpx
import psutil

from gpucluster.config import load_config
from gpucluster.runtime.processes import platform_processes
from gpucluster.runtime.state import StateDir


def sample(tag: str) -> tuple[int, int, int]:
    rss = pss = count = 0
    for proc in platform_processes(tag):
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss, pss, count = rss + info.rss, pss + info.pss, count + 1
    return count, rss, pss


async def load(url: str, model: str, headers: dict[str, str], n: int) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Write a long story."}],
        "max_tokens": 256,
    }
    async with httpx.AsyncClient(timeout=300, headers=headers) as client:
        await asyncio.gather(*(client.post(f"{url}/chat/completions", json=body) for _ in range(n)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:18080/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    tag = StateDir(load_config().platform.state_dir).tag
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    count, rss, pss = sample(tag)
    print(f"idle: {count} processes, PSS {pss / 2**30:.2f} GiB, RSS {rss / 2**30:.2f} GiB")
    task = asyncio.create_task(load(args.url, args.model, headers, args.concurrency))
    peak_rss = peak_pss = 0
    while not task.done():
        _, rss, pss = await asyncio.to_thread(sample, tag)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        await asyncio.sleep(0.5)
    await task
    print(
        f"peak under {args.concurrency} concurrent requests: PSS {peak_pss / 2**30:.2f} GiB, RSS {peak_rss / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    asyncio.run(main())
