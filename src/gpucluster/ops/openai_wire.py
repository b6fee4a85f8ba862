"""What an OpenAI-compatible server sends back, read once for every tool that talks to one.

`bench` and `chat` both stream `/v1/chat/completions`: the SSE lines of such a stream are read by
one `CompletionStream`, whichever HTTP client (sync or async) delivers them. Error bodies in the
OpenAI shape (`{"error": {"message", "type", "param", "code"}}`) and `GET /v1/models` listings
are read here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpucluster.errors import GpuClusterError

MAX_ERROR_CHARS = 300
# Delta fields that carry generated text: the answer, and reasoning (two spellings in use).
TEXT_FIELDS = ("content", "reasoning_content", "reasoning")


@dataclass(frozen=True)
class ErrorBody:
    """The message and code of an error answer or an SSE error event."""

    message: str
    code: str | None = None


def parse_error(body: bytes) -> ErrorBody:
    """The message and code of an OpenAI-style error body, else the body's start as message."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message") if isinstance(error, dict) else error
    if message:
        code = error.get("code") if isinstance(error, dict) else None
        # vLLM sends the HTTP status as a number; the platform sends names such as model_not_found
        return ErrorBody(str(message)[:MAX_ERROR_CHARS], None if code is None else str(code))
    text = body.decode("utf-8", "replace").strip()[:MAX_ERROR_CHARS]
    return ErrorBody(text or "(empty body)")


def error_message(body: bytes) -> str:
    """The message of an OpenAI-style error body, else the body's start."""
    return parse_error(body).message


class StreamError(GpuClusterError, RuntimeError):
    """A stream that broke off: an error event, or a line that is not JSON."""

    next_step = "`gpucluster logs engine` shows what the engine said"

    def __init__(self, kind: str, error: ErrorBody) -> None:
        super().__init__(f"{kind}: {error.message}")
        self.kind = kind  # "stream error" (the server's event) or "bad stream"
        self.error = error


@dataclass(frozen=True)
class Delta:
    """The generated text one chunk carries."""

    content: str = ""
    reasoning: str = ""


class CompletionStream:
    """The state of one streamed chat completion, fed its lines as they arrive.

    `feed` returns the chunk's generated text (None when it has none) and raises StreamError for
    an error event; afterwards `usage`, `finish_reason` and `finished` say how the stream ended.
    """

    def __init__(self) -> None:
        self.done = False  # [DONE] arrived
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.text_chunks = 0

    @property
    def finished(self) -> bool:
        """Whether the stream ended as it should: some servers stop after usage, without [DONE]."""
        return self.done or self.usage is not None

    def feed(self, line: str) -> Delta | None:
        """Read one line of the SSE body."""
        if not line.startswith("data:"):
            return None  # blank separators, comments, event names
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        try:
            chunk = json.loads(data)
        except ValueError:
            raise StreamError("bad stream", ErrorBody(f"not JSON: {data[:80]!r}")) from None
        if not isinstance(chunk, dict):
            return None
        if "error" in chunk:
            raise StreamError("stream error", parse_error(json.dumps(chunk).encode()))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        return self._delta(chunk)

    def _delta(self, chunk: dict[str, Any]) -> Delta | None:
        content, reasoning = [], []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content.append(_text(delta.get("content")))
                reasoning.extend(_text(delta.get(key)) for key in TEXT_FIELDS[1:])
        found = Delta("".join(content), "".join(reasoning))
        if not (found.content or found.reasoning):
            return None
        self.text_chunks += 1
        return found


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def model_ids(payload: Any) -> list[str]:
    """The model ids of a `GET /v1/models` answer (empty when it lists none or is malformed)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return []
    return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]


def describe(exc: Exception) -> str:
    """An exception's message, or its class name when it has none (httpx's often have none)."""
    return str(exc) or type(exc).__name__
