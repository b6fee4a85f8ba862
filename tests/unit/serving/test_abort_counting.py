"""A client gone mid-answer: the LLM server counts it and closes the engine's stream at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from gpucluster.serving.llm_server import PlatformLLMServer


class Counter:
    def __init__(self) -> None:
        self.counts: list[dict] = []

    def inc(self, value: float, tags: dict) -> None:
        self.counts.append(tags)


def server() -> SimpleNamespace:
    me = SimpleNamespace(_aborted=Counter(), _llm_config=SimpleNamespace(model_id="m"))
    me._count_abort = lambda: PlatformLLMServer._count_abort(me)
    return me


def test_a_complete_answer_passes_through_uncounted():
    async def engine():
        for chunk in ("a", "b"):
            yield chunk

    me = server()

    async def consume() -> list[str]:
        return [c async for c in PlatformLLMServer._counting_aborts(me, engine())]

    assert asyncio.run(consume()) == ["a", "b"]
    assert me._aborted.counts == []


def test_closing_mid_answer_counts_an_abort_and_closes_the_engine_stream():
    closed = []

    async def engine():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.append(True)  # vLLM aborts the sequence here

    me = server()

    async def drop_after_first() -> None:
        stream = PlatformLLMServer._counting_aborts(me, engine())
        assert await stream.__anext__() == 0
        await stream.aclose()

    asyncio.run(drop_after_first())
    assert closed == [True]
    assert me._aborted.counts == [{"model": "m"}]


def test_cancellation_mid_answer_counts_an_abort():
    started = asyncio.Event()

    async def engine():
        yield 0
        started.set()
        await asyncio.sleep(60)
        yield 1

    me = server()

    async def cancel() -> None:
        async def consume() -> None:
            async for _ in PlatformLLMServer._counting_aborts(me, engine()):
                pass

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(cancel())
    assert me._aborted.counts == [{"model": "m"}]
