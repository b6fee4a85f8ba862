"""Capacity planning from first principles: memory, KV cache, decode bandwidth, replicas.

Pure arithmetic over a model's shape and an accelerator (`gpucluster.planning.hardware`); the only
I/O is reading a model's config.json when resolving a model name. docs/capacity-planning.md
derives every formula used here; the short version:

- weights per GPU   = params x bytes/param / tp
- KV bytes / token  = 2 (K and V) x layers x kv_heads_per_gpu x head_dim x kv dtype bytes, where
  kv_heads_per_gpu = kv_heads / tp, or 1 when tp > kv_heads (vLLM then replicates each KV head)
- KV memory per GPU = memory x gpu_memory_utilization - weights per GPU - overhead
  (on `cpu`: exactly --kv-cache-gib, vLLM's VLLM_CPU_KVCACHE_SPACE)
- KV blocks = KV memory // (block_size x KV bytes/token); KV tokens = blocks x block_size
- decode step time  = (weights per GPU + batch x context x KV bytes/token per GPU) / bandwidth,
  capped by compute: a replica never decodes faster than tp x FLOP/s / (2 x params) tokens/s
- replicas = ceil(rps x (output / decode rate at the full batch + prefill seconds per request))
"""

from __future__ import annotations

import json
import math
import re
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
from gpucluster.planning.hardware import GiB, Gpu, ModelShape, find_table_model, model_names

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int4": 0.5}
WEIGHT_DTYPES = ("auto", "bf16", "fp16", "fp32", "fp8", "int4")
KV_CACHE_DTYPES = ("auto", "bf16", "fp16", "fp32", "fp8")
TP_CHOICES = (1, 2, 4, 8)
# Where `capacity` looks Hugging Face ids up (the hub client's cache; never downloads).
HF_CACHE = Path("~/.cache/huggingface/hub")
# vLLM 0.29 defaults: CacheConfig.DEFAULT_BLOCK_SIZE on GPU; CpuPlatform sets 128 on CPU.
GPU_BLOCK_SIZE = 16
CPU_BLOCK_SIZE = 128
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


class CapacityInputError(ValueError):
    """Inputs that cannot be planned (a usage error); the message says what to change."""


@dataclass(frozen=True)
class Load:
    """A target load: requests per second with a typical prompt and completion length."""

    rps: float
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class LoadPlan:
    """Replicas for a target load (see docs/capacity-planning.md, "Replicas for a load")."""

    rps: float
    input_tokens: int
    output_tokens: int
    sequences_per_replica: int  # batch one replica can hold: KV cache or max_num_seqs
    concurrency_limit: str  # "kv_cache" or "max_num_seqs": which of the two sets that batch
    replica_decode_tokens_per_s: float | None  # decode bound at that batch
    required_decode_tokens_per_s: float  # rps x output_tokens
    prefill_seconds_per_request: float | None  # 2 x params x input / (tp x FLOP/s); None: no FLOPs
    # The rest stay None without a decode bound (no bandwidth figure, or the model does not fit).
    decode_replica_seconds: float | None = None  # replica-seconds of decode per second of load
    prefill_replica_seconds: float | None = None  # replica-seconds of prefill per second of load
    binding: str | None = None  # "decode" or "prefill": the larger of the two
    replicas: int | None = None  # ceil(decode + prefill replica-seconds): the fewest that keep up
    gpus: int | None = None
    steady_batch_per_replica: float | None = None  # Little's law at the planned replica count
    request_seconds: float | None = None  # prefill + decode time of one request at that load
    in_flight_sequences: float | None = None  # Little's law: rps x request_seconds
    kv_share_of_step_bytes: float | None = None  # at the full batch; the rest are weight reads


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


# --- dtypes, shapes and small formulas -------------------------------------------------------


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


def kv_heads_per_gpu(num_kv_heads: int, tp: int) -> int:
    """KV heads each GPU stores: an even share, or 1 replicated head when tp > kv heads."""
    return max(1, num_kv_heads // tp)


def kv_bytes_per_token(model: ModelShape, kv_dtype_bytes: float, tp: int = 1) -> int:
    """2 (K and V) x layers x KV heads (per GPU at `tp`) x head_dim x bytes per element."""
    heads = kv_heads_per_gpu(model.num_kv_heads, tp)
    return int(2 * model.num_layers * heads * model.head_dim * kv_dtype_bytes)


def weight_dtype(model: ModelShape, dtype: str | None = "auto") -> str:
    """The dtype the weights are held in: `dtype` normalised (`bfloat16` -> `bf16`), `auto` the
    dtype vLLM computes in; CapacityInputError for a dtype the planner does not know."""
    weight = normalise_dtype(dtype) or "auto"
    if weight not in WEIGHT_DTYPES:
        raise CapacityInputError(f"unknown dtype {dtype!r}; known: {', '.join(WEIGHT_DTYPES)}")
    return model_activation_dtype(model) if weight == "auto" else weight


def weight_bytes(model: ModelShape, dtype: str, tp: int = 1) -> int:
    """Bytes of the weights each of `tp` GPUs holds: params x bytes per param (`dtype` as
    `weight_dtype` returns it) / tp; the whole checkpoint at tp 1."""
    return math.ceil(model.params * DTYPE_BYTES[dtype] / tp)


def tp_problem(model: ModelShape, tp: int) -> str | None:
    """Why vLLM would refuse `tp` for this model, or None (heads and KV heads must divide)."""
    if tp < 1:
        return "tensor parallel size must be at least 1"
    if model.num_attention_heads % tp:
        return f"tp {tp} does not divide the model's {model.num_attention_heads} attention heads"
    kv = model.num_kv_heads
    if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        return f"tp {tp} and the model's {kv} KV heads do not divide one another"
    return None


def estimate_params(model: ModelShape) -> int:
    """Parameter count of a dense decoder with a gated MLP (Llama, Qwen2, Mistral, SmolLM)."""
    if model.vocab_size is None or model.intermediate_size is None:
        raise CapacityInputError(
            f"{model.name}: config has no vocab_size/intermediate_size; pass --params"
        )
    h, d = model.hidden_size, model.head_dim
    q, kv = model.num_attention_heads * d, model.num_kv_heads * d
    attention = h * q + 2 * h * kv + q * h + (q + 2 * kv if model.qkv_bias else 0)
    layer = attention + 3 * h * model.intermediate_size + 2 * h
    embeddings = model.vocab_size * h * (1 if model.tie_word_embeddings else 2)
    return model.num_layers * layer + embeddings + h


def parse_params(text: str) -> int:
    """`32.8B`, `135M`, `7e9` or `7615616512` as a parameter count."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmbt]?)\s*", text.lower())
    if not match:
        raise CapacityInputError(f"--params {text!r}: expected a count such as 32.8B or 135M")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2)]
    return round(float(match.group(1)) * scale)


def default_max_num_seqs(gpu: Gpu, tp: int) -> int:
    """vLLM 0.29's default for its OpenAI server: 128 x tp on CPU, 1024 on >= 70 GiB non-A100."""
    if gpu.is_cpu:
        return 128 * tp
    big = gpu.memory_bytes is not None and gpu.memory_bytes >= 70 * GiB
    return 1024 if big and "a100" not in gpu.name.lower() else 256


def decode_rate(
    weight_bytes: float, kv_bytes_per_token: float, batch: float, context: float, bandwidth: float
) -> float:
    """Tokens/s of `batch` sequences of `context` tokens when each step streams its bytes once.

    One decode step reads every weight once (shared by the batch) and each sequence's KV cache;
    all per GPU, so `bandwidth` is one GPU's. Peak bandwidth, no communication or scheduling
    time: an upper bound (`plan` also caps it by the FLOPs each token needs).
    """
    return batch * bandwidth / (weight_bytes + batch * context * kv_bytes_per_token)


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


def settings_from_config(model: ModelConfig) -> dict[str, Any]:
    """`plan` inputs from a model's config, `engine_kwargs` winning as they do for vLLM
    (`kv_cache_gib` is the CPU build's KV space)."""
    kwargs = model.engine_kwargs
    values = {
        "tp": kwargs.get("tensor_parallel_size", model.tensor_parallel_size),
        "max_model_len": kwargs.get("max_model_len", model.max_model_len),
        "gpu_memory_utilization": kwargs.get(
            "gpu_memory_utilization", model.gpu_memory_utilization
        ),
        "dtype": normalise_dtype(kwargs.get("dtype", model.dtype)),
        "kv_cache_dtype": normalise_dtype(kwargs.get("kv_cache_dtype")),
        "block_size": kwargs.get("block_size"),
        "max_num_seqs": kwargs.get("max_num_seqs", model.max_num_seqs),
        "kv_cache_gib": model.cpu_kvcache_gib,
    }
    return {key: value for key, value in values.items() if value is not None}


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    max_model_len: int
    utilization: float
    weight_dtype: str
    kv_dtype: str
    kv_cache_bytes: int | None  # cpu
    memory_bytes: int | None
    bandwidth: float | None
    flops: float | None
    overhead_gib: float | None
    block_size: int
    max_num_seqs: int | None


@dataclass(frozen=True)
class _Memory:
    weights: int
    overhead: int
    usable: int
    kv_token_gpu: int
    kv_cache: int
    blocks: int
    sequences: int  # at max_model_len
    fits: bool
    reason: str


def _memory(model: ModelShape, gpu: Gpu, tp: int, s: _Settings) -> _Memory:
    weights = weight_bytes(model, s.weight_dtype, tp)
    kv_token = kv_bytes_per_token(model, DTYPE_BYTES[s.kv_dtype], tp)
    blocks_per_seq = math.ceil(s.max_model_len / s.block_size)
    if gpu.is_cpu:
        overhead, usable = 0, int(s.kv_cache_bytes or 0)
        kv_cache = usable
    else:
        gib = s.overhead_gib if s.overhead_gib is not None else (
            OVERHEAD_GIB + (TP_OVERHEAD_GIB if tp > 1 else 0)
        )
        overhead = int(gib * GiB)
        usable = int((s.memory_bytes or 0) * s.utilization)
        kv_cache = max(0, usable - weights - overhead)
    blocks = kv_cache // (s.block_size * kv_token)
    sequences = blocks // blocks_per_seq
    if not gpu.is_cpu and weights + overhead >= usable:
        reason = (
            f"weights ({weights / GiB:.2f} GiB/GPU) + overhead ({overhead / GiB:.2f} GiB) leave no "
            f"room in {s.utilization:g} x {(s.memory_bytes or 0) / GiB:.2f} GiB"
        )
    elif sequences < 1:
        reason = (
            f"the KV cache holds {blocks * s.block_size:,} tokens, less than one sequence of "
            f"max_model_len {s.max_model_len:,}"
        )
    else:
        reason = f"{sequences:,} sequences of {s.max_model_len:,} tokens (max_model_len) fit"
    return _Memory(weights, overhead, usable, kv_token, kv_cache, blocks, sequences,
                   sequences >= 1, reason)  # fmt: skip


@dataclass(frozen=True)
class _Decode:
    batch: int
    context: int
    rate: float | None
    single: float | None
    limit: str | None


def _decode(model: ModelShape, gpu: Gpu, tp: int, s: _Settings, m: _Memory,
            load: Load | None) -> _Decode:  # fmt: skip
    """The decode bound at the largest batch the KV cache and max_num_seqs allow."""
    if load is not None:
        context = load.input_tokens + load.output_tokens // 2  # mean context while decoding
        batch = m.blocks // math.ceil((load.input_tokens + load.output_tokens) / s.block_size)
    else:
        context, batch = s.max_model_len, m.sequences
    batch = min(batch, _max_num_seqs(gpu, tp, s))
    if s.bandwidth is None or not m.fits or batch < 1:
        return _Decode(batch, context, None, None, None)
    rate = decode_rate(m.weights, m.kv_token_gpu, batch, context, s.bandwidth)
    single = decode_rate(m.weights, m.kv_token_gpu, 1, context, s.bandwidth)
    limit = "memory_bandwidth"
    if s.flops is not None:  # each token costs 2 x params FLOPs, whatever the batch
        ceiling = tp * s.flops / (2 * model.params)
        limit = "compute" if ceiling < rate else limit
        rate, single = min(rate, ceiling), min(single, ceiling)
    return _Decode(batch, context, rate, single, limit)


def _max_num_seqs(gpu: Gpu, tp: int, s: _Settings) -> int:
    return s.max_num_seqs if s.max_num_seqs is not None else default_max_num_seqs(gpu, tp)


def _load_plan(load: Load, model: ModelShape, gpu: Gpu, tp: int, s: _Settings, m: _Memory,
               d: _Decode) -> LoadPlan:  # fmt: skip
    per_seq = math.ceil((load.input_tokens + load.output_tokens) / s.block_size)
    limit = "kv_cache" if m.blocks // per_seq < _max_num_seqs(gpu, tp, s) else "max_num_seqs"
    needed = load.rps * load.output_tokens
    prefill = None
    if s.flops is not None:
        prefill = 2 * model.params * load.input_tokens / (tp * s.flops)
    result = LoadPlan(load.rps, load.input_tokens, load.output_tokens, d.batch, limit, d.rate,
                      needed, prefill)  # fmt: skip
    if not d.rate or s.bandwidth is None:
        return result
    # A replica spends each second decoding or prefilling: the load needs
    # rps x out / rate + rps x prefill replica-seconds per second.
    decode_share = needed / d.rate
    prefill_share = load.rps * (prefill or 0.0)
    replicas = max(1, math.ceil(decode_share + prefill_share - 1e-9))
    # Little's law per replica: decode runs (1 - u) of the time at demand D tokens/s, holding
    # B = D x step(B) sequences, step(B) = (W + B x context x kv) / bw, solved for B.
    bw, weights, kv = s.bandwidth, m.weights, m.kv_token_gpu
    busy_prefill = prefill_share / replicas
    demand = needed / replicas / (1 - busy_prefill)
    steady = demand * weights / (bw - demand * d.context * kv)
    step = (weights + steady * d.context * kv) / bw
    seconds = (prefill or 0.0) + load.output_tokens * step / (1 - busy_prefill)
    return replace(
        result, decode_replica_seconds=decode_share,
        prefill_replica_seconds=prefill_share if prefill is not None else None,
        binding="prefill" if prefill_share > decode_share else "decode", replicas=replicas,
        gpus=replicas * tp, steady_batch_per_replica=steady, request_seconds=seconds,
        in_flight_sequences=load.rps * seconds,
        kv_share_of_step_bytes=d.batch * d.context * kv / (weights + d.batch * d.context * kv),
    )  # fmt: skip


def _tp_option(model: ModelShape, gpu: Gpu, tp: int, s: _Settings) -> TpOption:
    problem = tp_problem(model, tp)
    if problem:
        return TpOption(tp, False, False, 0, 0, 0, 0, None, problem)
    m = _memory(model, gpu, tp, s)
    rate = _decode(model, gpu, tp, s, m, None).rate
    return TpOption(tp, True, m.fits, m.weights, m.kv_cache, m.blocks * s.block_size,
                    m.sequences, rate, m.reason)  # fmt: skip


def plan(
    model: ModelShape,
    gpu: Gpu,
    *,
    tp: int = 1,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    dtype: str = "auto",
    kv_cache_dtype: str = "auto",
    kv_cache_gib: float | None = None,
    bandwidth_gbs: float | None = None,
    tflops: float | None = None,
    memory_gib: float | None = None,
    overhead_gib: float | None = None,
    block_size: int | None = None,
    max_num_seqs: int | None = None,
    load: Load | None = None,
) -> CapacityPlan:
    """Plan serving `model` on `gpu` with tensor parallelism `tp`; CapacityInputError on inputs
    vLLM would reject. On `cpu` the KV cache is `kv_cache_gib` (default 1) and weights are not
    charged against it. `bandwidth_gbs` (GB/s, 1e9) and `tflops` (dense bf16, 1e12) override
    the table's figures."""
    s, notes = _settings(model, gpu, tp, max_model_len, gpu_memory_utilization, dtype,
                         kv_cache_dtype, kv_cache_gib, bandwidth_gbs, tflops, memory_gib,
                         overhead_gib, block_size, max_num_seqs, load)  # fmt: skip
    m = _memory(model, gpu, tp, s)
    d = _decode(model, gpu, tp, s, m, load)
    options = tuple(_tp_option(model, gpu, t, s) for t in sorted({*TP_CHOICES, tp}))
    smallest = next((o.tp for o in options if o.tp in TP_CHOICES and o.fits), None)
    blocks_per_seq = math.ceil(s.max_model_len / s.block_size)
    concurrency = m.blocks / blocks_per_seq
    reason = m.reason if m.fits else _advice(m.reason, gpu, tp, smallest, s, m, blocks_per_seq)
    return CapacityPlan(
        model=model, gpu=gpu, tp=tp, max_model_len=s.max_model_len,
        gpu_memory_utilization=None if gpu.is_cpu else s.utilization,
        weight_dtype=s.weight_dtype, kv_cache_dtype=s.kv_dtype, block_size=s.block_size,
        max_num_seqs=_max_num_seqs(gpu, tp, s), memory_bytes_per_gpu=s.memory_bytes,
        usable_bytes_per_gpu=m.usable, weight_bytes_per_gpu=m.weights,
        overhead_bytes_per_gpu=m.overhead,
        kv_heads_per_gpu=kv_heads_per_gpu(model.num_kv_heads, tp),
        kv_replicated=tp > model.num_kv_heads,
        kv_bytes_per_token=kv_bytes_per_token(model, DTYPE_BYTES[s.kv_dtype]),
        kv_bytes_per_token_per_gpu=m.kv_token_gpu, kv_cache_bytes_per_gpu=m.kv_cache,
        kv_blocks=m.blocks, kv_token_capacity=m.blocks * s.block_size,
        vllm_reported_kv_tokens=int(concurrency * s.max_model_len), max_concurrency=concurrency,
        max_sequences_at_max_model_len=m.sequences, bandwidth_bytes_per_s=s.bandwidth,
        flops_per_s=s.flops, decode_batch=d.batch, decode_context_tokens=d.context,
        decode_tokens_per_s=d.rate, decode_tokens_per_s_single=d.single, decode_limit=d.limit,
        fits=m.fits, reason=reason, smallest_tp=smallest,
        tp_options=options,
        load=_load_plan(load, model, gpu, tp, s, m, d) if load else None,
        notes=tuple(notes),
    )  # fmt: skip


def _advice(reason: str, gpu: Gpu, tp: int, smallest: int | None, s: _Settings, m: _Memory,
            blocks_per_seq: int) -> str:  # fmt: skip
    if gpu.is_cpu:
        need = math.ceil(blocks_per_seq * s.block_size * m.kv_token_gpu / GiB)
        return f"{reason}; raise --kv-cache-gib to at least {need} or lower --max-model-len"
    if smallest is not None and smallest != tp:
        return f"{reason}; the smallest tensor-parallel size that fits is {smallest}"
    sizes = ", ".join(map(str, TP_CHOICES))
    return (
        f"{reason}; no tensor-parallel size of {sizes} fits: use a larger GPU, lower "
        "--max-model-len, --kv-cache-dtype fp8 or quantized weights"
    )


def _settings(model: ModelShape, gpu: Gpu, tp: int, max_model_len: int | None,
              utilization: float, dtype: str, kv_cache_dtype: str, kv_cache_gib: float | None,
              bandwidth_gbs: float | None, tflops: float | None, memory_gib: float | None,
              overhead_gib: float | None,
              block_size: int | None, max_num_seqs: int | None,
              load: Load | None) -> tuple[_Settings, list[str]]:  # fmt: skip
    problem = tp_problem(model, tp)
    if problem:
        raise CapacityInputError(problem)
    length = max_model_len if max_model_len is not None else model.max_position_embeddings
    if not 1 <= length <= model.max_position_embeddings:
        raise CapacityInputError(
            f"max_model_len {length} must be between 1 and the model's max_position_embeddings "
            f"({model.max_position_embeddings}); vLLM refuses longer contexts"
        )
    if not 0 < utilization <= 1:
        raise CapacityInputError(f"gpu_memory_utilization {utilization} must be in (0, 1]")
    weight = weight_dtype(model, dtype)
    kv = normalise_dtype(kv_cache_dtype) or "auto"
    if kv not in KV_CACHE_DTYPES:
        raise CapacityInputError(
            f"unknown kv cache dtype {kv_cache_dtype!r}; known: {', '.join(KV_CACHE_DTYPES)}"
        )
    activation = model_activation_dtype(model)
    if kv == "auto":  # vLLM stores KV in the compute dtype; quantized weights keep bf16/fp16
        kv = weight if weight in ("bf16", "fp16", "fp32") else activation
    sizes = {"bandwidth_gbs": bandwidth_gbs, "tflops": tflops, "memory_gib": memory_gib,
             "kv_cache_gib": kv_cache_gib, "overhead_gib": overhead_gib}  # fmt: skip
    for label, value in sizes.items():
        if value is not None and (value < 0 or (value == 0 and label != "overhead_gib")):
            raise CapacityInputError(f"{label} must be positive, not {value}")
    if gpu.is_cpu and memory_gib is not None:
        raise CapacityInputError("--memory-gib does not apply to cpu: its KV is --kv-cache-gib")
    if not gpu.is_cpu and kv_cache_gib is not None:
        raise CapacityInputError(
            f"--kv-cache-gib applies to cpu only; on {gpu.name} the KV cache is what "
            "gpu_memory_utilization leaves after weights and overhead"
        )
    if block_size is not None and block_size < 1:
        raise CapacityInputError(f"block_size must be positive, not {block_size}")
    if max_num_seqs is not None and max_num_seqs < 1:
        raise CapacityInputError(f"max_num_seqs must be positive, not {max_num_seqs}")
    if load is not None:
        _check_load(load, length)
    notes = _notes(model, gpu, tp, weight, overhead_gib)
    bandwidth = bandwidth_gbs * 1e9 if bandwidth_gbs is not None else gpu.bandwidth_bytes_per_s
    settings = _Settings(
        max_model_len=length, utilization=utilization, weight_dtype=weight, kv_dtype=kv,
        kv_cache_bytes=int((kv_cache_gib if kv_cache_gib is not None else 1) * GiB),
        memory_bytes=int(memory_gib * GiB) if memory_gib is not None else gpu.memory_bytes,
        bandwidth=bandwidth, flops=tflops * 1e12 if tflops is not None else gpu.flops,
        overhead_gib=overhead_gib,
        block_size=block_size or (CPU_BLOCK_SIZE if gpu.is_cpu else GPU_BLOCK_SIZE),
        max_num_seqs=max_num_seqs,
    )  # fmt: skip
    if bandwidth is None:
        notes.append("no memory bandwidth for this device: pass --bandwidth-gbs for decode bounds")
    if settings.flops is None and load is not None:
        notes.append("no FLOP/s for this device: prefill is not counted; pass --tflops")
    return settings, notes


def _check_load(load: Load, max_model_len: int) -> None:
    if load.rps < 0 or load.input_tokens < 0 or load.output_tokens < 1:
        raise CapacityInputError("rps and input tokens must be >= 0 and output tokens >= 1")
    if load.input_tokens + load.output_tokens > max_model_len:
        raise CapacityInputError(
            f"input + output tokens ({load.input_tokens + load.output_tokens}) exceed "
            f"max_model_len {max_model_len}: vLLM would reject those requests"
        )


def _notes(
    model: ModelShape, gpu: Gpu, tp: int, weight: str, overhead_gib: float | None
) -> list[str]:
    notes = []
    if gpu.is_cpu:
        notes.append(
            "cpu: the KV cache is exactly --kv-cache-gib (VLLM_CPU_KVCACHE_SPACE); weights live "
            "beside it in host RAM and are not charged against it"
        )
    elif overhead_gib is None:
        extra = f" + {TP_OVERHEAD_GIB:g} GiB NCCL buffers (tp > 1)" if tp > 1 else ""
        notes.append(
            f"overhead per GPU: {OVERHEAD_GIB:g} GiB (CUDA context, activation peak, CUDA "
            f"graphs){extra}; a constant, override with --overhead-gib"
        )
    if tp > model.num_kv_heads:
        notes.append(
            f"tp {tp} > {model.num_kv_heads} KV heads: each GPU keeps one replicated KV head, so "
            "KV bytes per token per GPU stop shrinking with tp"
        )
    if weight in ("fp8", "int4"):
        notes.append(
            f"{weight} weights: params x {DTYPE_BYTES[weight]:g} bytes; real checkpoints keep "
            "embeddings, norms and quantization scales in higher precision (a few % more)"
        )
    if model.source != "built-in table":
        notes.append(f"model shape read from {model.source}")
    if model.params_estimated:
        notes.append(
            f"{model.params:,} parameters counted from the shape (dense decoder, gated MLP); "
            "for MoE or unusual architectures pass --params"
        )
    return notes
