"""Soak: mixed streaming and plain chat load with random client disconnects, for a while.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--workers 8] [--api-key KEY] [--json]

Each worker loops: a chat of 16-160 tokens, streamed or not; one request in five is dropped by
its client (a stream closed after a few chunks, a plain request given up after 0.5-3 s).
Outcomes: ok, dropped (on purpose), rejected (429: edge rate limit or a full model), and
failed (any 5xx, SSE error event or cut connection of a request nobody dropped). Every 10 s it
samples the memory (RSS) of the LLM replicas and their vLLM engine processes; growth is
reported over the processes that lived through the whole run. At the end,
after the load has stopped, the engines must be idle: no tokens generated for a dropped client
(`increase(ray_vllm_generation_tokens_total[30s])` is 0) and nothing running or waiting.
Exit code 1 when a request failed or the engines were not idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter

import httpx
import psutil

REPLICA_PREFIXES = ("ray::ServeReplica:llm:PlatformLLMServer", "VLLM::EngineCore")


def replica_rss_mib() -> dict[int, float]:
    """Resident memory of each LLM replica and vLLM engine process, MiB by pid."""
    sizes = {}
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if line.startswith(REPLICA_PREFIXES):
            try:
                sizes[proc.pid] = proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
    return sizes


def memory_growth(samples: list[dict[int, float]]) -> dict:
    """Start, end and peak RSS of the processes that lived through the whole soak (a replica
    the autoscaler added meanwhile is not growth), and how many there were."""
    if not samples:
        return {}
    lasting = set(samples[0]) & set(samples[-1])
    totals = [sum(s.get(pid, 0.0) for pid in lasting) for s in samples]
    start, end = totals[0], totals[-1]
    return {
        "processes": len(lasting),
        "start_mib": round(start),
        "end_mib": round(end),
        "max_mib": round(max(totals)),
        "growth_pct": round(100 * (end - start) / start, 1) if start else None,
        "processes_at_end": len(samples[-1]),
    }


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.rss: list[dict[int, float]] = []
        self.rng = random.Random(args.seed)

    def body(self, stream: bool) -> dict:
        return {
            "model": self.args.model,
            "messages": [{"role": "user", "content": "Tell me about rivers and the sea."}],
            "max_tokens": self.rng.randint(16, 160),
            "stream": stream,
        }

    async def one(self, client: httpx.AsyncClient) -> str:
        stream, drop = self.rng.random() < 0.5, self.rng.random() < 0.2
        url = f"{self.args.url}/chat/completions"
        try:
            if stream:
                async with client.stream("POST", url, json=self.body(True)) as response:
                    if response.status_code != 200:
                        return self.classify(
                            response.status_code, (await response.aread()).decode()
                        )
                    keep, text = self.rng.randint(1, 8), ""
                    async for line in response.aiter_lines():
                        text += line + "\n"
                        if drop and text.count("data: {") >= keep:
                            return "dropped"
                    if '"error"' in text or "data: [DONE]" not in text:
                        return self.failed(f"stream: {text[-300:]}")
                    return "ok"
            timeout = self.rng.uniform(0.5, 3) if drop else 600
            try:
                response = await client.post(url, json=self.body(False), timeout=timeout)
            except httpx.TimeoutException:
                return "dropped" if drop else self.failed("plain request timed out")
            return self.classify(response.status_code, response.text)
        except httpx.HTTPError as exc:
            return self.failed(f"{type(exc).__name__}: {exc}")

    def classify(self, status: int, text: str) -> str:
        if status == 200:
            return "ok"
        if status == 429:
            return "rejected"
        if status >= 500:
            return self.failed(f"{status}: {text[-300:]}")
        return self.failed(f"unexpected {status}: {text[-300:]}")

    def failed(self, detail: str) -> str:
        self.failures.append(detail)
        return "failed"

    async def worker(self, client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            outcome = await self.one(client)
            self.outcomes[outcome] += 1
            if outcome == "rejected":
                await asyncio.sleep(1)

    async def sample_memory(self, until: float) -> None:
        while time.monotonic() < until:
            self.rss.append(replica_rss_mib())
            await asyncio.sleep(10)
        self.rss.append(replica_rss_mib())

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.args.api_key}"} if self.args.api_key else {}
        until = time.monotonic() + 60 * self.args.minutes
        async with httpx.AsyncClient(timeout=600, headers=headers) as client:
            await asyncio.gather(
                self.sample_memory(until),
                *(self.worker(client, until) for _ in range(self.args.workers)),
            )


def prom(url: str, expr: str) -> float:
    result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=30).json()
    values = result["data"]["result"]
    return float(values[0]["value"][1]) if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:18080/v1")
    parser.add_argument("--prometheus", default="http://127.0.0.1:19090")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    soak = Soak(args)
    started = time.monotonic()
    asyncio.run(soak.run())
    elapsed = time.monotonic() - started
    time.sleep(45)  # let admitted requests finish and Prometheus scrape an idle engine twice
    after = {
        "generated_tokens_last_30s": prom(
            args.prometheus, "sum(increase(ray_vllm_generation_tokens_total[30s]))"
        ),
        "running": prom(args.prometheus, "sum(vllm:num_requests_running)"),
        "waiting": prom(args.prometheus, "sum(vllm:num_requests_waiting)"),
    }
    report = {
        "minutes": round(elapsed / 60, 2),
        "workers": args.workers,
        "requests": sum(soak.outcomes.values()),
        "outcomes": dict(soak.outcomes),
        "failures": soak.failures[:10],
        "replica_rss": memory_growth(soak.rss),
        "engines_after_load": after,
    }
    idle = (
        after["generated_tokens_last_30s"] == 0 and after["running"] == 0 and after["waiting"] == 0
    )
    report["ok"] = not soak.failures and idle
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
