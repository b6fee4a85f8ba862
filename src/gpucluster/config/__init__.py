"""Configuration: schema and loading."""

from gpucluster.config.loader import ConfigError, load_config
from gpucluster.config.schema import (
    BUILTIN_MODEL_ID,
    BUILTIN_SOURCE,
    Config,
    ModelConfig,
    PlatformConfig,
    PortsConfig,
)

__all__ = [
    "BUILTIN_MODEL_ID",
    "BUILTIN_SOURCE",
    "Config",
    "ConfigError",
    "ModelConfig",
    "PlatformConfig",
    "PortsConfig",
    "load_config",
]
