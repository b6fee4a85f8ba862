"""The OpenAI API through nginx, with the official `openai` client."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import httpx

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def ask(client, live, messages=FRANCE, max_tokens=32, **extra):
    return client.chat.completions.create(
        model=live.model, messages=messages, temperature=0, max_tokens=max_tokens, **extra
    )


def test_models_lists_the_default_model(openai_client, live):
    assert [m.id for m in openai_client.models.list().data] == [live.model]


def test_greedy_chat_knows_the_capital_of_france(openai_client, live):
    reply = ask(openai_client, live)
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")


def readme_first_request() -> str:
    """The README's first curl, as written."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    command = next(b for b in blocks if b.lstrip().startswith("curl ") and "/v1/chat" in b)
    return command.strip()


def test_the_readmes_first_request_answers_paris(live):
    # Exactly the README's command, pointed at this platform, with the test platform's key:
    # no sampling parameters and no max_tokens, so the built-in model's own defaults answer.
    command = readme_first_request().replace("http://localhost:18080", live.base, 1)
    key = shlex.quote(f"Authorization: Bearer {live.api_key}")
    command = command.replace("curl ", f"curl -sS -H {key} ", 1)
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert "Paris" in reply["choices"][0]["message"]["content"], reply
    # Ended by itself after a short answer: before the defaults, 2,011 tokens of noise.
    assert reply["choices"][0]["finish_reason"] == "stop", reply


def test_completion_returns_text_and_usage(openai_client, live):
    reply = openai_client.completions.create(
        model=live.model, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.choices[0].text.strip()
    assert reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens >= 5


def test_usage_counts_match_the_text(openai_client, live):
    count = [{"role": "user", "content": "Count from one to twenty in words."}]
    reply = ask(openai_client, live, messages=count, max_tokens=12)
    usage = reply.usage
    assert reply.choices[0].finish_reason == "length"
    assert usage.completion_tokens == 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # the same text re-sent as the prompt of a completion tokenizes to about as many tokens
    echo = openai_client.completions.create(
        model=live.model, prompt=reply.choices[0].message.content, max_tokens=1
    )
    assert abs(echo.usage.prompt_tokens - usage.completion_tokens) <= 2


def test_streaming_chat_arrives_in_order_and_ends_with_done(live):
    body = {
        "model": live.model,
        "messages": FRANCE,
        "temperature": 0,
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = []
    with httpx.stream(
        "POST", f"{live.api}/chat/completions", json=body, headers=live.headers, timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len([c for c in chunks if c["choices"]]) >= 2
    assert "Paris" in text
    assert chunks[-1]["usage"]["completion_tokens"] >= 2


def test_streaming_with_the_openai_client(openai_client, live):
    stream = ask(openai_client, live, max_tokens=16, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "Paris" in "".join(pieces)
