"""Where a LoRA adapter of the config (`models[].lora.adapters`) comes from, and its directory.

An adapter is a local directory in peft's layout (adapter_config.json and the weights) or a
built-in adapter (`builtin:<name>`, made by models.adapters when the model is prepared).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gpucluster.config import ModelConfig
from gpucluster.models.sources import ModelSourceError

ADAPTER_CONFIG = "adapter_config.json"


def adapter_locations(model: ModelConfig, cache_dir: Path) -> dict[str, str]:
    """`<model id>:<adapter>` -> the adapter's directory once prepared, computed without
    preparing it (for deployment files rendered for another host)."""
    lora = model.lora
    if lora is None:
        return {}
    return {
        f"{model.id}:{name}": _location(source, Path(cache_dir)) for name, source in lora.adapters.items()
    }


def prepare_adapters(
    model: ModelConfig, base_dir: str, cache_dir: Path, progress: Callable[[str], None]
) -> dict[str, str]:
    """Make the model's adapters servable; `<model id>:<adapter>` -> directory."""
    prepared = {}
    for model_adapter, location in adapter_locations(model, cache_dir).items():
        directory = Path(location)
        if not (directory / ADAPTER_CONFIG).is_file():
            raise ModelSourceError(
                f"LoRA adapter {model_adapter}: {directory} has no {ADAPTER_CONFIG} (an adapter "
                "is a directory in peft's layout: adapter_config.json and the weights)"
            )
        progress(f"{model_adapter}: LoRA adapter in {directory}")
        prepared[model_adapter] = str(directory)
    return prepared


def _location(source: str, cache_dir: Path) -> str:
    return str(Path(source).expanduser().absolute())
