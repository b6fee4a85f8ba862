"""Request checks done in the ingress before a request reaches an engine.

vLLM accepts some requests that the OpenAI API refuses (unknown roles, an empty prompt) and
answers others only once the engine has them; these checks give each a 400 naming the
parameter, before the first byte, with the OpenAI API's ranges.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gpucluster.serving.errors import ApiError
from gpucluster.serving.json_body import load_json

Model = TypeVar("Model", bound=BaseModel)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_CHOICES = 8
MAX_LOGPROBS = 20

# parameter -> (low, high, low inclusive)
_RANGES: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, 2.0, True),
    "top_p": (0.0, 1.0, False),
    "presence_penalty": (-2.0, 2.0, True),
    "frequency_penalty": (-2.0, 2.0, True),
    "n": (1, MAX_CHOICES, True),
    "top_logprobs": (0, MAX_LOGPROBS, True),
}


async def parse_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON body as `model`; every way it can be wrong is a 400.

    Done here rather than by FastAPI because vLLM's request models run validators that raise
    TypeError on some malformed bodies (`"messages": null`), which FastAPI would turn into 500s.
    """
    data = load_json(await request.body())
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
    except (TypeError, ValueError, AttributeError, KeyError):
        raise ApiError(
            400,
            "The request body does not have the fields of this endpoint's request, with their "
            "types (see the OpenAI API reference).",
            code="invalid_body",
        ) from None


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_parameter")


def _sent(body: Any, param: str) -> Any:
    """The value the client sent for `param` (None when absent).

    A pydantic request is read through its field values, not the attribute: vLLM marks some
    fields it still accepts deprecated (chat's `max_tokens`), and reading those attributes
    warns on every request.
    """
    if isinstance(body, BaseModel):
        return body.__dict__.get(param)
    return getattr(body, param, None)


def _check_ranges(body: Any) -> None:
    for param, (low, high, low_inclusive) in _RANGES.items():
        value = _sent(body, param)
        if value is None:
            continue
        below = value < low if low_inclusive else value <= low
        if below or value > high:
            opener = "[" if low_inclusive else "("
            raise _invalid(
                param,
                f"Invalid value for '{param}': {value}. It must lie in {opener}{low}, {high}].",
            )


def _check_max_tokens(body: Any, context_len: int | None) -> None:
    for param in ("max_tokens", "max_completion_tokens"):
        value = _sent(body, param)
        if value is None:
            continue
        if value < 1:
            raise _invalid(param, f"Invalid value for '{param}': {value}. It must be at least 1.")
        if context_len is not None and value > context_len:
            raise _invalid(
                param,
                f"Invalid value for '{param}': {value}. The model's context is {context_len} "
                "tokens, prompt included.",
            )


def check_chat(body: Any, context_len: int | None) -> None:
    """Refuse a chat completion request the OpenAI API would refuse."""
    if not body.messages:
        raise _invalid("messages", "'messages' must contain at least one message.")
    for index, message in enumerate(body.messages):
        role = message.get("role") if isinstance(message, dict) else getattr(message, "role", None)
        if role not in ROLES:
            raise _invalid(
                f"messages.{index}.role",
                f"Invalid value for 'messages[{index}].role': {str(role)[:40]!r}. "
                f"Supported roles: {', '.join(ROLES)}.",
            )
    _check_ranges(body)
    _check_max_tokens(body, context_len)


def _check_not_empty(param: str, value: Any) -> None:
    """A text, or list of texts (or of token ids), that must hold something."""
    if value is None or (isinstance(value, (str, list)) and len(value) == 0):
        raise _invalid(param, f"'{param}' must not be empty.")
    if isinstance(value, list) and any(isinstance(v, (str, list)) and len(v) == 0 for v in value):
        raise _invalid(param, f"'{param}' must not contain empty entries.")


# The inputs of each pooling request: the fields that must not be empty (chat-style embedding
# requests carry `messages` instead of `input`).
_POOLING_INPUTS = ("input", "messages", "text_1", "text_2", "query", "documents")


def check_pooling(body: Any) -> None:
    """Refuse an embeddings, score or rerank request without anything to embed."""
    for param in _POOLING_INPUTS:
        if param in type(body).model_fields:
            _check_not_empty(param, getattr(body, param))


def check_completion(body: Any, context_len: int | None) -> None:
    """Refuse a completion request the OpenAI API would refuse."""
    _check_not_empty("prompt", body.prompt)
    logprobs = getattr(body, "logprobs", None)
    if logprobs is not None and not 0 <= logprobs <= MAX_LOGPROBS:
        raise _invalid(
            "logprobs",
            f"Invalid value for 'logprobs': {logprobs}. It must lie in [0, {MAX_LOGPROBS}].",
        )
    _check_ranges(body)
    _check_max_tokens(body, context_len)
