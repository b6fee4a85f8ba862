"""What a capacity plan tells people: why a model fits or does not, what to change, and the
notes on the assumptions behind the numbers. Text only; the numbers come from arithmetic."""

from __future__ import annotations

import math

from gpucluster.planning.arithmetic import MemoryBudget, active_params, blocks_per_sequence
from gpucluster.planning.hardware import GiB, Gpu, ModelShape
from gpucluster.planning.inputs import (
    DTYPE_BYTES,
    OVERHEAD_GIB,
    TP_CHOICES,
    TP_OVERHEAD_GIB,
    PlanInputs,
    PlanSettings,
)


def fit_reason(gpu: Gpu, settings: PlanSettings, memory: MemoryBudget) -> str:
    """Why the model fits or does not: the sequences that fit, or what leaves no room."""
    length = settings.max_model_len
    if not gpu.is_cpu and memory.weight_bytes + memory.overhead_bytes >= memory.usable_bytes:
        return (
            f"weights ({memory.weight_bytes / GiB:.2f} GiB/GPU) + overhead "
            f"({memory.overhead_bytes / GiB:.2f} GiB) leave no room in "
            f"{settings.gpu_memory_utilization:g} x {(settings.memory_bytes or 0) / GiB:.2f} GiB"
        )
    if memory.sequences_at_max_model_len < 1:
        return (
            f"the KV cache holds {memory.kv_token_capacity:,} tokens, less than one sequence of "
            f"max_model_len {length:,}"
        )
    sequences = memory.sequences_at_max_model_len
    return f"{sequences:,} sequences of {length:,} tokens (max_model_len) fit"


def not_fit_advice(reason: str, gpu: Gpu, tp: int, smallest_tp: int | None,
                   settings: PlanSettings, memory: MemoryBudget) -> str:  # fmt: skip
    """`reason` with what to change: the KV space on cpu, else the smallest tp that fits, else
    a larger GPU, a shorter context or smaller dtypes."""
    if gpu.is_cpu:
        block = settings.block_size
        tokens = blocks_per_sequence(settings.max_model_len, block) * block
        need_gib = math.ceil(tokens * memory.kv_bytes_per_token / GiB)
        return f"{reason}; raise --kv-cache-gib to at least {need_gib} or lower --max-model-len"
    if smallest_tp is not None and smallest_tp != tp:
        return f"{reason}; the smallest tensor-parallel size that fits is {smallest_tp}"
    sizes = ", ".join(map(str, TP_CHOICES))
    return (
        f"{reason}; no tensor-parallel size of {sizes} fits: use a larger GPU, lower "
        "--max-model-len, --kv-cache-dtype fp8 or quantized weights"
    )


def plan_notes(model: ModelShape, gpu: Gpu, inputs: PlanInputs,
               settings: PlanSettings) -> tuple[str, ...]:  # fmt: skip
    """The assumptions behind a plan's numbers worth knowing, in the order they are shown."""
    notes = []
    tp = inputs.tp
    if gpu.is_cpu:
        notes.append(
            "cpu: the KV cache is exactly --kv-cache-gib (VLLM_CPU_KVCACHE_SPACE); weights live "
            "beside it in host RAM and are not charged against it"
        )
    elif inputs.overhead_gib is None:
        nccl = f" + {TP_OVERHEAD_GIB:g} GiB NCCL buffers (tp > 1)" if tp > 1 else ""
        notes.append(
            f"overhead per GPU: {OVERHEAD_GIB:g} GiB (CUDA context, activation peak, CUDA "
            f"graphs){nccl}; a constant, override with --overhead-gib"
        )
    if tp > model.num_kv_heads:
        notes.append(
            f"tp {tp} > {model.num_kv_heads} KV heads: each GPU keeps one replicated KV head, so "
            "KV bytes per token per GPU stop shrinking with tp"
        )
    weight = settings.weight_dtype
    if weight in ("fp8", "int4"):
        notes.append(
            f"{weight} weights: params x {DTYPE_BYTES[weight]:g} bytes; real checkpoints keep "
            "embeddings, norms and quantization scales in higher precision (a few % more)"
        )
    if model.source != "built-in table":
        notes.append(f"model shape read from {model.source}")
    if model.params_estimated and model.experts is None:
        notes.append(
            f"{model.params:,} parameters counted from the shape (dense decoder, gated MLP); "
            "for MoE or unusual architectures pass --params"
        )
    if model.experts is not None:
        notes.extend(_experts_notes(model))
    if settings.bandwidth_bytes_per_s is None:
        notes.append("no memory bandwidth for this device: pass --bandwidth-gbs for decode bounds")
    if settings.flops_per_s is None and inputs.load is not None:
        notes.append("no FLOP/s for this device: prefill is not counted; pass --tflops")
    return tuple(notes)


def _experts_notes(model: ModelShape) -> list[str]:
    """What a mixture of experts changes: memory holds every expert, a token computes with few."""
    experts = model.experts
    assert experts is not None
    notes = []
    if model.params_estimated:
        dense = model.num_layers - experts.moe_layers
        layers = f", {dense} dense layers" if dense else ""
        shared = " + 1 shared" if experts.shared_intermediate_size else ""
        notes.append(
            f"{model.params:,} parameters counted from the shape (mixture of experts: "
            f"{experts.count}{shared} experts per MoE layer{layers}, gated MLPs, routers); "
            "for unusual architectures pass --params"
        )
    notes.append(
        f"mixture of experts: each token is routed to {experts.per_token} of {experts.count} "
        f"experts and computes with {active_params(model):,} of the {model.params:,} "
        "parameters: memory holds every expert, FLOPs (compute bound, prefill) count the "
        "activated ones, and a decode step is taken to read every weight (a batch routes to "
        "most experts); the KV cache depends on attention only, not on the experts"
    )
    return notes
