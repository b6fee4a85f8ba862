"""What a capacity plan is asked: one `PlanInputs` (serving settings, device overrides, a load),
checked against the model and the device as vLLM would check them (`settings_for`).

`PlanInputs.from_config` reads a configured model's settings through
`gpucluster.config.engine.engine_kwargs`, the one place where `engine_kwargs` win over the
model's own fields, so the planner plans with the values vLLM runs with; the command line
overrides them with `PlanInputs.overridden`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from gpucluster.config import ModelConfig
from gpucluster.config.engine import engine_kwargs
from gpucluster.errors import InputError
from gpucluster.planning.hardware import GiB, Gpu, ModelShape

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int4": 0.5}
WEIGHT_DTYPES = ("auto", "bf16", "fp16", "fp32", "fp8", "int4")
KV_CACHE_DTYPES = ("auto", "bf16", "fp16", "fp32", "fp8")
TP_CHOICES = (1, 2, 4, 8)
# vLLM 0.29 defaults: CacheConfig.DEFAULT_BLOCK_SIZE on GPU; CpuPlatform sets 128 on CPU.
GPU_BLOCK_SIZE = 16
CPU_BLOCK_SIZE = 128
# The CPU build's KV space when none is given (VLLM_CPU_KVCACHE_SPACE), GiB.
CPU_KV_CACHE_GIB = 1
# Per-GPU memory vLLM uses besides weights and KV cache: CUDA context and cuBLAS workspaces,
# the activation peak of a profiling forward pass, CUDA graphs; NCCL buffers when tp > 1.
# Sized from vLLM's memory-profiling log for Llama-3-8B on H100 (non-torch 1.79 GiB +
# activation peak 1.26 GiB at tp 1; 3.58 + 1.26 GiB at tp 2). Override with overhead_gib.
OVERHEAD_GIB = 3.0
TP_OVERHEAD_GIB = 2.0

_ALIASES = {
    "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32",
    "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "fp8_inc": "fp8", "int4": "int4",
}  # fmt: skip


class CapacityInputError(InputError, ValueError):
    """Inputs that cannot be planned (a usage error); the message says what to change."""


@dataclass(frozen=True)
class Load:
    """A target load: requests per second with a typical prompt and completion length."""

    rps: float
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class PlanInputs:
    """Everything `plan` is asked besides the model and the device; None: the default.

    `tp` .. `max_num_seqs` are the serving settings (vLLM's engine arguments); `kv_cache_gib` is
    the CPU build's KV space (default 1 GiB, cpu only); `bandwidth_gbs` (GB/s, 1e9), `tflops`
    (dense bf16, 1e12) and `memory_gib` override the device's table figures; `overhead_gib` the
    per-GPU memory besides weights and KV cache; `load` adds the replicas a load needs.
    """

    tp: int = 1
    max_model_len: int | None = None  # None: the model's max_position_embeddings
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    kv_cache_gib: float | None = None
    bandwidth_gbs: float | None = None
    tflops: float | None = None
    memory_gib: float | None = None
    overhead_gib: float | None = None
    block_size: int | None = None  # None: vLLM's default on the device
    max_num_seqs: int | None = None  # None: vLLM's default on the device
    load: Load | None = None

    @classmethod
    def from_config(cls, model: ModelConfig, device: Gpu | None = None) -> PlanInputs:
        """The settings `model` runs with (`engine_kwargs` winning, as they do for vLLM);
        `cpu_kvcache_gib` only when `device` is cpu: it is the CPU build's KV space."""
        kwargs = engine_kwargs(model)
        on_cpu = device is not None and device.is_cpu
        return cls().overridden(
            tp=kwargs["tensor_parallel_size"],
            max_model_len=kwargs.get("max_model_len"),
            gpu_memory_utilization=kwargs["gpu_memory_utilization"],
            dtype=normalise_dtype(kwargs["dtype"]),
            kv_cache_dtype=normalise_dtype(kwargs.get("kv_cache_dtype")),
            block_size=kwargs.get("block_size"),
            max_num_seqs=kwargs["max_num_seqs"],
            kv_cache_gib=model.cpu_kvcache_gib if on_cpu else None,
        )

    def overridden(self, **values: Any) -> PlanInputs:
        """These inputs with each of `values` that is not None instead (flags over a config)."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})


@dataclass(frozen=True)
class PlanSettings:
    """`PlanInputs` checked against a model and a device, defaults filled in: what the
    arithmetic uses. Bytes and rates are per device."""

    max_model_len: int
    gpu_memory_utilization: float
    weight_dtype: str
    kv_cache_dtype: str
    kv_cache_bytes: int  # cpu: the KV space
    memory_bytes: int | None
    bandwidth_bytes_per_s: float | None
    flops_per_s: float | None
    overhead_gib: float | None  # None: OVERHEAD_GIB (+ TP_OVERHEAD_GIB when tp > 1)
    block_size: int
    max_num_seqs: int | None  # None: vLLM's default for the device and tp


# --- dtypes, parameter counts, tensor parallelism ---------------------------------------------


def normalise_dtype(name: str | None) -> str | None:
    """`bfloat16` -> `bf16`, `float16` -> `fp16`, `fp8_e4m3` -> `fp8`; None stays None."""
    if name is None:
        return None
    text = str(name).strip().lower().removeprefix("torch.")
    return _ALIASES.get(text, text)


def model_activation_dtype(model: ModelShape) -> str:
    """The dtype vLLM computes in under `dtype: auto`: float32 checkpoints run in bfloat16."""
    dtype = normalise_dtype(model.dtype)
    return dtype if dtype in ("bf16", "fp16") else "bf16"


def weight_dtype(model: ModelShape, dtype: str | None = "auto") -> str:
    """The dtype the weights are held in: `dtype` normalised (`bfloat16` -> `bf16`), `auto` the
    dtype vLLM computes in; CapacityInputError for a dtype the planner does not know."""
    weight = normalise_dtype(dtype) or "auto"
    if weight not in WEIGHT_DTYPES:
        raise CapacityInputError(f"unknown dtype {dtype!r}; known: {', '.join(WEIGHT_DTYPES)}")
    return model_activation_dtype(model) if weight == "auto" else weight


def parse_params(text: str) -> int:
    """`32.8B`, `135M`, `7e9` or `7615616512` as a parameter count."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmbt]?)\s*", text.lower())
    if not match:
        raise CapacityInputError(f"--params {text!r}: expected a count such as 32.8B or 135M")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2)]
    return round(float(match.group(1)) * scale)


def tp_problem(model: ModelShape, tp: int) -> str | None:
    """Why vLLM would refuse `tp` for this model, or None (heads and KV heads must divide)."""
    if tp < 1:
        return "tensor parallel size must be at least 1"
    if model.num_attention_heads % tp:
        return f"tp {tp} does not divide the model's {model.num_attention_heads} attention heads"
    kv_heads = model.num_kv_heads
    if (kv_heads >= tp and kv_heads % tp) or (kv_heads < tp and tp % kv_heads):
        return f"tp {tp} and the model's {kv_heads} KV heads do not divide one another"
    return None


def default_max_num_seqs(gpu: Gpu, tp: int) -> int:
    """vLLM 0.29's default for its OpenAI server: 128 x tp on CPU, 1024 on >= 70 GiB non-A100."""
    if gpu.is_cpu:
        return 128 * tp
    big = gpu.memory_bytes is not None and gpu.memory_bytes >= 70 * GiB
    return 1024 if big and "a100" not in gpu.name.lower() else 256


# --- checking the inputs ----------------------------------------------------------------------


def settings_for(model: ModelShape, gpu: Gpu, inputs: PlanInputs) -> PlanSettings:
    """`inputs` checked for `model` on `gpu` and completed with the defaults; CapacityInputError
    for what vLLM would refuse (a tp the heads do not divide, a context beyond the model's) or
    what does not apply to the device."""
    problem = tp_problem(model, inputs.tp)
    if problem:
        raise CapacityInputError(problem)
    length = inputs.max_model_len
    if length is None:
        length = model.max_position_embeddings
    if not 1 <= length <= model.max_position_embeddings:
        raise CapacityInputError(
            f"max_model_len {length} must be between 1 and the model's max_position_embeddings "
            f"({model.max_position_embeddings}); vLLM refuses longer contexts"
        )
    utilization = inputs.gpu_memory_utilization
    if not 0 < utilization <= 1:
        raise CapacityInputError(f"gpu_memory_utilization {utilization} must be in (0, 1]")
    weight = weight_dtype(model, inputs.dtype)
    kv_dtype = _kv_cache_dtype(model, inputs.kv_cache_dtype, weight)
    _refuse_bad_sizes(gpu, inputs)
    if inputs.load is not None:
        _refuse_unservable_load(inputs.load, length)
    kv_cache_gib = inputs.kv_cache_gib if inputs.kv_cache_gib is not None else CPU_KV_CACHE_GIB
    memory = gpu.memory_bytes if inputs.memory_gib is None else int(inputs.memory_gib * GiB)
    bandwidth = gpu.bandwidth_bytes_per_s
    if inputs.bandwidth_gbs is not None:
        bandwidth = inputs.bandwidth_gbs * 1e9
    return PlanSettings(
        max_model_len=length,
        gpu_memory_utilization=utilization,
        weight_dtype=weight,
        kv_cache_dtype=kv_dtype,
        kv_cache_bytes=int(kv_cache_gib * GiB),
        memory_bytes=memory,
        bandwidth_bytes_per_s=bandwidth,
        flops_per_s=gpu.flops if inputs.tflops is None else inputs.tflops * 1e12,
        overhead_gib=inputs.overhead_gib,
        block_size=inputs.block_size or (CPU_BLOCK_SIZE if gpu.is_cpu else GPU_BLOCK_SIZE),
        max_num_seqs=inputs.max_num_seqs,
    )


def _kv_cache_dtype(model: ModelShape, requested: str, weight: str) -> str:
    """The KV cache's dtype: `requested`, or under `auto` the compute dtype (quantized weights
    keep a bf16/fp16 KV cache)."""
    kv_dtype = normalise_dtype(requested) or "auto"
    if kv_dtype not in KV_CACHE_DTYPES:
        raise CapacityInputError(
            f"unknown kv cache dtype {requested!r}; known: {', '.join(KV_CACHE_DTYPES)}"
        )
    if kv_dtype != "auto":
        return kv_dtype
    return weight if weight in ("bf16", "fp16", "fp32") else model_activation_dtype(model)


def _refuse_bad_sizes(gpu: Gpu, inputs: PlanInputs) -> None:
    """Sizes must be positive, and the cpu-only and GPU-only ones given for such a device."""
    sizes = {"bandwidth_gbs": inputs.bandwidth_gbs, "tflops": inputs.tflops,
             "memory_gib": inputs.memory_gib, "kv_cache_gib": inputs.kv_cache_gib,
             "overhead_gib": inputs.overhead_gib}  # fmt: skip
    for label, value in sizes.items():
        if value is not None and (value < 0 or (value == 0 and label != "overhead_gib")):
            raise CapacityInputError(f"{label} must be positive, not {value}")
    if gpu.is_cpu and inputs.memory_gib is not None:
        raise CapacityInputError("--memory-gib does not apply to cpu: its KV is --kv-cache-gib")
    if not gpu.is_cpu and inputs.kv_cache_gib is not None:
        raise CapacityInputError(
            f"--kv-cache-gib applies to cpu only; on {gpu.name} the KV cache is what "
            "gpu_memory_utilization leaves after weights and overhead"
        )
    if inputs.block_size is not None and inputs.block_size < 1:
        raise CapacityInputError(f"block_size must be positive, not {inputs.block_size}")
    if inputs.max_num_seqs is not None and inputs.max_num_seqs < 1:
        raise CapacityInputError(f"max_num_seqs must be positive, not {inputs.max_num_seqs}")


def _refuse_unservable_load(load: Load, max_model_len: int) -> None:
    """Token counts vLLM would serve: at least one output token, and within max_model_len."""
    if load.rps < 0 or load.input_tokens < 0 or load.output_tokens < 1:
        raise CapacityInputError("rps and input tokens must be >= 0 and output tokens >= 1")
    if load.input_tokens + load.output_tokens > max_model_len:
        raise CapacityInputError(
            f"input + output tokens ({load.input_tokens + load.output_tokens}) exceed "
            f"max_model_len {max_model_len}: vLLM would reject those requests"
        )
