"""Configuration: schema and loading."""

from gpucluster.config.loader import ConfigError, env_api_keys, load_config
from gpucluster.config.schema import (
    BUILTIN_EMBEDDING_MODEL_ID,
    BUILTIN_EMBEDDING_SOURCE,
    BUILTIN_MODEL_ID,
    BUILTIN_MODELS,
    BUILTIN_PREFIX,
    BUILTIN_SOURCE,
    Config,
    ModelConfig,
    PlatformConfig,
    PortsConfig,
)

__all__ = [
    "BUILTIN_EMBEDDING_MODEL_ID",
    "BUILTIN_EMBEDDING_SOURCE",
    "BUILTIN_MODELS",
    "BUILTIN_MODEL_ID",
    "BUILTIN_PREFIX",
    "BUILTIN_SOURCE",
    "Config",
    "ConfigError",
    "ModelConfig",
    "PlatformConfig",
    "PortsConfig",
    "env_api_keys",
    "load_config",
]
