"""`gpucluster chat`: talk to a served model in the terminal, or get one answer with -p.

Registered by the main app with `app.command("chat")(chat)`. It uses the endpoint and key that
`bench` uses. Interactive: a `you> ` prompt, the reply streamed as it is generated, then a dim
stats line on stderr; `/reset` starts over, `/exit` or Ctrl-D quits, Ctrl-C stops a reply and
keeps the session. Lines piped in are one turn each. Exit codes: 0 ok, 1 a request failed, 2 usage.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, TextIO

import httpx
import typer

from gpucluster.cli.common import (
    ApiKeyOption,
    ConfigOption,
    JsonOption,
    UrlOption,
    api_endpoint,
    emit,
    err,
    error_json,
    fmt,
)
from gpucluster.ops.chat import ChatApi, ChatError, Conversation, Reply

PROMPT = "you> "
# A reply may wait in the engine's queue before its first token: wait long for bytes.
TIMEOUT = httpx.Timeout(600, connect=10)
HELP_LINE = "/reset starts a new conversation, /exit or Ctrl-D quits, Ctrl-C stops a reply"


def chat(
    model: Annotated[
        str | None,
        typer.Argument(
            metavar="MODEL", help="Model to talk to. Default: the first one GET /v1/models lists."
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt", "-p", help="Ask this once: the answer on stdout, stats on stderr."
        ),
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt.")] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, help="Longest reply in tokens. Default: the model's."),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", min=0, help="Sampling temperature. Default: the model's."),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Chat with a served model: replies stream as they are generated, the conversation is kept,
    and each reply shows its TTFT and tokens/s. -p asks once, for scripts."""
    base_url, key = api_endpoint(url, api_key, config, as_json)
    with httpx.Client(timeout=TIMEOUT) as client:
        api = ChatApi(client, base_url, key)
        model = model or api.models()[0]  # ChatError: exit 1
        conversation = Conversation(
            api, model, system=system, max_tokens=max_tokens, temperature=temperature
        )
        if prompt is not None:
            _one_shot(conversation, prompt, as_json)
        elif not _session(conversation, sys.stdin, as_json):
            raise typer.Exit(1)


def _one_shot(conversation: Conversation, prompt: str, as_json: bool) -> None:
    reply = _turn(conversation, prompt, show=not as_json)  # ChatError: exit 1
    if as_json:
        emit(reply_json(conversation.model, reply))
    else:
        _note(stats_line(reply))


def _session(conversation: Conversation, stdin: TextIO, as_json: bool) -> bool:
    """Turn after turn until /exit or end of input; whether every turn succeeded."""
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 (line editing and history for input())
        except ImportError:
            pass
    if not as_json:
        _note(f"chat with {conversation.model} at {conversation.api.base_url}; {HELP_LINE}")
    ok = True
    while (text := _next_line(stdin, interactive)) is not None:
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            conversation.reset()
            if not as_json:
                _note("new conversation")
            continue
        if text.startswith("/"):
            _note(f"unknown command {text}; {HELP_LINE}", style="yellow")
            continue
        ok = _session_turn(conversation, text, as_json) and ok
    return ok


def _next_line(stdin: TextIO, interactive: bool) -> str | None:
    """The next non-empty line, or None at the end of input (Ctrl-D)."""
    while True:
        try:
            line = input(PROMPT) if interactive else stdin.readline()
        except EOFError:
            print()  # end the prompt's line
            return None
        except KeyboardInterrupt:  # at the prompt: a fresh line, as in a shell
            _note(f"\n({HELP_LINE})")
            continue
        if not interactive and not line:
            return None
        if line.strip():
            return line.strip()


def _session_turn(conversation: Conversation, text: str, as_json: bool) -> bool:
    """One turn of a session, its result shown; whether it succeeded (an abort is not a failure)."""
    try:
        reply = _turn(conversation, text, show=not as_json)
    except ChatError as exc:
        if as_json:
            print(json.dumps(error_json(str(exc), exc.next_step)), flush=True)
        else:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return False
    except KeyboardInterrupt:
        _note("[reply stopped; not kept in the conversation]")
        return True
    if as_json:
        print(json.dumps(reply_json(conversation.model, reply)), flush=True)
    else:
        _note(stats_line(reply))
    return True


def _turn(conversation: Conversation, text: str, show: bool) -> Reply:
    """Ask `text`, writing the reply to stdout as it streams when `show`; the reply.

    On Ctrl-C (KeyboardInterrupt) the reply's stream is closed, so the server stops generating.
    """
    last = ""  # the last text written, to end the reply's line
    try:
        with conversation.ask(text) as turn:
            for delta in turn:
                if show:
                    sys.stdout.write(delta)
                    sys.stdout.flush()
                    last = delta
            assert turn.reply is not None
            return turn.reply
    finally:
        if last and not last.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()


def _note(text: str, style: str = "dim") -> None:
    """A line for the person on stderr (stdout carries only replies), as written."""
    err.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def stats_line(reply: Reply) -> str:
    """`TTFT 84 ms · 23 tokens · 41.2 tok/s`; `~23 tokens` when counted from chunks, not usage."""
    ttft = fmt(reply.ttft_ms, "{:.0f}")
    tokens = f"{'' if reply.usage_reported else '~'}{reply.completion_tokens} tokens"
    rate = fmt(reply.tokens_per_s, "{:.1f}")
    return f"TTFT {ttft} ms · {tokens} · {rate} tok/s"


def reply_json(model: str, reply: Reply) -> dict[str, Any]:
    """A reply for scripts (`--json`)."""
    return {
        "ok": True,
        "model": model,
        "text": reply.text,
        "ttft_ms": None if reply.ttft_ms is None else round(reply.ttft_ms, 1),
        "completion_tokens": reply.completion_tokens,
        "prompt_tokens": reply.prompt_tokens,
        "tokens_per_s": None if reply.tokens_per_s is None else round(reply.tokens_per_s, 2),
        "total_s": round(reply.total_s, 3),
        "finish_reason": reply.finish_reason,
    }
