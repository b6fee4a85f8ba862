"""One error shape for every failure the API can return.

Whatever raises (FastAPI's validation, Starlette's routing, Ray Serve LLM, the engine, our own
checks), the client receives ``{"error": {"message", "type", "param", "code"}}`` with a fitting
HTTP status. Server-side failures say what failed and carry the request id, never a Python repr.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

logger = logging.getLogger("gpucluster.api")

REQUEST_ID_HEADER = "x-request-id"

# HTTP status -> OpenAI error type
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """An error meant for the client, in the OpenAI shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type or error_type_for(status)
        self.headers = headers or {}


def error_type_for(status: int) -> str:
    """The OpenAI error `type` that goes with an HTTP status."""
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(error: ApiError) -> JSONResponse:
    """A JSON response carrying `error` in the OpenAI shape."""
    return JSONResponse(
        status_code=error.status,
        content=error_body(error.message, error.error_type, error.param, error.code),
        headers=error.headers,
    )


def request_id_of(request: Request) -> str:
    """The id Serve's proxy gave the request (it also returns it in the response headers)."""
    return request.headers.get(REQUEST_ID_HEADER, "-")


def validation_error(exc: RequestValidationError) -> ApiError:
    """A 400 naming the first offending parameter of a request that failed validation."""
    errors = exc.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": (), "type": ""}
    if first.get("type") == "json_invalid":
        return ApiError(400, "The request body is not valid JSON.", code="invalid_json")
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(p for p in loc if not _is_union_tag(p)) or None
    if param is None and first.get("type") in ("missing", "model_attributes_type", "dict_type"):
        return ApiError(400, "The request body must be a JSON object.", code="invalid_body")
    message = f"Invalid value for '{param}': {first.get('msg')}." if param else first.get("msg")
    return ApiError(400, str(message), param=param, code="invalid_parameter")


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none", "null"}


def _is_union_tag(part: str) -> bool:
    """pydantic puts the union member tried into error paths ("str", "ChatMessage", "list[int]")."""
    return part[:1].isupper() or part.lower() in _TYPE_NAMES or any(c in part for c in "[(-")


def _http_error(exc: StarletteHTTPException) -> ApiError:
    if exc.status_code == 404:
        return ApiError(404, "Unknown path. See /v1/models for the API.", code="not_found")
    if exc.status_code == 405:
        return ApiError(405, "Method not allowed on this path.", code="method_not_allowed")
    return ApiError(exc.status_code, str(exc.detail))


# vLLM appends "(parameter=NAME, value=...)" to the messages of its client errors.
_PARAM_SUFFIX = re.compile(r"\s*\(parameter=([A-Za-z_][\w.]*)(?:, value=.*)?\)\s*$", re.DOTALL)


def _status_of(exc: Exception) -> int:
    """Status carried by exceptions from Ray Serve LLM (OpenAIHTTPException) and the like."""
    if any(cls.__name__ == "VLLMClientError" for cls in type(exc).__mro__):
        return 400  # vLLM's request errors, raised while its request models validate
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and 400 <= status <= 599 else 500


def client_error(status: int, text: str, path: str, param: str | None = None) -> ApiError:
    """A client error from the engine, its parameter named in `param` as OpenAI does."""
    match = _PARAM_SUFFIX.search(text)
    if match:
        param, text = match.group(1), text[: match.start()]
    if param == "input_tokens":  # the engine's name for what the client sent as the prompt
        param = "messages" if path.endswith("/chat/completions") else "prompt"
    return ApiError(status, text.strip(), param=param, code="invalid_parameter" if param else None)


def overloaded(model_id: str, exc: Any) -> ApiError:
    """A full model (Ray Serve's BackPressureError): 429 with Retry-After, nothing was started."""
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else {}
    wait = f" Retry after {math.ceil(retry_after)} s." if retry_after else ""
    return ApiError(
        getattr(exc, "status_code", 429),
        f"The model '{model_id}' is at capacity: every replica is busy and the queue is full.{wait}",
        code="model_at_capacity",
        headers=headers,
    )


def unexpected_error(exc: Exception, request_id: str, path: str = "") -> ApiError:
    """Map an exception nobody handled: a client error keeps its status, the rest is a 500."""
    status = _status_of(exc)
    if status < 500:
        message = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
        error = client_error(status, str(message), path)
        parameter = getattr(exc, "parameter", None)
        if error.param is None and isinstance(parameter, str):
            error.param, error.code = parameter, "invalid_parameter"
        return error
    return server_failure(status, request_id, f"{type(exc).__name__}: {exc}")


def server_failure(status: int, request_id: str, cause: str) -> ApiError:
    """A 5xx for the client that says what failed and carries the request id; `cause`, which
    may hold internals, goes to the log only."""
    logger.error("request %s failed: %s", request_id, cause)
    return ApiError(
        status,
        f"The server failed to process the request (request id {request_id}).",
        code="internal_error",
    )


def engine_error_body(status: int, payload: bytes, path: str, request_id: str) -> dict[str, Any]:
    """The platform's error object for an error vLLM's own app answered with (see
    engine_error)."""
    error = engine_error(status, payload, path, request_id)
    return error_body(error.message, error.error_type, error.param, error.code)


def engine_error(status: int, payload: bytes, path: str, request_id: str) -> ApiError:
    """The platform's error for one vLLM's own app answered with (`payload`, its
    `{"error": {...}}` JSON, as a response or an SSE event; `status` unless it names its own):
    vLLM's type names and numeric codes become the OpenAI API's, a server failure says only
    what failed."""
    try:
        raw = json.loads(payload)["error"]
        text, param = str(raw["message"]), raw.get("param")
        status = int(raw.get("code") or status)
    except (ValueError, KeyError, TypeError):
        text, param = payload.decode("utf-8", "replace")[:500], None
    if status < 500:
        return client_error(status, text, path, param if isinstance(param, str) else None)
    return server_failure(status, request_id, f"in the engine: {text[:500]}")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error `app` can produce an OpenAI error object."""

    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(_http_error(exc))

    async def on_other(request: Request, exc: Exception) -> JSONResponse:
        return error_response(unexpected_error(exc, request_id_of(request), request.url.path))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_other)
