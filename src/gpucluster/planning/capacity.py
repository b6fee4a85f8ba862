"""Capacity planning from first principles: memory, KV cache, decode bandwidth, replicas.

`plan` puts the pieces together: a model's shape (planning.shapes resolves it: a config.json,
the built-in model, the table in planning.hardware), an accelerator, and one `PlanInputs`
(planning.inputs, checked there as vLLM would); the formulas are planning.arithmetic's, the
reasons and notes planning.advice's. docs/capacity-planning.md derives every formula.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpucluster.planning.advice import fit_reason, not_fit_advice, plan_notes
from gpucluster.planning.arithmetic import (
    LoadPlan,
    blocks_per_sequence,
    decode_bound,
    kv_bytes_per_token,
    kv_heads_per_gpu,
    load_plan,
    max_num_seqs,
    memory_budget,
)
from gpucluster.planning.hardware import Gpu, ModelShape
from gpucluster.planning.inputs import (
    DTYPE_BYTES,
    TP_CHOICES,
    PlanInputs,
    PlanSettings,
    settings_for,
    tp_problem,
)


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
    smallest = next((option.tp for option in options
                     if option.tp in TP_CHOICES and option.fits), None)  # fmt: skip
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
