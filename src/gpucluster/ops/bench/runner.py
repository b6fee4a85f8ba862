"""Send a workload to an OpenAI-compatible endpoint and record every streamed request.

The runner is given its HTTP client and its clock (DESIGN.md, convention 4): the CLI passes one
shared `httpx.AsyncClient` and the monotonic clock; tests pass a client over an in-process fake
server and a fake clock. Two ways to load the server:
- fixed concurrency (closed loop): N workers, each sending its next request when the last ends;
- fixed rate (open loop): Poisson arrivals at R requests/s from a seeded RNG, whatever the
  server's speed, so queueing shows up in the latencies.
A run stops after `requests` requests or, when `duration` is set, starts no new request after
`duration` seconds; requests in flight then finish and count.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from gpucluster.errors import GpuClusterError
from gpucluster.ops.bench.stats import RequestRecord
from gpucluster.ops.bench.workload import BenchRequest, Workload, poisson_intervals
from gpucluster.ops.openai_wire import (
    MAX_ERROR_CHARS,
    CompletionStream,
    StreamError,
    describe,
    error_message,
    model_ids,
)

Mode = Literal["concurrency", "rate"]
WARMUP_MAX_TOKENS = 16


class BenchError(GpuClusterError, RuntimeError):
    """An endpoint that cannot be benchmarked (unreachable, no models); the message says why."""


class Clock(Protocol):
    """Where the runner reads time and waits."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: `time.perf_counter` and `asyncio.sleep`."""

    def now(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: base URL ending in /v1, credentials, the model to ask."""

    name: str  # "A", or "B" for --compare
    base_url: str
    api_key: str | None = None
    model: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.base_url, "model": self.model}


@dataclass(frozen=True)
class RunSpec:
    """One point of the sweep: a concurrency or a rate, and when to stop."""

    mode: Mode
    value: float
    requests: int | None = None
    duration: float | None = None
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{'c' if self.mode == 'concurrency' else 'r'}={self.value:g}"


@dataclass
class RunResult:
    """The records of one run of one endpoint, with the run's start and end on the clock."""

    endpoint: Endpoint
    spec: RunSpec
    start: float
    end: float
    records: list[RequestRecord] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


def open_client(max_connections: int, timeout: float) -> httpx.AsyncClient:
    """The shared client: a pool above the concurrency so no request waits for a connection."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(timeout, connect=min(timeout, 10))
    )


class Runner:
    """Streams chat completions through `client`, timing them on `clock`."""

    def __init__(
        self, client: httpx.AsyncClient, clock: Clock | None = None, *, ignore_eos: bool = True
    ) -> None:
        self.client = client
        self.clock = clock or MonotonicClock()
        self.ignore_eos = ignore_eos

    async def first_model(self, endpoint: Endpoint) -> str:
        """The first model id the endpoint lists at GET /models."""
        url = f"{endpoint.base_url}/models"
        try:
            response = await self.client.get(url, headers=endpoint.headers)
        except httpx.HTTPError as exc:
            raise BenchError(f"cannot reach {url}: {describe(exc)}") from None
        if response.status_code != 200:
            raise BenchError(
                f"GET {url} answered HTTP {response.status_code}: {error_message(response.content)}"
            )
        try:
            return model_ids(response.json())[0]
        except (ValueError, IndexError):
            raise BenchError(f"GET {url} listed no models; pass --model") from None

    def body(self, endpoint: Endpoint, request: BenchRequest) -> dict[str, Any]:
        """The chat completion request: streamed, with usage in the last chunk."""
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
            if self.ignore_eos:
                body["ignore_eos"] = True  # vLLM extension: generate exactly max_tokens
        return body

    async def one(self, endpoint: Endpoint, request: BenchRequest) -> RequestRecord:
        """Send one streamed request; never raises for the server's or the network's faults."""
        record = RequestRecord(start=self.clock.now())
        url = f"{endpoint.base_url}/chat/completions"
        try:
            async with self.client.stream(
                "POST", url, json=self.body(endpoint, request), headers=endpoint.headers
            ) as response:
                if response.status_code != 200:
                    text = error_message(await response.aread())
                    _fail(record, f"HTTP {response.status_code}", text)
                else:
                    await self._read_stream(response, record)
        except httpx.HTTPError as exc:
            _fail(record, type(exc).__name__, describe(exc))
        record.end = self.clock.now()
        return record

    async def _read_stream(self, response: httpx.Response, record: RequestRecord) -> None:
        stream = CompletionStream()
        try:
            async for line in response.aiter_lines():
                if stream.feed(line) is not None:
                    now = self.clock.now()
                    record.chunk_times.append(now)
                    if record.first_token is None:
                        record.first_token = now
                if stream.done:
                    break
        except StreamError as exc:
            _fail(record, exc.kind, exc.error.message)
            return
        if stream.usage is not None:
            record.prompt_tokens = stream.usage.get("prompt_tokens")
            record.completion_tokens = stream.usage.get("completion_tokens")
        if stream.finished:
            record.ok = True
        else:
            _fail(record, "incomplete stream", "the stream ended before usage or [DONE]")

    async def warmup(
        self, endpoint: Endpoint, workload: Workload, count: int
    ) -> RequestRecord | None:
        """Send `count` short requests one by one; the first failure, or None."""
        for index in range(count):
            request = workload.request(-1 - index)
            short = BenchRequest(
                request.messages, min(request.max_tokens or WARMUP_MAX_TOKENS, WARMUP_MAX_TOKENS)
            )
            record = await self.one(endpoint, short)
            if not record.ok:
                return record
        return None

    async def run(
        self,
        endpoint: Endpoint,
        spec: RunSpec,
        workload: Workload,
        on_done: Callable[[RequestRecord], None] | None = None,
    ) -> RunResult:
        """One run of `workload` against `endpoint` at `spec`'s concurrency or rate."""
        if spec.requests is None and spec.duration is None:
            raise ValueError("a run needs a number of requests or a duration")
        result = RunResult(endpoint, spec, start=self.clock.now(), end=0.0)
        done = on_done or (lambda record: None)
        if spec.mode == "concurrency":
            await self._closed_loop(endpoint, spec, workload, result, done)
        else:
            await self._open_loop(endpoint, spec, workload, result, done)
        result.end = self.clock.now()
        result.records.sort(key=lambda r: r.start)
        return result

    async def _send(
        self,
        endpoint: Endpoint,
        workload: Workload,
        index: int,
        result: RunResult,
        done: Callable[[RequestRecord], None],
    ) -> None:
        record = await self.one(endpoint, workload.request(index))
        result.records.append(record)
        done(record)

    def _more(self, spec: RunSpec, sent: int, started: float, at: float) -> bool:
        if spec.requests is not None and sent >= spec.requests:
            return False
        return spec.duration is None or at - started < spec.duration

    async def _closed_loop(
        self,
        endpoint: Endpoint,
        spec: RunSpec,
        workload: Workload,
        result: RunResult,
        done: Callable[[RequestRecord], None],
    ) -> None:
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while self._more(spec, sent, result.start, self.clock.now()):
                index, sent = sent, sent + 1
                await self._send(endpoint, workload, index, result, done)

        await asyncio.gather(*(worker() for _ in range(int(spec.value))))

    async def _open_loop(
        self,
        endpoint: Endpoint,
        spec: RunSpec,
        workload: Workload,
        result: RunResult,
        done: Callable[[RequestRecord], None],
    ) -> None:
        gaps = poisson_intervals(spec.value, random.Random(spec.seed))
        tasks: list[asyncio.Task[None]] = []
        offset = 0.0  # the first request goes at once, the next after a random gap, ...

        while self._more(spec, len(tasks), result.start, result.start + offset):
            wait = result.start + offset - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            tasks.append(
                asyncio.create_task(self._send(endpoint, workload, len(tasks), result, done))
            )
            offset += next(gaps)
        await asyncio.gather(*tasks)


async def run_sweep(
    runner: Runner,
    endpoints: list[Endpoint],
    specs: list[RunSpec],
    workload: Workload,
    *,
    on_start: Callable[[Endpoint, RunSpec], Callable[[RequestRecord], None]] | None = None,
) -> list[RunResult]:
    """Every sweep point against every endpoint, endpoints interleaved run by run.

    With two endpoints the order alternates per point (A B, B A, A B, ...) so that neither always
    runs first on a warmer or cooler server.
    """
    results = []
    for position, spec in enumerate(specs):
        order = endpoints if position % 2 == 0 else list(reversed(endpoints))
        for endpoint in order:
            done = on_start(endpoint, spec) if on_start else None
            results.append(await runner.run(endpoint, spec, workload, done))
    return results


def _fail(record: RequestRecord, kind: str, message: str) -> None:
    record.ok = False
    record.error_kind = kind
    record.error = f"{kind}: {message}"[:MAX_ERROR_CHARS]
