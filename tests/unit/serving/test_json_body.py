"""Bodies too deep or too large are refused before any parser sees them; others pass intact."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from gpucluster.config.schema import EdgeConfig
from gpucluster.serving.api_app import build_fastapi_app
from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.errors import ApiError
from gpucluster.serving.json_body import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_DEPTH,
    load_json,
    nesting_depth_exceeds,
)
from gpucluster.serving.validation import parse_body

LIMIT = 1000  # a small body limit, so that the tests send little


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("depth", [1, MAX_DEPTH])
def test_nesting_up_to_the_limit_passes(depth):
    text = nested(depth).encode()
    assert not nesting_depth_exceeds(text)
    assert load_json(text) is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 200_000])
def test_deeper_nesting_is_invalid_json_naming_the_limit(depth):
    assert nesting_depth_exceeds(nested(depth).encode())
    with pytest.raises(ApiError) as refused:
        load_json(nested(depth).encode())
    assert (refused.value.status, refused.value.code) == (400, "invalid_json")
    assert str(MAX_DEPTH) in refused.value.message


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"content": "[{" * 500, "quote": '\\"[[[[' * 100, "list": [[1]]}).encode()
    assert not nesting_depth_exceeds(text)
    assert load_json(text)["list"] == [[1]]


def test_many_shallow_siblings_are_not_deep():
    text = json.dumps({"messages": [{"role": "user", "content": "x"}] * 500}).encode()
    assert not nesting_depth_exceeds(text)


def test_objects_count_like_arrays():
    assert nesting_depth_exceeds(('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)).encode())


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe{}", b'{"a": "\xff"}', b"[" * 10])
def test_what_is_not_json_is_invalid_json(raw):
    with pytest.raises(ApiError) as refused:
        load_json(raw)
    assert refused.value.code == "invalid_json"


def test_the_default_limit_is_the_edges():
    assert DEFAULT_MAX_BODY_BYTES == EdgeConfig().max_body_mib * 2**20


@pytest.fixture
def client() -> TestClient:
    app = build_fastapi_app(ApiKeys([]), max_body_bytes=LIMIT)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"raw": (await request.body()).decode(), "parsed": await request.json()}

    @app.post("/parsed")
    async def parsed(request: Request) -> dict:
        from pydantic import BaseModel

        class Body(BaseModel):
            value: object

        return (await parse_body(request, Body)).model_dump()

    return TestClient(app, raise_server_exceptions=False)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_body_within_the_limits_reaches_the_endpoint_unchanged(client):
    body = json.dumps({"value": [[["x"]]], "text": "é"})
    answer = client.post("/echo", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    assert answer.json() == {"raw": body, "parsed": json.loads(body)}


def test_a_deep_body_is_a_400_before_the_endpoint_parses_it(client):
    error = error_of(
        client.post("/parsed", content=nested(400), headers={"Content-Type": "application/json"}),
        400,
    )
    assert error["code"] == "invalid_json" and str(MAX_DEPTH) in error["message"]


def test_a_body_over_the_limit_is_a_413_declared_or_not(client):
    big = json.dumps({"value": "a" * LIMIT})
    declared = client.post("/echo", content=big, headers={"Content-Type": "application/json"})
    assert error_of(declared, 413)["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit holds on the bytes read
        for start in range(0, len(big), 100):
            yield big[start : start + 100].encode()

    streamed = client.post("/echo", content=chunked(), headers={"Content-Type": "application/json"})
    assert error_of(streamed, 413)["message"] == f"The request body is larger than {LIMIT} bytes."


def test_the_413_says_what_nginx_says():
    app = build_fastapi_app(ApiKeys([]), max_body_bytes=4 * 2**20)
    client = TestClient(app, raise_server_exceptions=False)
    big = b'{"prompt": "' + b"a" * (4 * 2**20) + b'"}'
    error = error_of(
        client.post("/v1/completions", content=big, headers={"Content-Type": "application/json"}),
        413,
    )
    assert error["message"] == "The request body is larger than 4m."  # nginx: ${NGINX_MAX_BODY}


def test_a_lone_surrogate_escape_is_invalid_json_a_pair_is_text():
    assert load_json(b'{"a": "\\ud83d\\ude00 \\\\ud800"}') == {"a": "\U0001f600 \\ud800"}
    for lone in (b'{"a": "\\ud800"}', b'{"a": ["x\\uDFFF"]}', b'{"\\udc00": 1}'):
        with pytest.raises(ApiError) as refused:
            load_json(lone)
        assert refused.value.code == "invalid_json" and "surrogate" in refused.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes (CESU-8)
        '{"a": "'.encode("utf-16-le") + b"\x00\xd8" + '"}'.encode("utf-16-le"),  # UTF-16, lone half
    ],
)
def test_a_surrogate_encoded_as_bytes_is_invalid_json_too(raw):
    with pytest.raises(ApiError) as refused:
        load_json(raw)
    assert refused.value.code == "invalid_json" and "surrogate" in refused.value.message


def test_other_encodings_of_text_still_parse():
    body = {"a": "héllo ☃ \U0001f600"}
    for encoding in ("utf-8", "utf-16", "utf-16-be", "utf-32"):
        assert load_json(json.dumps(body, ensure_ascii=False).encode(encoding)) == body
