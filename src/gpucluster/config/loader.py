"""Loading the configuration: YAML file plus environment overrides.

This is the only module that reads the process environment for settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpucluster.config.interpolate import InterpolationError, interpolate
from gpucluster.config.schema import Config, ModelConfig
from gpucluster.errors import InputError

CONFIG_ENV = "GPUCLUSTER_CONFIG"
API_KEYS_ENV = "GPUCLUSTER_API_KEYS"

# environment variable -> dotted key it overrides
ENV_OVERRIDES: dict[str, str] = {
    "NGINX_HTTP_PORT": "platform.ports.nginx_http",
    "RAY_DASHBOARD_PORT": "platform.ports.ray_dashboard",
    "GPUCLUSTER_STATE_DIR": "platform.state_dir",
    "GPUCLUSTER_MODEL_CACHE": "platform.model_cache_dir",
}


class ConfigError(InputError, ValueError):
    """A configuration that cannot be used; the message names the source, key and reason."""

    next_step = "fix what it names, then check with `gpucluster config check`"


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (or $GPUCLUSTER_CONFIG, or nothing: the defaults) and apply env overrides.

    `${NAME}` references in the file's values are resolved from `env` first (see interpolate).
    """
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    raw = _read_yaml(path) if path is not None else {}
    try:
        raw = interpolate(raw, env)
    except InterpolationError as exc:
        raise ConfigError(
            f"invalid configuration:\n  {path}: {exc.key}: {exc}", next_step=exc.next_step
        ) from None
    origins: dict[tuple[str, ...], str] = {}
    for var, dotted in ENV_OVERRIDES.items():
        if var in env:
            keys = tuple(dotted.split("."))
            _set_nested(raw, keys, env[var])
            origins[keys] = f"environment variable {var}"
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path) if path else "defaults", origins)) from None
    return _expand_paths(config)


def env_api_keys(env: Mapping[str, str] | None = None) -> list[str]:
    """API keys given in $GPUCLUSTER_API_KEYS (comma- or whitespace-separated)."""
    env = os.environ if env is None else env
    raw = env.get(API_KEYS_ENV, "")
    return [key for key in raw.replace(",", " ").split() if key]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _set_nested(raw: dict[str, Any], keys: tuple[str, ...], value: str) -> None:
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _describe(exc: ValidationError, source: str, origins: dict[tuple[str, ...], str]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc) or "(top level)"
        reason = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            reason = "unknown key"
        where = origins.get(loc, source)
        lines.append(f"{where}: {key}: {reason}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _expand_paths(config: Config) -> Config:
    security = config.platform.security
    files = {
        name: path.expanduser().absolute()
        for name in ("api_keys_file", "keys_file")
        if (path := getattr(security, name)) is not None
    }
    security = security.model_copy(update=files)
    platform = config.platform.model_copy(
        update={
            "state_dir": config.platform.state_dir.expanduser(),
            "model_cache_dir": config.platform.model_cache_dir.expanduser(),
            "security": security,
        }
    )
    models = [_expand_model_paths(model) for model in config.models]
    return config.model_copy(update={"platform": platform, "models": models})


def _expand_model_paths(model: ModelConfig) -> ModelConfig:
    update: dict[str, Any] = {}
    if model.chat_template is not None:
        update["chat_template"] = model.chat_template.expanduser().absolute()
    if model.lora is not None and model.lora.dynamic_dir is not None:
        dynamic = model.lora.dynamic_dir.expanduser().absolute()
        update["lora"] = model.lora.model_copy(update={"dynamic_dir": dynamic})
    return model.model_copy(update=update) if update else model
