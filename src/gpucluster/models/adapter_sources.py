"""Where a LoRA adapter of the config (`models[].lora.adapters`) comes from, and its directory.

An adapter is a local directory in peft's layout (adapter_config.json and the weights) or a
built-in adapter (`builtin:<name>`, made by models.adapters when the model is prepared).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gpucluster.config import ModelConfig
from gpucluster.models.adapters import ADAPTER_CONFIG, ADAPTERS, adapter_dir, prepare_adapter
from gpucluster.models.sources import BUILTIN_PREFIX, ModelSourceError


def _builtin(source: str) -> str | None:
    """The built-in adapter a `builtin:<name>` source names (checked), else None."""
    if not source.startswith(BUILTIN_PREFIX):
        return None
    name = source[len(BUILTIN_PREFIX) :]
    if name not in ADAPTERS:
        raise ModelSourceError(
            f"unknown built-in LoRA adapter {name!r} (built-in adapters: {', '.join(ADAPTERS)})"
        )
    return name


def adapter_locations(model: ModelConfig, cache_dir: Path) -> dict[str, str]:
    """`<model id>:<adapter>` -> the adapter's directory once prepared, computed without
    preparing it (for deployment files rendered for another host)."""
    lora = model.lora
    if lora is None:
        return {}
    return {
        f"{model.id}:{name}": _location(source, Path(cache_dir))
        for name, source in lora.adapters.items()
    }


def prepare_adapters(
    model: ModelConfig, base_dir: str, cache_dir: Path, progress: Callable[[str], None]
) -> dict[str, str]:
    """Make the model's adapters servable; `<model id>:<adapter>` -> directory."""
    prepared = {}
    lora = model.lora
    for model_adapter, location in adapter_locations(model, cache_dir).items():
        name = _builtin(lora.adapters[model_adapter.split(":", 1)[1]]) if lora else None
        if name is not None:
            base = ADAPTERS[name].base
            if model.source != f"{BUILTIN_PREFIX}{base}":
                raise ModelSourceError(
                    f"LoRA adapter {model_adapter}: built-in adapter {name} is made for "
                    f"{BUILTIN_PREFIX}{base}, not for {model.source}"
                )
            prepare_adapter(name, Path(base_dir), Path(cache_dir), progress)
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
    name = _builtin(source)
    if name is not None:
        return str(adapter_dir(cache_dir, name))
    return str(Path(source).expanduser().absolute())
