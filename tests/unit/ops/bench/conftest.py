"""The bench's fake clock and its async client over the shared fake OpenAI servers."""

from __future__ import annotations

import asyncio

import httpx
import pytest


class FakeClock:
    """Virtual time: each reading advances 1 ms; sleeping jumps ahead."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        self.t += 0.001
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake(make_fake):
    return make_fake()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(make_transport):
    """An httpx.AsyncClient over fake servers by host: make_client({"a.test": fake})."""
    return lambda servers: httpx.AsyncClient(transport=make_transport(servers))
