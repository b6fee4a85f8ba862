"""The API's error contract, on a bare FastAPI app with the platform's handlers (no Ray)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gpucluster.serving.errors import ApiError
from gpucluster.serving.api_keys import ApiKeys
from gpucluster.serving.ingress import build_fastapi_app


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
