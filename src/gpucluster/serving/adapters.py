"""LoRA adapters from local directories, for Ray Serve LLM's multiplexing.

Ray Serve LLM loads an adapter (`model: <base>:<adapter>`) through a loader that fetches it from
cloud storage (`lora_config.dynamic_lora_loading_path` must be s3://, gs://, ...). The platform's
adapters are local directories instead: the configured ones (`lora.adapters`, prepared like
models) and the subdirectories of `lora.dynamic_dir`. Both the ingress (which lists and checks
adapter ids) and the LLM replicas (which load them into vLLM) read the same table, carried in
the model's LLMConfig.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpucluster.config import ModelConfig
from gpucluster.config.schema import ADAPTER_NAME_PATTERN
from gpucluster.models.adapters import ADAPTER_CONFIG
from gpucluster.serving.ray_internals import DiskMultiplexConfig, global_id_manager

# Where the table lives in LLMConfig.experimental_configs.
ADAPTERS_KEY = "gpucluster_lora_adapters"


def adapter_table(model: ModelConfig, weights: dict[str, str]) -> dict[str, Any]:
    """The model's adapters: the static ones by name (their prepared directories, from
    `weights` keyed `<id>:<name>`) and the dynamic directory."""
    lora = model.lora
    assert lora is not None
    return {
        "static": {name: weights[f"{model.id}:{name}"] for name in lora.adapters},
        "dynamic_dir": str(lora.dynamic_dir) if lora.dynamic_dir is not None else None,
    }


def available(table: dict[str, Any]) -> dict[str, str]:
    """Adapter name -> directory: the static adapters, then every subdirectory of the dynamic
    directory that holds an adapter_config.json (read now: an adapter dropped in is found)."""
    found = dict(table.get("static", {}))
    dynamic = table.get("dynamic_dir")
    if dynamic:
        try:
            entries = sorted(Path(dynamic).iterdir())
        except OSError:
            entries = []
        for entry in entries:
            if (
                entry.name not in found
                and ADAPTER_NAME_PATTERN.match(entry.name)
                and (entry / ADAPTER_CONFIG).is_file()
            ):
                found[entry.name] = str(entry)
    return found


def adapter_name(model_id: str) -> str:
    """`<base>:<adapter>` -> `<adapter>` (Ray Serve LLM's convention: after the first ':')."""
    return model_id.split(":", 1)[1] if ":" in model_id else ""


class LocalAdapterLoader:
    """Ray Serve LLM's adapter loader interface (LoraModelLoader), reading local directories."""

    def __init__(self, download_timeout_s: float | None = None, max_tries: int = 1) -> None:
        self._loaded: dict[str, DiskMultiplexConfig] = {}

    async def load_model_from_config(self, lora_model_id: str, llm_config) -> DiskMultiplexConfig:
        if lora_model_id in self._loaded:
            return self._loaded[lora_model_id]
        table = llm_config.experimental_configs.get(ADAPTERS_KEY, {})
        name = adapter_name(lora_model_id)
        path = available(table).get(name)
        if path is None:
            raise ValueError(f"no LoRA adapter {name!r} for model {llm_config.model_id!r}")
        loaded = DiskMultiplexConfig(
            model_id=lora_model_id,
            max_total_tokens=None,
            local_path=path,
            lora_assigned_int_id=global_id_manager.next(),
        )
        self._loaded[lora_model_id] = loaded
        return loaded
