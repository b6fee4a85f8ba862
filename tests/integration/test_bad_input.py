"""Bad input never becomes a 5xx: each gets a 4xx OpenAI error naming the parameter, through nginx.

A table of hand-picked cases over both endpoints, a table of odd bodies (depth, size,
encodings, parameters vLLM checks only once it generates) that may be accepted or refused but
never fail, then property-based fuzz of request bodies and of their bytes. A 200 must be clean
too: a stream carrying an error event failed just as a 5xx would have. After each batch the
platform still answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from probes import clean_stream

from gpucluster.serving.json_body import MAX_DEPTH

MODEL = "smollm2-135m-instruct"
HI = [{"role": "user", "content": "Hi"}]
NOT_GIVEN = object()


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: Any = NOT_GIVEN  # JSON-encoded unless `raw` is given
    raw: bytes | None = None
    content_type: str = "application/json"
    status: int = 400
    param: str | None | object = NOT_GIVEN  # NOT_GIVEN: any
    method: str = "POST"
    extra_headers: dict[str, str] = field(default_factory=dict)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": HI, "max_tokens": 2, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "Hi", "max_tokens": 2, **fields}


C, P = "/v1/chat/completions", "/v1/completions"
T, D, E = "/tokenize", "/detokenize", "/v1/embeddings"

CASES = [
    Case("chat: body not JSON", C, raw=b"{not json", param=None),
    Case("completion: body not JSON", P, raw=b"{not json", param=None),
    Case("chat: empty body", C, raw=b"", param=None),
    Case("chat: JSON array", C, body=[1, 2], param=None),
    Case("completion: JSON string", P, body="hello", param=None),
    Case("chat: JSON null", C, body=None, param=None),
    Case("chat: messages missing", C, body={"model": MODEL}, param="messages"),
    Case("chat: messages a string", C, body=chat(messages="hello"), param="messages"),
    Case("chat: messages empty", C, body=chat(messages=[]), param="messages"),
    Case(
        "chat: message without role",
        C,
        body=chat(messages=[{"content": "x"}]),
        param="messages.0.role",
    ),
    Case(
        "chat: unknown role",
        C,
        body=chat(messages=[{"role": "wizard", "content": "x"}]),
        param="messages.0.role",
    ),
    Case(
        "chat: content a number",
        C,
        body=chat(messages=[{"role": "user", "content": 5}]),
        param="messages.0.content",
    ),
    Case("chat: temperature too high", C, body=chat(temperature=2.5), param="temperature"),
    Case("chat: temperature negative", C, body=chat(temperature=-1), param="temperature"),
    Case("chat: temperature a string", C, body=chat(temperature="hot"), param="temperature"),
    Case("chat: top_p zero", C, body=chat(top_p=0), param="top_p"),
    Case("chat: top_p above one", C, body=chat(top_p=1.5), param="top_p"),
    Case("chat: n zero", C, body=chat(n=0), param="n"),
    Case("chat: n too large", C, body=chat(n=1000), param="n"),
    Case("chat: max_tokens negative", C, body=chat(max_tokens=-5), param="max_tokens"),
    Case("chat: max_tokens zero", C, body=chat(max_tokens=0), param="max_tokens"),
    Case("chat: max_tokens beyond context", C, body=chat(max_tokens=100_000), param="max_tokens"),
    Case(
        "chat: max_completion_tokens negative",
        C,
        body=chat(max_completion_tokens=-1),
        param="max_completion_tokens",
    ),
    Case(
        "chat: presence_penalty out of range",
        C,
        body=chat(presence_penalty=3),
        param="presence_penalty",
    ),
    Case(
        "chat: frequency_penalty out of range",
        C,
        body=chat(frequency_penalty=-3),
        param="frequency_penalty",
    ),
    Case(
        "chat: top_logprobs too many",
        C,
        body=chat(logprobs=True, top_logprobs=50),
        param="top_logprobs",
    ),
    Case("chat: stop a number", C, body=chat(stop=5), param="stop"),
    Case("chat: model a number", C, body=chat(model=5), param="model"),
    Case("chat: unknown model", C, body=chat(model="no-such-model"), status=404, param="model"),
    Case(
        "chat: prompt too long for the context",
        C,
        body=chat(messages=[{"role": "user", "content": "hello " * 3000}]),
        param="messages",
    ),
    Case("completion: prompt missing", P, body={"model": MODEL, "max_tokens": 2}, param="prompt"),
    Case("completion: prompt empty", P, body=completion(prompt=""), param="prompt"),
    Case("completion: prompt empty list", P, body=completion(prompt=[]), param="prompt"),
    Case("completion: prompt a dict", P, body=completion(prompt={"a": 1}), param="prompt"),
    Case("completion: max_tokens negative", P, body=completion(max_tokens=-5), param="max_tokens"),
    Case(
        "completion: max_tokens beyond context",
        P,
        body=completion(max_tokens=10_000),
        param="max_tokens",
    ),
    Case(
        "completion: temperature too high", P, body=completion(temperature=9), param="temperature"
    ),
    Case("completion: logprobs too many", P, body=completion(logprobs=99), param="logprobs"),
    Case("completion: n zero", P, body=completion(n=0), param="n"),
    Case(
        "completion: prompt too long for the context",
        P,
        body=completion(prompt="hello " * 3000),
        param="prompt",
    ),
    Case("completion: unknown model", P, body=completion(model="nope"), status=404, param="model"),
    Case(
        "chat: wrong content type",
        C,
        raw=json.dumps(chat()).encode(),
        content_type="text/plain",
        status=415,
        param=None,
    ),
    Case(
        "completion: form-encoded body",
        P,
        raw=b"a=b",
        content_type="application/x-www-form-urlencoded",
        status=415,
        param=None,
    ),
    Case("chat: GET instead of POST", C, method="GET", status=405, param=None),
    Case("unknown path under /v1", "/v1/engines", method="GET", status=404, param=None),
    Case("unknown path outside /v1", "/admin", method="GET", status=404, param=None),
    Case(
        "oversized body",
        P,
        raw=b'{"prompt": "' + b"a" * (5 * 2**20) + b'"}',
        status=413,
        param=None,
    ),
    Case(
        "missing API key",
        C,
        body=chat(),
        status=401,
        param=None,
        extra_headers={"Authorization": ""},
    ),
    Case(
        "wrong API key",
        C,
        body=chat(),
        status=401,
        param=None,
        extra_headers={"Authorization": "Bearer nope"},
    ),
    Case(
        "malformed Authorization",
        P,
        body=completion(),
        status=401,
        param=None,
        extra_headers={"Authorization": "Token x"},
    ),
    Case("tokenize: body not JSON", T, raw=b"{nope", param=None),
    Case("tokenize: prompt a number", T, body={"model": MODEL, "prompt": 5}, param="prompt"),
    Case(
        "tokenize: unknown model",
        T,
        body={"model": "nope", "prompt": "x"},
        status=404,
        param="model",
    ),
    Case(
        "tokenize: without a key",
        T,
        body={"model": MODEL, "prompt": "x"},
        status=401,
        param=None,
        extra_headers={"Authorization": ""},
    ),
    Case("detokenize: tokens a string", D, body={"model": MODEL, "tokens": "abc"}, param="tokens"),
    Case("embeddings on a generative model", E, body={"model": MODEL, "input": "x"}, param="model"),
    Case(
        "rerank on a generative model",
        "/v1/rerank",
        body={"model": MODEL, "query": "x", "documents": ["y"]},
        param="model",
    ),
    Case("chat: 5,000 nested arrays", C, raw=b"[" * 5000 + b"]" * 5000, param=None),
    Case(
        "chat: nesting one level too deep",
        C,
        body=chat(extra=json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
        param=None,
    ),
    Case(
        "completion: 3,000 nested objects in the prompt",
        P,
        raw=b'{"prompt": ' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
        param=None,
    ),
    Case(
        "chat: a lone surrogate in the content",
        C,
        raw=b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        param=None,
    ),
    Case(
        "chat: a surrogate encoded as bytes",
        C,
        raw=b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
        param=None,
    ),
    Case(
        "completion: an integer of 5,000 digits",
        P,
        raw=b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}",
        param=None,
    ),
    Case(
        "chat: NaN temperature",
        C,
        raw=json.dumps(chat(temperature=float("nan"))).encode(),
        param="temperature",
    ),
    Case(
        "chat: invalid UTF-8",
        C,
        raw=b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        param=None,
    ),
    Case(
        "chat: tools without a tool-call parser",
        C,
        body=chat(
            tools=[
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
                }
            ]
        ),
        param="tool_choice",
    ),
]


def send(live, case: Case) -> httpx.Response:
    headers = {**live.headers, "Content-Type": case.content_type, **case.extra_headers}
    headers = {k: v for k, v in headers.items() if v}
    content = (
        case.raw
        if case.raw is not None
        else (None if case.body is NOT_GIVEN else json.dumps(case.body).encode())
    )
    return httpx.request(
        case.method, f"{live.base}{case.path}", content=content, headers=headers, timeout=60
    )


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    message = error["message"]
    assert isinstance(message, str) and message
    assert "Traceback" not in message and "object at 0x" not in message
    return error


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clean_4xx(live, case):
    error = assert_openai_error(send(live, case), case.status)
    if case.param is not NOT_GIVEN:
        assert error["param"] == case.param


def assert_no_failure(response: httpx.Response, what: Any) -> None:
    """Refused in the OpenAI shape, or answered cleanly: a 200 whose body carries an error (an
    SSE error event in a stream) is a failure like a 5xx."""
    assert response.status_code < 500, (what, response.text[:500])
    if response.status_code >= 400:
        assert_openai_error(response, response.status_code)
        return
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        assert clean_stream(response.text), (what, response.text[-500:])
    else:
        assert "error" not in response.json(), (what, response.text[:500])


def odd(name: str, path: str, body: Any = NOT_GIVEN, raw: bytes | None = None) -> list[Case]:
    """An odd body, plain and (for generation) streamed: accepted or refused, never failed."""
    plain = Case(name, path, body=body, raw=raw, status=0)
    if path not in (C, P) or body is NOT_GIVEN:
        return [plain]
    return [plain, Case(f"{name} [stream]", path, body={**body, "stream": True}, status=0)]


ODD = [
    *odd(
        "nesting at the limit",
        C,
        chat(extra=json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))),
    ),
    *odd("a body of 3 MiB", P, completion(prompt="hello", user="u" * (3 * 2**20))),
    *odd("UTF-16 body", C, raw=json.dumps(chat()).encode("utf-16")),
    *odd("UTF-8 body with a byte-order mark", C, raw=b"\xef\xbb\xbf" + json.dumps(chat()).encode()),
    *odd(
        "a NUL character in the content",
        C,
        chat(messages=[{"role": "user", "content": "a\u0000b"}]),
    ),
    *odd("duplicate keys", C, raw=json.dumps(chat()).encode()[:-1] + b', "max_tokens": 3}'),
    *odd(
        "an invalid JSON schema",
        C,
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nope"}},
            }
        ),
    ),
    *odd("an invalid regex", C, chat(structured_outputs={"regex": "(["})),
    *odd("token ids outside the vocabulary", P, completion(prompt=[999_999_999])),
    *odd("logit_bias outside the vocabulary", C, chat(logit_bias={"99999999": 5})),
    *odd("allowed_token_ids outside the vocabulary", C, chat(allowed_token_ids=[99_999_999])),
    *odd("allowed_token_ids empty", C, chat(allowed_token_ids=[])),
    *odd(
        "an image for a text model",
        C,
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                    ],
                }
            ]
        ),
    ),
    *odd(
        "an unknown content part",
        C,
        chat(messages=[{"role": "user", "content": [{"type": "video"}]}]),
    ),
    *odd("min_tokens above max_tokens", C, chat(min_tokens=10, max_tokens=2)),
    *odd("a broken chat template", C, chat(chat_template="{% for %}")),
    *odd("prompt_logprobs of 1,000", P, completion(prompt_logprobs=1000)),
    *odd("truncate_prompt_tokens of a billion", P, completion(truncate_prompt_tokens=10**9)),
    *odd("2,000 messages", C, chat(messages=[{"role": "user", "content": "x"}] * 2000)),
    *odd("stop with 1,000 strings", C, chat(stop=["x"] * 1000)),
    *odd(
        "a tool message without its call id", C, chat(messages=[{"role": "tool", "content": "x"}])
    ),
    *odd("detokenize 100,000 tokens", D, {"model": MODEL, "tokens": list(range(100_000))}),
    *odd(
        "tokenize a conversation with a broken tool",
        T,
        {"model": MODEL, "messages": HI, "tools": [{"type": "function"}]},
    ),
]


@pytest.mark.parametrize("case", ODD, ids=[c.name for c in ODD])
def test_odd_bodies_are_answered_or_refused_never_failed(live, case):
    assert_no_failure(send(live, case), case.name)


def test_platform_answers_after_the_table(live, openai_client):
    reply = openai_client.chat.completions.create(model=live.model, messages=HI, max_tokens=4)
    assert reply.choices[0].message.content is not None
    assert httpx.get(f"{live.base}/health", timeout=30).status_code == 200


# --- property-based fuzz ---------------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
messages = st.one_of(
    st.just(HI),
    st.lists(
        st.fixed_dictionaries(
            {"role": st.one_of(st.sampled_from(["user", "assistant", "system", "robot"]), junk)},
            optional={"content": st.one_of(st.text(max_size=30), junk)},
        ),
        max_size=3,
    ),
    junk,
)
# valid-looking generation lengths stay short so that accepted requests finish quickly
max_tokens = st.one_of(st.integers(min_value=-3, max_value=4), junk)
common = {
    "model": st.one_of(st.just(MODEL), junk),
    "temperature": st.one_of(st.floats(-1, 3, allow_nan=False), junk),
    "top_p": st.one_of(st.floats(-0.5, 1.5, allow_nan=False), junk),
    "n": st.one_of(st.integers(-1, 3), junk),
    "stop": junk,
    "stream": st.booleans(),
    "seed": junk,
}
chat_bodies = st.fixed_dictionaries(
    {"max_tokens": max_tokens}, optional={**common, "messages": messages}
)
completion_bodies = st.fixed_dictionaries(
    {"max_tokens": max_tokens},
    optional={**common, "prompt": st.one_of(st.text(max_size=30), junk), "logprobs": junk},
)


tokenize_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": common["model"],
        "prompt": st.one_of(st.text(max_size=30), junk),
        "messages": messages,
        "add_special_tokens": junk,
    },
)
detokenize_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": common["model"],
        "tokens": st.one_of(st.lists(st.integers(-5, 60000), max_size=5), junk),
    },
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(
    path_and_body=st.one_of(
        chat_bodies.map(lambda b: (C, b)),
        completion_bodies.map(lambda b: (P, b)),
        tokenize_bodies.map(lambda b: (T, b)),
        detokenize_bodies.map(lambda b: (D, b)),
    )
)
def test_fuzzed_bodies_never_get_a_5xx(live, path_and_body):
    path, body = path_and_body
    response = httpx.post(
        f"{live.base}{path}",
        json=body,
        headers={"Authorization": f"Bearer {live.keys['fuzz']}"},
        timeout=120,
    )
    assert_no_failure(response, body)


def nested_in(value: Any, depth: int, kind: str) -> Any:
    for _ in range(depth):
        value = [value] if kind == "array" else {"k": value}
    return value


# Bodies whose bytes are wrong: nested deep, cut short, in another encoding, or noise.
deep_bodies = st.builds(
    lambda base, field, depth, kind: {**base, field: nested_in(1, depth, kind)},
    st.sampled_from([chat(), completion(), chat(stream=True)]),
    st.sampled_from(["messages", "prompt", "stop", "extra", "tools", "logit_bias"]),
    st.integers(1, 3 * MAX_DEPTH),
    st.sampled_from(["array", "object"]),
).map(lambda body: json.dumps(body).encode())
cut_bodies = st.builds(
    lambda body, keep: body[: int(len(body) * keep)],
    st.sampled_from([json.dumps(chat(stream=True)).encode(), json.dumps(completion()).encode()]),
    st.floats(0, 1),
)
encoded_bodies = st.builds(
    lambda body, encoding: json.dumps(body, ensure_ascii=False).encode(encoding, errors="replace"),
    st.sampled_from(
        [chat(messages=[{"role": "user", "content": "héllo ☃"}]), completion(prompt="ünïcode")]
    ),
    st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "ascii"]),
)
noise = st.binary(max_size=200)


@settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(
    path=st.sampled_from([C, P, T]), raw=st.one_of(deep_bodies, cut_bodies, encoded_bodies, noise)
)
def test_fuzzed_bytes_never_get_a_5xx(live, path, raw):
    response = httpx.post(
        f"{live.base}{path}",
        content=raw,
        headers={
            "Authorization": f"Bearer {live.keys['fuzz']}",
            "Content-Type": "application/json",
        },
        timeout=120,
    )
    assert_no_failure(response, raw[:300])


def test_platform_answers_after_the_fuzz(live, openai_client):
    test_platform_answers_after_the_table(live, openai_client)
