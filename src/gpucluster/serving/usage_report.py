"""Per-request usage, reported to the edge's gatekeeper when each API request ends.

The gatekeeper (runtime.gatekeeper) admits requests at the edge, before they reach Serve; only
the replica sees how they end: the status, the engine's `usage` (prompt and completion tokens,
which settle the key's token quota), the time to the first byte and the duration. This ASGI
middleware watches each /v1 answer go out and posts that record to the gatekeeper's /settle,
fire-and-forget: a gatekeeper that is down costs a log line, never a request.

Streams carry `usage` only when asked (`stream_options.include_usage`): the request checks ask
for it on every stream (`usage_forced`) and this middleware drops the usage-only event again
when the client had not asked for it, so clients see exactly what they asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ray.serve")

KEY_HEADER = b"x-gpucluster-key"  # set by nginx from the gatekeeper's answer
REQUEST_ID_HEADER = b"x-request-id"
FORCED_USAGE = "gpucluster_usage_forced"  # scope["state"] flag: the platform asked for usage
KEY_NAME = "gpucluster_key_name"  # scope["state"]: the key the replica itself matched
MODEL = "gpucluster_model"  # scope["state"]: the served model the request resolved to
MAX_JSON_BODY = 4 * 2**20  # larger non-stream answers are not parsed for usage
SETTLE_TIMEOUT_S = 2.0

Report = Callable[["UsageRecord"], Awaitable[None]]


@dataclass
class UsageRecord:
    """What the gatekeeper's /settle takes (tenancy contract)."""

    request_id: str
    key: str
    model: str
    path: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    duration_ms: float = 0.0


def usage_forced(body: Any, state: dict[str, Any]) -> bool:
    """Whether the platform must ask the engine for the usage of `body` (a parsed chat or
    completion request): a stream whose client did not ask. Noted in the request's scope
    `state`, so that the usage-only event is dropped again on its way out."""
    options = body.stream_options
    asked = (
        options.get("include_usage")
        if isinstance(options, dict)
        else (getattr(options, "include_usage", None))
    )
    if not body.stream or asked:
        return False
    state[FORCED_USAGE] = True
    return True


def with_usage(options: Any) -> dict[str, Any]:
    """A request's `stream_options` (a dict, a pydantic model or None) asking for usage, the
    client's other options kept."""
    if options is None:
        options = {}
    elif not isinstance(options, dict):
        options = options.model_dump(exclude_unset=True)
    return {**options, "include_usage": True}


class SettleClient:
    """Posts usage records to the gatekeeper's /settle URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, record: UsageRecord) -> None:
        if self._client is None:  # created in the replica's event loop
            self._client = httpx.AsyncClient(timeout=SETTLE_TIMEOUT_S)
        try:
            response = await self._client.post(self.url, json=asdict(record))
            response.raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning(
                "usage of request %s not reported to the gatekeeper: %s",
                record.request_id,
                type(exc).__name__,
            )


class UsageMiddleware:
    """Watches each /v1 answer and reports its UsageRecord when it ends (see module doc)."""

    def __init__(
        self, app: ASGIApp, report: Report | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.report = report
        self.clock = clock
        self._pending: set[asyncio.Task] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.report is None or scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        watch = _AnswerWatch(scope, send, self.clock)
        try:
            await self.app(scope, receive, watch.send)
        except asyncio.CancelledError:
            watch.status = watch.status or 499  # the client went away
            raise
        except Exception:
            watch.status = watch.status or 500
            raise
        finally:
            self._send_report(watch.record())

    def _send_report(self, record: UsageRecord) -> None:
        task = asyncio.get_running_loop().create_task(self.report(record))
        self._pending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._pending.discard)


class _AnswerWatch:
    """The `send` of one request: status, first byte, usage; drops forced usage events."""

    def __init__(self, scope: Scope, send: Send, clock: Callable[[], float]) -> None:
        self._scope = scope
        self._send = send
        self._clock = clock
        self._started = clock()
        self._first_byte: float | None = None
        self._stream = False
        self._json = b""
        self.status: int | None = None
        self.usage: dict[str, Any] | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            self._stream = content_type.startswith(b"text/event-stream")
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body and self._first_byte is None:
                self._first_byte = self._clock()
            if self._stream:
                message = {**message, "body": self._events(body)}
            elif len(self._json) + len(body) <= MAX_JSON_BODY:
                self._json += body
            if not message.get("more_body", False) and not self._stream:
                self._read_json_usage()
        await self._send(message)

    def _events(self, body: bytes) -> bytes:
        """`body` minus forced usage-only events; notes the last usage seen. Only a chunk that
        mentions usage is parsed (vLLM sends one event per chunk), so tokens pass untouched."""
        if b'"usage"' not in body:
            return body
        kept = []
        for event in body.split(b"\n\n"):
            parsed = _json(event[len(b"data: ") :]) if event.startswith(b"data: {") else None
            if isinstance(parsed, dict) and isinstance(parsed.get("usage"), dict):
                self.usage = parsed["usage"]
                if parsed.get("choices") == [] and self._forced:
                    continue
            kept.append(event)
        return b"\n\n".join(kept)

    @property
    def _forced(self) -> bool:
        return bool(self._scope.get("state", {}).get(FORCED_USAGE))

    def _read_json_usage(self) -> None:
        parsed = _json(self._json)
        if isinstance(parsed, dict) and isinstance(parsed.get("usage"), dict):
            self.usage = parsed["usage"]

    def record(self) -> UsageRecord:
        headers = dict(self._scope.get("headers", []))
        state = self._scope.get("state", {})
        model = state.get(MODEL) or "-"  # "-": refused before its model was resolved
        key = state.get(KEY_NAME) or headers.get(KEY_HEADER, b"").decode("latin-1") or "-"
        usage = self.usage or {}
        end = self._clock()
        return UsageRecord(
            request_id=headers.get(REQUEST_ID_HEADER, b"").decode("latin-1") or "-",
            key=key,
            model=model,
            path=self._scope["path"],
            status=self.status or 500,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            ttft_ms=None if self._first_byte is None else (self._first_byte - self._started) * 1e3,
            duration_ms=(end - self._started) * 1e3,
        )


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
