"""The API's error contract, on a bare FastAPI app with the platform's handlers (no Ray)."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from ray.serve.exceptions import BackPressureError
from starlette.requests import Request
from starlette.responses import StreamingResponse

from gpucluster.serving.api_app import build_fastapi_app, with_sse_errors
from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.errors import ApiError, overloaded
from gpucluster.serving.validation import parse_body


class Body(BaseModel):
    messages: list[str]
    max_tokens: int | None = None


class UpstreamError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@pytest.fixture
def client() -> TestClient:
    app: FastAPI = build_fastapi_app(ApiKeys([]))

    @app.post("/echo")
    async def echo(body: Body) -> dict:
        return body.model_dump()

    @app.get("/api-error")
    async def api_error() -> None:
        raise ApiError(404, "no such model", param="model", code="model_not_found")

    @app.get("/upstream-400")
    async def upstream_400() -> None:
        raise UpstreamError(400, "prompt too long")

    @app.get("/full")
    async def full() -> None:
        raise overloaded("m", BackPressureError(16, 16, status_code=429, retry_after_s=1.5))

    @app.get("/stream-fails")
    async def stream_fails(request: Request):
        async def chunks():
            yield 'data: {"choices": []}\n\n'
            raise RuntimeError("ActorDiedError: the replica died <object at 0x1234>")

        return with_sse_errors(StreamingResponse(chunks(), media_type="text/event-stream"), request)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals <object at 0x1234>")

    return TestClient(app, raise_server_exceptions=False)


def error_of(response, status):
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_api_error_keeps_its_fields(client):
    error = error_of(client.get("/api-error"), 404)
    assert error == {
        "message": "no such model",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_a_full_model_is_429_with_retry_after(client):
    response = client.get("/full")
    error = error_of(response, 429)
    assert response.headers["retry-after"] == "2"
    assert (error["type"], error["code"]) == ("rate_limit_error", "model_at_capacity")
    assert "'m' is at capacity" in error["message"] and "Retry after 2 s" in error["message"]


def test_a_stream_failing_midway_ends_with_an_sse_error_event_and_done(client):
    response = client.get("/stream-fails", headers={"x-request-id": "req-7"})
    assert response.status_code == 200
    events = [
        line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert events[0] == '{"choices": []}' and events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "req-7" in error["message"] and "0x1234" not in error["message"]


def test_invalid_json_is_400(client):
    response = client.post("/echo", content=b"{nope", headers={"content-type": "application/json"})
    assert error_of(response, 400)["code"] == "invalid_json"


def test_wrong_type_names_the_parameter(client):
    error = error_of(client.post("/echo", json={"messages": "hi"}), 400)
    assert error["param"] == "messages"
    assert "messages" in error["message"]


def test_body_that_is_not_an_object_is_400(client):
    assert error_of(client.post("/echo", json=[1, 2]), 400)["type"] == "invalid_request_error"


def test_unknown_route_and_method(client):
    assert error_of(client.get("/nothing"), 404)["code"] == "not_found"
    assert error_of(client.get("/echo"), 405)["code"] == "method_not_allowed"


def test_upstream_client_error_keeps_status_and_message(client):
    error = error_of(client.get("/upstream-400"), 400)
    assert error["message"] == "prompt too long"


def test_server_error_hides_internals_and_carries_request_id(client):
    response = client.get("/boom", headers={"x-request-id": "req-42"})
    error = error_of(response, 500)
    assert error["type"] == "server_error"
    assert "req-42" in error["message"]
    assert "0x1234" not in error["message"] and "RuntimeError" not in error["message"]


class VLLMClientError(Exception):
    """Stands in for vLLM's class of the same name (matched by name, vllm is not imported)."""


class VLLMValidationError(VLLMClientError):
    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


@pytest.fixture
def engine_client() -> TestClient:
    app = build_fastapi_app(ApiKeys([]))

    @app.post("/v1/completions")
    async def completions() -> None:
        raise VLLMValidationError(
            "Either prompt or prompt_embeds must be provided.", parameter="prompt"
        )

    @app.post("/v1/chat/completions")
    async def chat() -> None:
        raise UpstreamError(
            400,
            "This model's maximum context length is 2048 tokens. (parameter=input_tokens, value=2044)",
        )

    return TestClient(app, raise_server_exceptions=False)


def test_vllm_client_errors_are_400_with_their_parameter(engine_client):
    error = error_of(engine_client.post("/v1/completions", json={}), 400)
    assert error["param"] == "prompt"
    assert error["message"] == "Either prompt or prompt_embeds must be provided."


def test_engine_parameter_suffix_becomes_param(engine_client):
    error = error_of(engine_client.post("/v1/chat/completions", json={}), 400)
    assert error["param"] == "messages"
    assert error["message"] == "This model's maximum context length is 2048 tokens."


def test_non_json_content_type_is_415(client):
    response = client.post(
        "/echo", content=b'{"messages": []}', headers={"content-type": "text/plain"}
    )
    assert error_of(response, 415)["code"] == "unsupported_media_type"


def test_union_member_names_are_not_part_of_param(client):
    error = error_of(client.post("/echo", json={"messages": [5]}), 400)
    assert error["param"] == "messages.0"


class Fragile(BaseModel):
    """Like vLLM's request models: a validator that raises TypeError on some bodies."""

    messages: list[str]

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        from pydantic_core import core_schema

        def check(data):
            for _ in data.get("messages"):  # TypeError when messages is null
                pass
            return data

        return core_schema.no_info_before_validator_function(check, handler(source))


@pytest.fixture
def parsing_client() -> TestClient:
    app = build_fastapi_app(ApiKeys([]))

    @app.post("/parse")
    async def parse(request: Request) -> dict:
        return (await parse_body(request, Fragile)).model_dump()

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"{nope", "invalid_json", None),
        (b"[1]", "invalid_body", None),
        (b'{"messages": null}', "invalid_body", None),
        (b'{"messages": [1]}', "invalid_parameter", "messages.0"),
    ],
)
def test_parse_body_turns_every_failure_into_a_400(parsing_client, body, code, param):
    response = parsing_client.post(
        "/parse", content=body, headers={"content-type": "application/json"}
    )
    error = error_of(response, 400)
    assert (error["code"], error["param"]) == (code, param)
    assert "NoneType" not in error["message"]


def test_parse_body_returns_the_model(parsing_client):
    assert parsing_client.post("/parse", json={"messages": ["a"]}).json() == {"messages": ["a"]}
