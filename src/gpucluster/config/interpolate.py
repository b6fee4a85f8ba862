"""`${NAME}` references to the environment inside a config file (compose's syntax).

A deployment's config file can leave a setting to its environment, the way the compose
deployment takes the model id and sizes from its `.env`:

    models:
      - id: "${MODEL_ID:?set MODEL_ID in .env}"
        tensor_parallel_size: "${TENSOR_PARALLEL_SIZE:-1}"

`${NAME}` is the variable (an error when unset), `${NAME:-default}` falls back when it is unset
or empty, `${NAME:?message}` is an error with that message when it is unset or empty, and `$$`
is a literal `$`. A value that is exactly one reference takes the type its text has in YAML
(`4` is a number, `null` is null); within longer text the value is inserted as text. Values
are never parsed as YAML structure, so a variable cannot add keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from gpucluster.errors import InputError

_REFERENCE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\})"
)


class InterpolationError(InputError, ValueError):
    """A reference that cannot be resolved; `key` is the dotted config key holding it."""

    next_step = "export the variable, or give it a default in the file: ${NAME:-default}"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def interpolate(data: Any, env: Mapping[str, str], key: str = "") -> Any:
    """`data` (parsed YAML) with every `${...}` in its string values resolved from `env`."""
    if isinstance(data, dict):
        return {k: interpolate(v, env, _join(key, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, _join(key, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        return _resolve_string(data, env, key)
    return data


def _join(prefix: str, part: object) -> str:
    return f"{prefix}.{part}" if prefix else str(part)


def _resolve_string(text: str, env: Mapping[str, str], key: str) -> Any:
    whole = _REFERENCE.fullmatch(text)
    if whole is not None and whole.group("name"):
        return _typed(_value(whole, env, key))
    return _REFERENCE.sub(lambda match: _value(match, env, key), text)


def _value(match: re.Match[str], env: Mapping[str, str], key: str) -> str:
    name = match.group("name")
    if name is None:  # `$$`
        return "$"
    value = env.get(name)
    op, arg = match.group("op"), match.group("arg")
    if op == ":-":
        return value if value else arg
    if op == ":?" and not value:
        raise InterpolationError(
            key, f"environment variable {name} is not set: {arg or 'required'}"
        )
    if value is None:
        raise InterpolationError(key, f"environment variable {name} is not set")
    return value


def _typed(value: str) -> Any:
    """A whole-value reference reads as a YAML scalar (empty: null); structures stay text."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return value if isinstance(parsed, (dict, list)) else parsed
