"""Shared unit-test fixtures: a clock moved by hand, and a fake OpenAI server (streamed chat
completions like vLLM's), in process or on a real socket.

`make_fake` builds one; `make_transport` routes an httpx client to fakes by host name (nothing
leaves the process); `serve_fake` puts a fake behind a real HTTP server on 127.0.0.1, streaming
its SSE events one by one, for the commands that build their own client.

`write_usage` writes usage log files in the gatekeeper's format (docs/operator-guide.md,
"Tenants and keys"), for the commands that read them.

`wait_until` / `wait_until_async` poll a condition with a deadline, for tests that wait on a
thread, a process or a task: a condition that never comes fails the test and says what it was.

A unit test gets UNIT_TIMEOUT_S (pytest-timeout) unless it is marked with its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

# Set before anything loads torch (vLLM's imports, the real model tests): OpenMP threads that
# sleep while they wait for work instead of spinning. On a busy 2-core host the spinning
# threads fought the other processes for the cores and the real adapter training took minutes
# instead of seconds (with the same results either way).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

UNIT_DIR = Path(__file__).parent
# pyproject's global timeout is sized for the live suites; a unit test still running after
# this long is stuck (the slowest ones, marked with their own, do real model work).
UNIT_TIMEOUT_S = 120


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give unit tests without a timeout mark UNIT_TIMEOUT_S; `--timeout N` given on the
    command line applies to them as to every other test."""
    if config.getoption("timeout", None) is not None:
        return
    for item in items:
        if item.path.is_relative_to(UNIT_DIR) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_S))


class FakeOpenAI:
    """Streams one content chunk per requested token, then usage, then [DONE].

    `fail_every=k` answers every k-th chat request with HTTP `fail_status` (500);
    `usage=False` leaves usage out;
    `error_event=True` sends an SSE error event after the first chunk;
    `api_key` set: requests without `Authorization: Bearer <api_key>` get a 401;
    `retry_after=n`: chat requests get a 429 with `Retry-After: n`.
    A chat request naming another model than `model` gets vLLM's 404 model_not_found.
    """

    def __init__(
        self,
        model: str = "fake-model",
        *,
        fail_every: int | None = None,
        fail_status: int = 500,
        usage: bool = True,
        error_event: bool = False,
        default_tokens: int = 16,
        api_key: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.model = model
        self.fail_every = fail_every
        self.fail_status = fail_status
        self.usage = usage
        self.error_event = error_event
        self.default_tokens = default_tokens
        self.api_key = api_key
        self.retry_after = retry_after
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API key.", "authentication_error", "invalid_api_key")
        if request.method == "GET" and path.endswith("/v1/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": self.model}]})
        if request.method == "POST" and path.endswith("/v1/chat/completions"):
            return self._chat(request)
        return httpx.Response(404, json={"error": {"message": f"no route {path}"}})

    def _chat(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        if self.fail_every and len(self.bodies) % self.fail_every == 0:
            return _error(
                self.fail_status,
                f"engine failed (request {len(self.bodies)})",
                "InternalServerError",
                self.fail_status,
            )
        if body.get("model") != self.model:
            message = f"The model `{body.get('model')}` does not exist."
            return _error(404, message, "NotFoundError", "model_not_found")
        if self.retry_after is not None:
            response = _error(429, "The model is at capacity.", "rate_limit_error", "busy")
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        tokens = body.get("max_tokens", self.default_tokens)
        prompt_tokens = sum(len(str(m["content"]).split()) for m in body["messages"])
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"]}
        events: list[Any] = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
        for i in range(tokens):
            events.append({**base, "choices": [{"index": 0, "delta": {"content": f" t{i}"}}]})
            if self.error_event and i == 0:
                events.append({"error": {"message": "engine died mid-stream", "code": 500}})
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        if self.usage:
            events.append(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": tokens,
                        "total_tokens": prompt_tokens + tokens,
                    },
                }
            )
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=text)


def _error(status: int, message: str, kind: str, code: Any) -> httpx.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return httpx.Response(status, json=body)


class Router:
    """One transport for several fake servers, chosen by host."""

    def __init__(self, servers: dict[str, FakeOpenAI]) -> None:
        self.servers = servers

    def __call__(self, request: httpx.Request) -> httpx.Response:
        server = self.servers.get(request.url.host)
        if server is None:
            raise httpx.ConnectError("connection refused", request=request)
        return server.handle(request)


class ServedFake:
    """A fake on a real socket: `url` is its /v1 base; `aborted` counts streams a client left."""

    def __init__(self, fake: FakeOpenAI, delay_s: float) -> None:
        self.fake = fake
        self.delay_s = delay_s  # between SSE events, so that a reply takes a while
        self.aborted = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(served: ServedFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as vLLM answers

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            content = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = httpx.Request(
                self.command,
                f"http://{self.headers['Host']}{self.path}",
                headers=dict(self.headers.items()),
                content=content,
            )
            response = served.fake.handle(request)
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in _events(response.content):
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                    if served.delay_s:
                        time.sleep(served.delay_s)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client closed the stream
                served.aborted += 1
                self.close_connection = True

    return Handler


def _events(content: bytes) -> Iterator[bytes]:
    """An SSE body event by event (any other body in one piece)."""
    if not content.startswith(b"data:"):
        yield from [content] if content else []
        return
    for event in content.split(b"\n\n"):
        if event:
            yield event + b"\n\n"


class ManualClock:
    """A monotonic clock that moves only when a test sets or advances `now` (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    """A clock for code that takes one (`clock=`), moved by hand: `clock.now += 60`."""
    return ManualClock()


@pytest.fixture
def make_fake():
    """FakeOpenAI's constructor, for tests that want several servers or special behaviour."""
    return FakeOpenAI


@pytest.fixture
def make_transport():
    """An httpx transport over fake servers by host: make_transport({"a.test": fake})."""
    return lambda servers: httpx.MockTransport(Router(servers))


@pytest.fixture
def serve_fake():
    """Start a fake behind a real HTTP server: serve_fake(fake, delay_s=0) -> ServedFake."""
    started: list[ServedFake] = []

    def serve(fake: FakeOpenAI, delay_s: float = 0.0) -> ServedFake:
        started.append(ServedFake(fake, delay_s))
        return started[-1]

    yield serve
    for served in started:
        served.close()


def usage_record(when: datetime, **fields: Any) -> dict[str, Any]:
    """One usage log record at `when`: a served 200 of team-a unless `fields` say otherwise."""
    record = {
        "time": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "request_id": f"req-{when.timestamp():.6f}",
        "key": "team-a",
        "model": "m",
        "path": "/v1/chat/completions",
        "status": 200,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "ttft_ms": 50.0,
        "duration_ms": 400.0,
        "refused": None,
    }
    return {**record, **fields}


@pytest.fixture
def write_usage():
    """write_usage(path, [record, ...], tail="") writes a usage log file; `tail` is appended
    as is (a torn last line has no newline)."""

    def write(path: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(record) + "\n" for record in records)
        path.write_text(lines + tail, encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_usage_record():
    """usage_record's constructor: make_usage_record(when, key="team-b", status=500, ...)."""
    return usage_record


def _timed_out(what: str, timeout_s: float) -> None:
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}", pytrace=False)


def wait_until(
    predicate: Callable[[], object], what: str, timeout_s: float = 10.0, interval_s: float = 0.01
) -> None:
    """Poll `predicate` (sleeping `interval_s` between calls) until it is true; after
    `timeout_s` fail the test: "timed out after 10 s waiting for <what>"."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            _timed_out(what, timeout_s)
        time.sleep(interval_s)


async def wait_until_async(
    predicate: Callable[[], object], what: str, timeout_s: float = 10.0, interval_s: float = 0.01
) -> None:
    """wait_until inside an event loop: the loop runs other tasks between polls."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            _timed_out(what, timeout_s)
        await asyncio.sleep(interval_s)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    """wait_until(predicate, "what it waits for", timeout_s=10): poll with a deadline."""
    return wait_until


@pytest.fixture(name="wait_until_async")
def wait_until_async_fixture() -> Callable[..., Awaitable[None]]:
    """await wait_until_async(predicate, "what it waits for", timeout_s=10), in a coroutine."""
    return wait_until_async


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path. Setup installs it (scripts/setup.sh), so without it the tests that
    check the rules, dashboards and Prometheus config fail rather than skip."""
    path = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if path is None:
        pytest.fail(
            "promtool is not installed: these tests need it to check the alert rules, the "
            "dashboards' queries and the Prometheus config. Install Prometheus's promtool "
            "(Debian/Ubuntu: `apt-get install prometheus`, which ships /usr/bin/promtool; "
            "`make test` does) and rerun.",
            pytrace=False,
        )
    return path
