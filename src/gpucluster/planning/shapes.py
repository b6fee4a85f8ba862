"""Which model is planned, and its shape: from a config.json on this host, never downloaded.

A name is tried as a local model directory or config.json, the built-in model
(`builtin:<name>` or `<name>`), a Hugging Face id (as `gpucluster.models.resolve_source`
classifies sources) pulled into the model cache or found in the local hub cache, then the table
in `gpucluster.planning.hardware`. A config.json is read by `gpucluster.models.read_model_info`
(attention shape, context, dtype); the parameter count (planning.arithmetic.estimate_params)
needs the vocabulary and MLP widths besides, and a mixture of experts its experts, read from
the same, already checked, file.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpucluster.config import BUILTIN_MODEL_ID, BUILTIN_MODELS, BUILTIN_PREFIX, ModelConfig
from gpucluster.models import ModelSourceError, read_model_info, resolve_source, weights_location
from gpucluster.models.builtin import BUILTINS
from gpucluster.models.cache import hub_entry_dir, read_stamp
from gpucluster.planning.arithmetic import estimate_params
from gpucluster.planning.hardware import Experts, ModelShape, find_table_model, model_names
from gpucluster.planning.inputs import CapacityInputError

# Where `capacity` looks Hugging Face ids up (the hub client's cache; never downloads).
HF_CACHE = Path("~/.cache/huggingface/hub")
# config.json keys the parameter count needs that read_model_info does not return; the
# mixture-of-experts ones as Mixtral (num_local_experts), Qwen2-MoE and Qwen3-MoE name them.
_PARAMETER_KEYS = ("vocab_size", "intermediate_size", "tie_word_embeddings", "attention_bias",
                   "qkv_bias", "num_local_experts", "num_experts", "num_experts_per_tok",
                   "moe_intermediate_size", "shared_expert_intermediate_size",
                   "decoder_sparse_step", "mlp_only_layers")  # fmt: skip
# Model types whose attention has q/k/v biases without saying so in config.json.
_QKV_BIAS_TYPES = ("qwen2", "qwen2_moe")
_REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "head_dim",
             "max_position_embeddings")  # fmt: skip


def resolve_model(
    name: str, *, model_cache_dir: Path, hf_cache_dir: Path, params: int | None = None
) -> ModelShape:
    """The shape of `name`: a local dir or config.json, the built-in model, a Hugging Face id in
    the model cache or the local hub cache (never downloaded), or a model of the built-in
    table, in that order. `params` replaces the parameter count."""
    text = name.strip()
    path = Path(text).expanduser()
    if path.exists():  # a model directory, or a config.json (which no model source names)
        return shape_from_config(path, text, params)
    builtin = text.removeprefix(BUILTIN_PREFIX)
    if builtin in BUILTIN_MODELS:
        return _builtin_shape(builtin, Path(model_cache_dir), params)
    if _is_hub_id(text):
        cached = pulled_config(text, model_cache_dir) or hf_cached_config(text, hf_cache_dir)
        if cached is not None:
            return shape_from_config(cached, text, params)
    table = find_table_model(text)
    if table is not None:
        return _with_params(table, params)
    raise CapacityInputError(
        f"unknown model {name!r}: not a local directory or config.json, not pulled into the "
        f"model cache {model_cache_dir} (`gpucluster pull`), not in the Hugging Face cache "
        f"{hf_cache_dir}, not built in; known: {', '.join(BUILTIN_MODELS)}, "
        f"{', '.join(model_names())}"
    )


def configured_shape(
    model: ModelConfig, *, model_cache_dir: Path, hf_cache_dir: Path
) -> ModelShape:
    """The shape of a configured model: from its prepared weights (at its `revision`) when they
    are in the model cache, else as `resolve_model` resolves its source. CapacityInputError when
    neither knows it; ModelError for a source the model cache cannot name."""
    prepared = Path(weights_location(model.source, model_cache_dir, revision=model.revision))
    if (prepared / "config.json").is_file():
        return shape_from_config(prepared, model.id)
    return resolve_model(model.source, model_cache_dir=model_cache_dir, hf_cache_dir=hf_cache_dir)


def shape_from_config(path: str | Path, name: str, params: int | None = None) -> ModelShape:
    """A ModelShape from a model directory or config.json (via `read_model_info`); its
    parameter count `params`, else counted from the shape."""
    try:
        info = read_model_info(path)
    except ModelSourceError as exc:
        raise CapacityInputError(str(exc)) from None
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    missing = [key for key in _REQUIRED if not isinstance(info.get(key), int)]
    if missing:
        raise CapacityInputError(f"model config {file} lacks {', '.join(missing)}")
    config = _text_config(file)
    shape = ModelShape(
        name=name,
        num_layers=info["num_hidden_layers"],
        hidden_size=info["hidden_size"],
        num_attention_heads=info["num_attention_heads"],
        num_kv_heads=info["num_key_value_heads"],
        head_dim=info["head_dim"],
        vocab_size=config.get("vocab_size"),
        intermediate_size=config.get("intermediate_size"),
        params=0,
        max_position_embeddings=info["max_position_embeddings"],
        dtype=info["dtype"] or "bfloat16",
        source=str(file),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        qkv_bias=info.get("model_type") in _QKV_BIAS_TYPES
        or bool(config.get("attention_bias") or config.get("qkv_bias")),
        experts=_experts(config, info["num_hidden_layers"]),
    )
    if params is not None:
        return replace(shape, params=params)
    return replace(shape, params=estimate_params(shape), params_estimated=True)


def _text_config(file: Path) -> dict[str, Any]:
    """The parameter-count keys of a config.json read_model_info has already checked: the
    top level's, else its `text_config`'s (multimodal models), as read_model_info reads them."""
    config = json.loads(file.read_text(encoding="utf-8"))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return {key: config.get(key, text.get(key)) for key in _PARAMETER_KEYS}


def _experts(config: dict[str, Any], num_layers: int) -> Experts | None:
    """The mixture-of-experts MLP a config.json describes, or None for a dense one. Qwen-MoE
    configs may keep some layers dense (`mlp_only_layers`, `decoder_sparse_step`)."""
    count = config.get("num_local_experts") or config.get("num_experts")
    width = config.get("moe_intermediate_size") or config.get("intermediate_size")
    if not isinstance(count, int) or count < 2 or not isinstance(width, int):
        return None
    per_token = config.get("num_experts_per_tok")
    step = config.get("decoder_sparse_step") or 1
    dense = set(config.get("mlp_only_layers") or ())
    moe_layers = sum(1 for layer in range(num_layers)
                     if layer not in dense and (layer + 1) % step == 0)  # fmt: skip
    if moe_layers == 0:
        return None
    return Experts(
        count=count,
        per_token=per_token if isinstance(per_token, int) else count,  # unknown: all of them
        intermediate_size=width,
        moe_layers=moe_layers,
        shared_intermediate_size=config.get("shared_expert_intermediate_size") or 0,
    )


def hf_cached_config(repo_id: str, hf_cache_dir: Path) -> Path | None:
    """config.json of `repo_id` in a Hugging Face hub cache (the snapshot refs/main names)."""
    repo = Path(hf_cache_dir).expanduser() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        candidate = repo / "snapshots" / ref.read_text(encoding="utf-8").strip() / "config.json"
        if candidate.is_file():
            return candidate
    snapshots = sorted((repo / "snapshots").glob("*/config.json"),
                       key=lambda config: config.stat().st_mtime, reverse=True)  # fmt: skip
    return snapshots[0] if snapshots else None


def pulled_config(repo_id: str, model_cache_dir: Path) -> Path | None:
    """config.json of `repo_id` pulled into the platform's model cache (`gpucluster pull`):
    its main revision if complete, else the most recently pulled one."""
    repo = hub_entry_dir(Path(model_cache_dir).expanduser(), repo_id, None).parent
    complete = [revision for revision in repo.glob("*")
                if read_stamp(revision) and (revision / "config.json").is_file()]  # fmt: skip
    complete.sort(key=lambda revision: (revision.name == "main",
                                        str(read_stamp(revision).get("pulled_at"))))  # fmt: skip
    return complete[-1] / "config.json" if complete else None


def _is_hub_id(text: str) -> bool:
    """Whether `text` names a model on the Hugging Face hub (`org/name`)."""
    try:
        return resolve_source(text).kind == "hf"
    except ModelSourceError:
        return False


def _builtin_shape(name: str, model_cache_dir: Path, params: int | None) -> ModelShape:
    """A built-in model's shape: its prepared directory, else (the default model only) the
    table's entry for its upstream release."""
    prepared = model_cache_dir.expanduser() / name
    if (prepared / "config.json").is_file():
        return shape_from_config(prepared, name, params)
    if name != BUILTIN_MODEL_ID:  # only the default model is in the table
        raise CapacityInputError(
            f"built-in model {name} is not prepared in the model cache {model_cache_dir}: "
            f"`gpucluster pull {BUILTIN_PREFIX}{name}` prepares it"
        )
    table = find_table_model(BUILTINS[BUILTIN_MODEL_ID].upstream)
    if table is None:  # tests/unit/planning/test_hardware_table.py keeps the two in step
        raise CapacityInputError(f"built-in model {name} is not in the capacity table")
    return _with_params(replace(table, name=BUILTIN_MODEL_ID), params)


def _with_params(model: ModelShape, params: int | None) -> ModelShape:
    return model if params is None else replace(model, params=params)
