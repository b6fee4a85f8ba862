"""The OpenAI API on the live platform, through the official `openai` client."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.api, api_key="unused", timeout=120, max_retries=0)


def test_models_lists_the_default_model(client, live):
    assert [m.id for m in client.models.list().data] == [live.model]


def test_greedy_chat_knows_the_capital_of_france(client, live):
    reply = client.chat.completions.create(
        model=live.model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=32,
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_completion_returns_text_and_usage(client, live):
    reply = client.completions.create(
        model=live.model, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.choices[0].text.strip()
    assert reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens >= 5


def test_usage_counts_match_the_text(client, live):
    reply = client.chat.completions.create(
        model=live.model,
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
        temperature=0,
        max_tokens=12,
    )
    usage = reply.usage
    assert reply.choices[0].finish_reason == "length"
    assert usage.completion_tokens == 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # the same text re-sent as the prompt of a completion tokenizes to about as many tokens
    echo = client.completions.create(
        model=live.model, prompt=reply.choices[0].message.content, max_tokens=1
    )
    assert abs(echo.usage.prompt_tokens - usage.completion_tokens) <= 2


def test_streaming_chat_arrives_in_order_and_ends_with_done(live):
    import httpx

    body = {
        "model": live.model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = []
    with httpx.stream("POST", f"{live.api}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len([c for c in chunks if c["choices"]]) >= 2
    assert "Paris" in text
    assert chunks[-1]["usage"]["completion_tokens"] >= 2


def test_streaming_with_the_openai_client(client, live):
    stream = client.chat.completions.create(
        model=live.model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=16,
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "Paris" in "".join(pieces)
