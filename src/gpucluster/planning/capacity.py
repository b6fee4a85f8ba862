"""Capacity planning from first principles: memory, KV cache, decode bandwidth, replicas.

`plan` puts the pieces together: a model's shape (resolved below: a config.json, the built-in
model, the table in `gpucluster.planning.hardware`), an accelerator, and one `PlanInputs`
(planning.inputs, checked there as vLLM would); the formulas are planning.arithmetic's, the
reasons and notes planning.advice's. docs/capacity-planning.md derives every formula.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gpucluster.config import BUILTIN_MODEL_ID, ModelConfig
from gpucluster.models import (
    BUILTIN_MODELS,
    ModelSourceError,
    read_model_info,
    weights_location,
)
from gpucluster.models.cache import hub_entry_dir, read_stamp
from gpucluster.planning.advice import fit_reason, not_fit_advice, plan_notes
from gpucluster.planning.arithmetic import (
    LoadPlan,
    blocks_per_sequence,
    decode_bound,
    estimate_params,
    kv_bytes_per_token,
    kv_heads_per_gpu,
    load_plan,
    max_num_seqs,
    memory_budget,
)
from gpucluster.planning.hardware import Gpu, ModelShape, find_table_model, model_names
from gpucluster.planning.inputs import (
    DTYPE_BYTES,
    TP_CHOICES,
    CapacityInputError,
    PlanInputs,
    PlanSettings,
    settings_for,
    tp_problem,
)

# Where `capacity` looks Hugging Face ids up (the hub client's cache; never downloads).
HF_CACHE = Path("~/.cache/huggingface/hub")


@dataclass(frozen=True)
class TpOption:
    """The same plan at another tensor-parallel size."""

    tp: int
    valid: bool
    fits: bool
    weight_bytes_per_gpu: int
    kv_cache_bytes_per_gpu: int
    kv_token_capacity: int
    max_sequences_at_max_model_len: int
    decode_tokens_per_s: float | None
    reason: str


@dataclass(frozen=True)
class CapacityPlan:
    """Everything `plan` derives; bytes are per GPU unless the name says otherwise."""

    model: ModelShape
    gpu: Gpu
    tp: int
    max_model_len: int
    gpu_memory_utilization: float | None  # None on cpu: the KV space is given directly
    weight_dtype: str
    kv_cache_dtype: str
    block_size: int
    max_num_seqs: int
    memory_bytes_per_gpu: int | None
    usable_bytes_per_gpu: int  # memory x utilization (cpu: the KV space)
    weight_bytes_per_gpu: int
    overhead_bytes_per_gpu: int
    kv_heads_per_gpu: int
    kv_replicated: bool
    kv_bytes_per_token: int  # the whole model's KV per token (tp 1)
    kv_bytes_per_token_per_gpu: int
    kv_cache_bytes_per_gpu: int
    kv_blocks: int
    kv_token_capacity: int  # kv_blocks x block_size: tokens the KV cache holds
    vllm_reported_kv_tokens: int  # what vLLM logs as "GPU KV cache size: N tokens"
    max_concurrency: float  # vLLM's "Maximum concurrency for max_model_len tokens per request"
    max_sequences_at_max_model_len: int
    bandwidth_bytes_per_s: float | None  # per GPU
    flops_per_s: float | None  # per GPU, peak dense bf16
    decode_batch: int
    decode_context_tokens: int
    decode_tokens_per_s: float | None  # one replica at decode_batch: an upper bound
    decode_tokens_per_s_single: float | None  # one sequence alone
    decode_limit: str | None  # "memory_bandwidth" or "compute" at decode_batch
    fits: bool
    reason: str
    smallest_tp: int | None  # smallest of 1, 2, 4, 8 that fits (None: none does)
    tp_options: tuple[TpOption, ...]
    load: LoadPlan | None
    notes: tuple[str, ...]


def plan(model: ModelShape, gpu: Gpu, inputs: PlanInputs | None = None) -> CapacityPlan:
    """Plan serving `model` on `gpu` as `inputs` ask (default: tp 1, the model's context, vLLM's
    defaults); CapacityInputError on inputs vLLM would reject. On `cpu` the KV cache is
    `kv_cache_gib` (default 1) and weights are not charged against it."""
    inputs = inputs or PlanInputs()
    settings = settings_for(model, gpu, inputs)
    tp = inputs.tp
    memory = memory_budget(model, gpu, tp, settings)
    decode = decode_bound(model, gpu, tp, settings, memory, inputs.load)
    options = tuple(_tp_option(model, gpu, size, settings) for size in sorted({*TP_CHOICES, tp}))
    smallest = next((o.tp for o in options if o.tp in TP_CHOICES and o.fits), None)
    concurrency = memory.kv_blocks / blocks_per_sequence(settings.max_model_len,
                                                         settings.block_size)  # fmt: skip
    reason = fit_reason(gpu, settings, memory)
    if not memory.fits:
        reason = not_fit_advice(reason, gpu, tp, smallest, settings, memory)
    load = inputs.load
    return CapacityPlan(
        model=model, gpu=gpu, tp=tp, max_model_len=settings.max_model_len,
        gpu_memory_utilization=None if gpu.is_cpu else settings.gpu_memory_utilization,
        weight_dtype=settings.weight_dtype, kv_cache_dtype=settings.kv_cache_dtype,
        block_size=settings.block_size, max_num_seqs=max_num_seqs(gpu, tp, settings),
        memory_bytes_per_gpu=settings.memory_bytes, usable_bytes_per_gpu=memory.usable_bytes,
        weight_bytes_per_gpu=memory.weight_bytes, overhead_bytes_per_gpu=memory.overhead_bytes,
        kv_heads_per_gpu=kv_heads_per_gpu(model.num_kv_heads, tp),
        kv_replicated=tp > model.num_kv_heads,
        kv_bytes_per_token=kv_bytes_per_token(model, DTYPE_BYTES[settings.kv_cache_dtype]),
        kv_bytes_per_token_per_gpu=memory.kv_bytes_per_token,
        kv_cache_bytes_per_gpu=memory.kv_cache_bytes, kv_blocks=memory.kv_blocks,
        kv_token_capacity=memory.kv_token_capacity,
        vllm_reported_kv_tokens=int(concurrency * settings.max_model_len),
        max_concurrency=concurrency,
        max_sequences_at_max_model_len=memory.sequences_at_max_model_len,
        bandwidth_bytes_per_s=settings.bandwidth_bytes_per_s, flops_per_s=settings.flops_per_s,
        decode_batch=decode.batch, decode_context_tokens=decode.context_tokens,
        decode_tokens_per_s=decode.tokens_per_s,
        decode_tokens_per_s_single=decode.tokens_per_s_single, decode_limit=decode.limit,
        fits=memory.fits, reason=reason, smallest_tp=smallest, tp_options=options,
        load=load_plan(load, model, gpu, tp, settings, memory, decode) if load else None,
        notes=plan_notes(model, gpu, inputs, settings),
    )  # fmt: skip


def _tp_option(model: ModelShape, gpu: Gpu, tp: int, settings: PlanSettings) -> TpOption:
    """The plan's memory and decode bound at tensor-parallel size `tp`."""
    problem = tp_problem(model, tp)
    if problem:
        return TpOption(
            tp=tp, valid=False, fits=False, weight_bytes_per_gpu=0, kv_cache_bytes_per_gpu=0,
            kv_token_capacity=0, max_sequences_at_max_model_len=0, decode_tokens_per_s=None,
            reason=problem,
        )  # fmt: skip
    memory = memory_budget(model, gpu, tp, settings)
    decode = decode_bound(model, gpu, tp, settings, memory, None)
    return TpOption(
        tp=tp, valid=True, fits=memory.fits, weight_bytes_per_gpu=memory.weight_bytes,
        kv_cache_bytes_per_gpu=memory.kv_cache_bytes, kv_token_capacity=memory.kv_token_capacity,
        max_sequences_at_max_model_len=memory.sequences_at_max_model_len,
        decode_tokens_per_s=decode.tokens_per_s, reason=fit_reason(gpu, settings, memory),
    )  # fmt: skip


# --- model resolution ------------------------------------------------------------------------


def shape_from_config(path: str | Path, name: str, params: int | None = None) -> ModelShape:
    """A ModelShape from a model directory or config.json (via `read_model_info`)."""
    try:
        info = read_model_info(path)
    except ModelSourceError as exc:
        raise CapacityInputError(str(exc)) from None
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    extra = _extra_config(file)
    required = ("num_hidden_layers", "hidden_size", "num_attention_heads", "head_dim",
                "max_position_embeddings")  # fmt: skip
    missing = [key for key in required if not isinstance(info.get(key), int)]
    if missing:
        raise CapacityInputError(f"model config {file} lacks {', '.join(missing)}")
    shape = ModelShape(
        name=name,
        num_layers=info["num_hidden_layers"],
        hidden_size=info["hidden_size"],
        num_attention_heads=info["num_attention_heads"],
        num_kv_heads=info["num_key_value_heads"],
        head_dim=info["head_dim"],
        vocab_size=extra.get("vocab_size"),
        intermediate_size=extra.get("intermediate_size"),
        params=0,
        max_position_embeddings=info["max_position_embeddings"],
        dtype=info["dtype"] or "bfloat16",
        source=str(file),
        tie_word_embeddings=bool(extra.get("tie_word_embeddings", False)),
        qkv_bias=info.get("model_type") == "qwen2" or bool(extra.get("attention_bias")),
    )
    if params is not None:
        return replace(shape, params=params)
    return replace(shape, params=estimate_params(shape), params_estimated=True)


def _extra_config(file: Path) -> dict[str, Any]:
    """The keys read_model_info does not return (it has already validated the file)."""
    config = json.loads(file.read_text(encoding="utf-8"))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    keys = ("vocab_size", "intermediate_size", "tie_word_embeddings", "attention_bias")
    return {key: config.get(key, text.get(key)) for key in keys}


def hf_cached_config(repo_id: str, hf_cache_dir: Path) -> Path | None:
    """config.json of `repo_id` in a Hugging Face hub cache (the snapshot refs/main names)."""
    repo = Path(hf_cache_dir).expanduser() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        candidate = repo / "snapshots" / ref.read_text(encoding="utf-8").strip() / "config.json"
        if candidate.is_file():
            return candidate
    snapshots = sorted(
        (repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    return snapshots[0] if snapshots else None


def pulled_config(repo_id: str, model_cache_dir: Path) -> Path | None:
    """config.json of `repo_id` pulled into the platform's model cache (`gpucluster pull`):
    its main revision if complete, else the most recently pulled one."""
    repo = hub_entry_dir(Path(model_cache_dir).expanduser(), repo_id, None).parent
    complete = [d for d in repo.glob("*") if read_stamp(d) and (d / "config.json").is_file()]
    complete.sort(key=lambda d: (d.name == "main", str(read_stamp(d).get("pulled_at"))))
    return complete[-1] / "config.json" if complete else None


def resolve_model(
    name: str, *, model_cache_dir: Path, hf_cache_dir: Path, params: int | None = None
) -> ModelShape:
    """The shape of `name`: a local dir or config.json, the built-in model, a Hugging Face id in
    the model cache or the local hub cache (never downloaded), or a model of the built-in
    table, in that order."""
    text = name.strip()
    path = Path(text).expanduser()
    if path.exists():
        return shape_from_config(path, text, params)
    builtin = text.removeprefix("builtin:")
    if builtin in BUILTIN_MODELS:
        prepared = Path(model_cache_dir).expanduser() / builtin
        if (prepared / "config.json").is_file():
            return shape_from_config(prepared, builtin, params)
        if builtin != BUILTIN_MODEL_ID:  # only the default model is in the table
            raise CapacityInputError(
                f"built-in model {builtin} is not prepared in the model cache "
                f"{model_cache_dir}: `gpucluster pull builtin:{builtin}` prepares it"
            )
        table = find_table_model("SmolLM2-135M-Instruct")
        assert table is not None
        return _with_params(replace(table, name=BUILTIN_MODEL_ID), params)
    if text.count("/") == 1 and not text.startswith(("/", ".", "~")):
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


def _with_params(model: ModelShape, params: int | None) -> ModelShape:
    return model if params is None else replace(model, params=params)


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


