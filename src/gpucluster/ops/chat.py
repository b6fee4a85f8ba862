"""A conversation with a served model over the OpenAI API: `gpucluster chat`'s core.

HTTP only, like every operator tool (DESIGN.md: ops sees the platform as an operator does). The
HTTP client and the clock are given (convention 4): the CLI passes an `httpx.Client` and
`time.perf_counter`; tests pass a client over a fake server and a clock they move. Each reply is
streamed (`stream_options.include_usage`), so its text shows as it is generated, and is timed:
TTFT, completion tokens, tokens/s after the first token, total time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self

import httpx

from gpucluster.errors import GpuClusterError
from gpucluster.ops.openai_wire import (
    CompletionStream,
    StreamError,
    describe,
    model_ids,
    parse_error,
)

Clock = Callable[[], float]
Message = dict[str, str]


class ChatError(GpuClusterError, RuntimeError):
    """A request that failed; the message says what went wrong and, where it can, what to do."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the OpenAI error code (model_not_found, invalid_api_key, ...)
        self.status = status  # the HTTP status of an error answer; None mid-stream or offline


@dataclass(frozen=True)
class Reply:
    """One reply and how fast it came."""

    text: str
    ttft_ms: float | None  # request sent -> first generated text (None: nothing generated)
    completion_tokens: int
    prompt_tokens: int | None  # as the server counted them: the whole conversation so far
    tokens_per_s: float | None  # tokens after the first / time after the first: 1 / TPOT
    total_s: float
    finish_reason: str | None
    usage_reported: bool  # False: completion_tokens counts text chunks (the server sent no usage)


@dataclass(frozen=True)
class ChatApi:
    """An OpenAI-compatible server: an httpx client, the base URL ending in /v1, a bearer key."""

    client: httpx.Client
    base_url: str
    api_key: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def models(self) -> list[str]:
        """The served model ids (GET /v1/models), first the default; ChatError when none."""
        url = f"{self.base_url}/models"
        try:
            response = self.client.get(url, headers=self.headers)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if response.status_code != 200:
            raise self.refusal(response)
        try:
            ids = model_ids(response.json())
        except ValueError:
            ids = []
        if not ids:
            raise ChatError(f"GET {url} listed no models; name one as MODEL")
        return ids

    def refusal(self, response: httpx.Response) -> ChatError:
        """The ChatError for an error answer (OpenAI shape), with the next step for the common ones."""
        status = response.status_code
        error = parse_error(response.read())
        hint = None
        if status == 401:
            hint = "pass --api-key or set GPUCLUSTER_API_KEYS"
        elif status == 404 and error.code == "model_not_found":
            hint = self._served_hint(error.message)
        elif status == 404:
            hint = f"is {self.base_url} the API's base URL, ending in /v1?"
        elif status == 429 and "retry after" not in error.message.lower():
            wait = response.headers.get("Retry-After")
            hint = f"retry after {wait} s" if wait else "retry in a moment"
        message = f"HTTP {status}: {error.message}"
        if hint:
            message = f"{message.rstrip('.')}; {hint}"
        return ChatError(message, error.code, status)

    def unreachable(self, exc: httpx.HTTPError) -> ChatError:
        """The ChatError for a request that got no answer."""
        if isinstance(exc, httpx.ConnectError):
            return ChatError(
                f"the platform is not running at {self.base_url} ({describe(exc)}); "
                "start it with `gpucluster up`"
            )
        if isinstance(exc, httpx.TimeoutException):
            return ChatError(f"{self.base_url} did not answer in time ({type(exc).__name__})")
        return ChatError(f"the connection to {self.base_url} broke: {describe(exc)}")

    def _served_hint(self, message: str) -> str | None:
        try:
            served = self.models()
        except ChatError:
            return None
        if all(model in message for model in served):
            return None  # the platform's own message already lists them
        return f"served models: {', '.join(served)}"


class Conversation:
    """The messages so far with one model; `ask` streams the next reply.

    `max_tokens` and `temperature` are sent only when given, so the model's own defaults apply.
    """

    def __init__(
        self,
        api: ChatApi,
        model: str,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.api = api
        self.model = model
        self.system = system
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.clock = clock
        self.messages: list[Message] = []
        self.reset()

    def reset(self) -> None:
        """Start a new conversation (the system prompt stays)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def body(self, messages: list[Message]) -> dict[str, Any]:
        """The streamed chat completion request for `messages`."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def ask(self, text: str) -> Turn:
        """The next turn: iterate it for the reply's text as it arrives."""
        return Turn(self, text)


class Turn:
    """One exchange. Iterating it streams the reply's text; then `reply` holds it with its stats.

    The exchange joins the conversation only once the reply is complete: a failed turn (ChatError)
    or one closed early (`close()`, or leaving its `with` block, e.g. on Ctrl-C) leaves it as it was.
    """

    def __init__(self, conversation: Conversation, text: str) -> None:
        self.conversation = conversation
        self.text = text
        self.reply: Reply | None = None
        self._deltas = self._stream()

    def __iter__(self) -> Iterator[str]:
        return self._deltas

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading the reply and close its stream (the server then stops generating)."""
        self._deltas.close()

    def wait(self) -> Reply:
        """Read the whole reply without showing it."""
        for _ in self:
            pass
        assert self.reply is not None
        return self.reply

    def _stream(self) -> Iterator[str]:
        conversation, api = self.conversation, self.conversation.api
        messages = [*conversation.messages, {"role": "user", "content": self.text}]
        stream = CompletionStream()
        parts: list[str] = []
        started = conversation.clock()
        first: float | None = None
        try:
            with api.client.stream(
                "POST",
                f"{api.base_url}/chat/completions",
                json=conversation.body(messages),
                headers=api.headers,
            ) as response:
                if response.status_code != 200:
                    raise api.refusal(response)
                for line in response.iter_lines():
                    delta = stream.feed(line)
                    if delta is not None and first is None:
                        first = conversation.clock()
                    if delta is not None and delta.content:
                        parts.append(delta.content)
                        yield delta.content
                    if stream.done:
                        break
        except StreamError as exc:
            raise ChatError(f"the reply failed: {exc.error.message}", exc.error.code) from None
        except httpx.HTTPError as exc:
            raise api.unreachable(exc) from None
        if not stream.finished:
            raise ChatError("the reply stream ended before it was complete (no usage, no [DONE])")
        self.reply = _reply("".join(parts), stream, started, first, conversation.clock())
        conversation.messages = [*messages, {"role": "assistant", "content": self.reply.text}]


def _reply(
    text: str, stream: CompletionStream, started: float, first: float | None, end: float
) -> Reply:
    usage = stream.usage or {}
    reported = usage.get("completion_tokens")
    prompt_tokens = usage.get("prompt_tokens")
    usage_reported = isinstance(reported, int)
    tokens = reported if usage_reported else stream.text_chunks
    decode_s = end - first if first is not None else 0.0
    # The first token is TTFT's; the rest came in the decode time after it.
    rate = (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None
    return Reply(
        text=text,
        ttft_ms=(first - started) * 1000 if first is not None else None,
        completion_tokens=tokens,
        prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
        tokens_per_s=rate,
        total_s=end - started,
        finish_reason=stream.finish_reason,
        usage_reported=usage_reported,
    )
