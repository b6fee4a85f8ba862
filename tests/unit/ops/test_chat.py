"""The chat core against fake OpenAI servers: streaming, stats, the conversation, every error."""

from __future__ import annotations

import socket

import httpx
import pytest

from gpucluster.ops.chat import ChatApi, ChatError, Conversation

URL = "http://a.test/v1"


def scripted(*readings: float):
    """A clock that returns `readings` in turn: request sent, first text, end of the reply."""
    values = iter(readings)
    return lambda: next(values)


@pytest.fixture
def fake(make_fake):
    return make_fake(default_tokens=4)


@pytest.fixture
def api(fake, make_transport):
    client = httpx.Client(transport=make_transport({"a.test": fake}))
    yield ChatApi(client, URL, "key-a")
    client.close()


def test_a_reply_streams_its_deltas_and_is_timed(api, fake):
    conversation = Conversation(api, "fake-model", clock=scripted(10.0, 10.084, 10.384))
    turn = conversation.ask("hello")
    assert list(turn) == [" t0", " t1", " t2", " t3"]
    reply = turn.reply
    assert reply.text == " t0 t1 t2 t3"
    assert reply.ttft_ms == pytest.approx(84)
    assert reply.completion_tokens == 4 and reply.usage_reported
    assert reply.prompt_tokens == 1  # the fake counts words
    assert reply.tokens_per_s == pytest.approx(3 / 0.3)  # three tokens after the first
    assert reply.total_s == pytest.approx(0.384)
    assert reply.finish_reason == "length"
    body = fake.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert fake.headers[0]["authorization"] == "Bearer key-a"


def test_the_model_defaults_apply_unless_options_are_given(api, fake):
    Conversation(api, "fake-model").ask("a").wait()
    assert "temperature" not in fake.bodies[0] and "max_tokens" not in fake.bodies[0]
    Conversation(api, "fake-model", max_tokens=2, temperature=0).ask("b").wait()
    assert (fake.bodies[1]["max_tokens"], fake.bodies[1]["temperature"]) == (2, 0)


def test_the_conversation_is_carried_into_the_next_request(api, fake):
    conversation = Conversation(api, "fake-model", system="Be brief.")
    conversation.ask("My name is Ada.").wait()
    conversation.ask("What is my name?").wait()
    assert fake.bodies[1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": " t0 t1 t2 t3"},
        {"role": "user", "content": "What is my name?"},
    ]
    conversation.reset()
    conversation.ask("again").wait()
    assert fake.bodies[2]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "again"},
    ]


def test_a_failed_turn_is_not_kept(make_fake, make_transport):
    fake = make_fake(fail_every=2, default_tokens=1)
    api = ChatApi(httpx.Client(transport=make_transport({"a.test": fake})), URL)
    conversation = Conversation(api, "fake-model")
    conversation.ask("one").wait()
    with pytest.raises(ChatError, match=r"HTTP 500: engine failed \(request 2\)"):
        conversation.ask("two").wait()
    conversation.ask("three").wait()
    assert [m["content"] for m in fake.bodies[2]["messages"]] == ["one", " t0", "three"]


def test_a_turn_closed_early_is_not_kept(api, fake):
    conversation = Conversation(api, "fake-model")
    with conversation.ask("interrupted") as turn:
        assert next(iter(turn)) == " t0"
    assert turn.reply is None and conversation.messages == []


def test_an_error_event_mid_stream_fails_the_turn(make_fake, make_transport):
    fake = make_fake(error_event=True)
    api = ChatApi(httpx.Client(transport=make_transport({"a.test": fake})), URL)
    conversation = Conversation(api, "fake-model")
    with pytest.raises(ChatError, match="the reply failed: engine died mid-stream") as caught:
        conversation.ask("hi").wait()
    assert caught.value.code == "500" and caught.value.status is None
    assert conversation.messages == []


def test_a_wrong_key_says_how_to_pass_one(make_fake, make_transport):
    fake = make_fake(api_key="right")
    api = ChatApi(httpx.Client(transport=make_transport({"a.test": fake})), URL, "wrong")
    with pytest.raises(ChatError) as caught:
        Conversation(api, "fake-model").ask("hi").wait()
    assert (
        str(caught.value) == "HTTP 401: Invalid API key; pass --api-key or set GPUCLUSTER_API_KEYS"
    )
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    with pytest.raises(ChatError, match="pass --api-key"):
        api.models()


def test_an_unknown_model_lists_the_served_ones(api):
    with pytest.raises(ChatError) as caught:
        Conversation(api, "nope").ask("hi").wait()
    assert (
        str(caught.value) == "HTTP 404: The model `nope` does not exist; served models: fake-model"
    )
    assert caught.value.code == "model_not_found"


def test_a_busy_server_says_when_to_retry(make_fake, make_transport):
    fake = make_fake(retry_after=3)
    api = ChatApi(httpx.Client(transport=make_transport({"a.test": fake})), URL)
    with pytest.raises(ChatError, match=r"HTTP 429: The model is at capacity; retry after 3 s$"):
        Conversation(api, "fake-model").ask("hi").wait()


def test_a_platform_that_is_not_running_is_named(unused_port):
    url = f"http://127.0.0.1:{unused_port}/v1"
    with httpx.Client() as client:
        api = ChatApi(client, url)
        for call in (api.models, lambda: Conversation(api, "m").ask("hi").wait()):
            with pytest.raises(ChatError) as caught:
                call()
            message = str(caught.value)
            assert message.startswith(f"the platform is not running at {url} (")
            assert message.endswith("start it with `gpucluster up`")


def test_without_usage_the_tokens_are_counted_from_chunks(make_fake, make_transport):
    fake = make_fake(usage=False, default_tokens=3)
    api = ChatApi(httpx.Client(transport=make_transport({"a.test": fake})), URL)
    reply = Conversation(api, "fake-model").ask("hi").wait()
    assert (reply.completion_tokens, reply.usage_reported) == (3, False)


def test_a_stream_cut_short_fails_the_turn():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text='data: {"choices":[{"delta":{"content":"Par"}}]}\n\n')

    api = ChatApi(httpx.Client(transport=httpx.MockTransport(handler)), URL)
    with pytest.raises(ChatError, match="ended before it was complete"):
        Conversation(api, "m").ask("hi").wait()


def test_the_served_models_are_listed(api):
    assert api.models() == ["fake-model"]
    listing = httpx.MockTransport(lambda request: httpx.Response(200, json={"data": []}))
    empty = ChatApi(httpx.Client(transport=listing), URL)
    with pytest.raises(ChatError, match="listed no models"):
        empty.models()


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on: bound to learn a free number, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (
            429,
            {"message": "Busy. Retry after 2 s.", "code": "model_at_capacity"},
            "HTTP 429: Busy. Retry after 2 s.",
        ),
        (
            404,
            {
                "message": "The model 'x' does not exist. Available models: fake-model.",
                "code": "model_not_found",
            },
            "HTTP 404: The model 'x' does not exist. Available models: fake-model.",
        ),
        (
            404,
            {"message": "Unknown path.", "code": "not_found"},
            f"HTTP 404: Unknown path; is {URL} the API's base URL, ending in /v1?",
        ),
    ],
)
def test_what_the_platform_already_says_is_not_repeated(status, error, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": [{"id": "fake-model"}]})
        return httpx.Response(status, json={"error": {"type": "x", "param": None, **error}})

    api = ChatApi(httpx.Client(transport=httpx.MockTransport(handler)), URL)
    with pytest.raises(ChatError) as caught:
        Conversation(api, "x").ask("hi").wait()
    assert str(caught.value) == expected
