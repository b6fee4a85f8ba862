"""The capacity formulas: pure functions over a model's shape, a device and checked settings.

docs/capacity-planning.md derives each one; the short version:

- weights per GPU   = params x bytes/param / tp
- KV bytes / token  = 2 (K and V) x layers x kv_heads_per_gpu x head_dim x kv dtype bytes, where
  kv_heads_per_gpu = kv_heads / tp, or 1 when tp > kv_heads (vLLM then replicates each KV head)
- KV memory per GPU = memory x gpu_memory_utilization - weights per GPU - overhead
  (on `cpu`: exactly --kv-cache-gib, vLLM's VLLM_CPU_KVCACHE_SPACE)
- KV blocks = KV memory // (block_size x KV bytes/token); KV tokens = blocks x block_size
- decode step time  = (weights per GPU + batch x context x KV bytes/token per GPU) / bandwidth,
  capped by compute: a replica never decodes faster than tp x FLOP/s / (2 x params) tokens/s
  (a mixture of experts: its activated params, `active_params`; its weights count every expert)
- replicas = ceil(rps x (output / decode rate at the full batch + prefill seconds per request))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from gpucluster.planning.hardware import GiB, Gpu, ModelShape
from gpucluster.planning.inputs import (
    DTYPE_BYTES,
    OVERHEAD_GIB,
    TP_OVERHEAD_GIB,
    CapacityInputError,
    Load,
    PlanSettings,
    default_max_num_seqs,
)


@dataclass(frozen=True)
class MemoryBudget:
    """One device's memory at a tensor-parallel size: bytes per GPU, and what the KV cache holds."""

    weight_bytes: int
    overhead_bytes: int
    usable_bytes: int  # memory x utilization (cpu: the KV space)
    kv_bytes_per_token: int  # per GPU
    kv_cache_bytes: int
    kv_blocks: int
    block_size: int
    sequences_at_max_model_len: int
    fits: bool  # at least one sequence of max_model_len fits

    @property
    def kv_token_capacity(self) -> int:
        """Tokens the KV cache holds: whole blocks."""
        return self.kv_blocks * self.block_size


@dataclass(frozen=True)
class DecodeBound:
    """The decode bound of one replica at the largest batch it can hold."""

    batch: int
    context_tokens: int
    tokens_per_s: float | None  # None: no bandwidth figure, or nothing fits
    tokens_per_s_single: float | None  # one sequence alone
    limit: str | None  # "memory_bandwidth" or "compute"


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
    # 2 x activated params x input / (tp x FLOP/s); None: no FLOP/s figure
    prefill_seconds_per_request: float | None
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


# --- shapes: parameters, weights, KV cache ----------------------------------------------------


def estimate_params(model: ModelShape) -> int:
    """Parameter count of a decoder with gated MLPs (Llama, Qwen2, Mistral, SmolLM), or with
    mixture-of-experts layers (Mixtral, Qwen2-MoE, Qwen3-MoE): every expert and the router."""
    if model.vocab_size is None or model.intermediate_size is None:
        raise CapacityInputError(
            f"{model.name}: config has no vocab_size/intermediate_size; pass --params"
        )
    hidden, head_dim = model.hidden_size, model.head_dim
    q_width, kv_width = model.num_attention_heads * head_dim, model.num_kv_heads * head_dim
    attention = 2 * hidden * q_width + 2 * hidden * kv_width
    if model.qkv_bias:
        attention += q_width + 2 * kv_width
    norms = 2 * hidden
    dense_mlp = 3 * hidden * model.intermediate_size
    experts, moe_layers = model.experts, 0
    moe_mlp = 0
    if experts is not None:
        moe_layers = experts.moe_layers
        router = hidden * experts.count
        moe_mlp = experts.count * 3 * hidden * experts.intermediate_size + router
        if experts.shared_intermediate_size:  # the shared expert and its gate
            moe_mlp += 3 * hidden * experts.shared_intermediate_size + hidden
    layers = (model.num_layers * (attention + norms) + moe_layers * moe_mlp
              + (model.num_layers - moe_layers) * dense_mlp)  # fmt: skip
    embeddings = model.vocab_size * hidden * (1 if model.tie_word_embeddings else 2)
    return layers + embeddings + hidden  # + the final norm


def active_params(model: ModelShape) -> int:
    """Parameters each token is computed with: all of a dense model's; of a mixture of experts,
    all but the experts it is not routed to. Two FLOPs each per token."""
    experts = model.experts
    if experts is None:
        return model.params
    idle = experts.count - experts.per_token
    idle_params = idle * 3 * model.hidden_size * experts.intermediate_size * experts.moe_layers
    return max(1, model.params - idle_params)


def kv_heads_per_gpu(num_kv_heads: int, tp: int) -> int:
    """KV heads each GPU stores: an even share, or 1 replicated head when tp > kv heads."""
    return max(1, num_kv_heads // tp)


def kv_bytes_per_token(model: ModelShape, kv_dtype_bytes: float, tp: int = 1) -> int:
    """2 (K and V) x layers x KV heads (per GPU at `tp`) x head_dim x bytes per element."""
    heads = kv_heads_per_gpu(model.num_kv_heads, tp)
    return int(2 * model.num_layers * heads * model.head_dim * kv_dtype_bytes)


def weight_bytes(model: ModelShape, dtype: str, tp: int = 1) -> int:
    """Bytes of the weights each of `tp` GPUs holds: params x bytes per param (`dtype` as
    `inputs.weight_dtype` returns it) / tp; the whole checkpoint at tp 1."""
    return math.ceil(model.params * DTYPE_BYTES[dtype] / tp)


def overhead_bytes(settings: PlanSettings, tp: int) -> int:
    """Per-GPU memory besides weights and KV cache: given, or OVERHEAD_GIB (+ NCCL at tp > 1)."""
    gib = settings.overhead_gib
    if gib is None:
        gib = OVERHEAD_GIB + (TP_OVERHEAD_GIB if tp > 1 else 0)
    return int(gib * GiB)


def max_num_seqs(gpu: Gpu, tp: int, settings: PlanSettings) -> int:
    """The most sequences one engine batches: given, or vLLM's default for the device."""
    if settings.max_num_seqs is not None:
        return settings.max_num_seqs
    return default_max_num_seqs(gpu, tp)


def memory_budget(model: ModelShape, gpu: Gpu, tp: int, settings: PlanSettings) -> MemoryBudget:
    """Weights, overhead and the KV cache on one GPU at `tp`; on cpu the KV cache is the KV
    space and the weights are not charged against it."""
    weights = weight_bytes(model, settings.weight_dtype, tp)
    kv_per_token = kv_bytes_per_token(model, DTYPE_BYTES[settings.kv_cache_dtype], tp)
    if gpu.is_cpu:
        overhead, usable = 0, settings.kv_cache_bytes
        kv_cache = usable
    else:
        overhead = overhead_bytes(settings, tp)
        usable = int((settings.memory_bytes or 0) * settings.gpu_memory_utilization)
        kv_cache = max(0, usable - weights - overhead)
    blocks = kv_cache // (settings.block_size * kv_per_token)
    sequences = blocks // blocks_per_sequence(settings.max_model_len, settings.block_size)
    return MemoryBudget(
        weight_bytes=weights,
        overhead_bytes=overhead,
        usable_bytes=usable,
        kv_bytes_per_token=kv_per_token,
        kv_cache_bytes=kv_cache,
        kv_blocks=blocks,
        block_size=settings.block_size,
        sequences_at_max_model_len=sequences,
        fits=sequences >= 1,
    )


def blocks_per_sequence(tokens: int, block_size: int) -> int:
    """KV blocks one sequence of `tokens` takes: vLLM allocates whole blocks."""
    return math.ceil(tokens / block_size)


# --- decode and load --------------------------------------------------------------------------


def decode_rate(
    weight_bytes: float, kv_bytes_per_token: float, batch: float, context: float, bandwidth: float
) -> float:
    """Tokens/s of `batch` sequences of `context` tokens when each step streams its bytes once.

    One decode step reads every weight once (shared by the batch) and each sequence's KV cache;
    all per GPU, so `bandwidth` is one GPU's. Peak bandwidth, no communication or scheduling
    time: an upper bound (`plan` also caps it by the FLOPs each token needs).
    """
    return batch * bandwidth / (weight_bytes + batch * context * kv_bytes_per_token)


def decode_bound(model: ModelShape, gpu: Gpu, tp: int, settings: PlanSettings,
                 memory: MemoryBudget, load: Load | None) -> DecodeBound:  # fmt: skip
    """The decode bound at the largest batch the KV cache and max_num_seqs allow: sequences of
    max_model_len, or of the load's mean context while decoding."""
    if load is not None:
        context = load.input_tokens + load.output_tokens // 2  # mean context while decoding
        per_sequence = blocks_per_sequence(load.input_tokens + load.output_tokens,
                                           settings.block_size)  # fmt: skip
        batch = memory.kv_blocks // per_sequence
    else:
        context, batch = settings.max_model_len, memory.sequences_at_max_model_len
    batch = min(batch, max_num_seqs(gpu, tp, settings))
    bandwidth = settings.bandwidth_bytes_per_s
    if bandwidth is None or not memory.fits or batch < 1:
        return DecodeBound(batch=batch, context_tokens=context, tokens_per_s=None,
                           tokens_per_s_single=None, limit=None)  # fmt: skip
    weights, kv_per_token = memory.weight_bytes, memory.kv_bytes_per_token
    rate = decode_rate(weights, kv_per_token, batch, context, bandwidth)
    single = decode_rate(weights, kv_per_token, 1, context, bandwidth)
    limit = "memory_bandwidth"
    if settings.flops_per_s is not None:  # 2 FLOPs per activated param per token, any batch
        ceiling = tp * settings.flops_per_s / (2 * active_params(model))
        limit = "compute" if ceiling < rate else limit
        rate, single = min(rate, ceiling), min(single, ceiling)
    return DecodeBound(batch=batch, context_tokens=context, tokens_per_s=rate,
                       tokens_per_s_single=single, limit=limit)  # fmt: skip


def load_plan(load: Load, model: ModelShape, gpu: Gpu, tp: int, settings: PlanSettings,
              memory: MemoryBudget, decode: DecodeBound) -> LoadPlan:  # fmt: skip
    """The replicas `load` needs: decode and prefill replica-seconds per second of load, and
    Little's law at that replica count."""
    per_sequence = blocks_per_sequence(load.input_tokens + load.output_tokens, settings.block_size)
    kv_bound = memory.kv_blocks // per_sequence < max_num_seqs(gpu, tp, settings)
    needed = load.rps * load.output_tokens
    flops = settings.flops_per_s
    prefill = None
    if flops is not None:
        prefill = 2 * active_params(model) * load.input_tokens / (tp * flops)
    result = LoadPlan(
        rps=load.rps, input_tokens=load.input_tokens, output_tokens=load.output_tokens,
        sequences_per_replica=decode.batch,
        concurrency_limit="kv_cache" if kv_bound else "max_num_seqs",
        replica_decode_tokens_per_s=decode.tokens_per_s, required_decode_tokens_per_s=needed,
        prefill_seconds_per_request=prefill,
    )  # fmt: skip
    bandwidth = settings.bandwidth_bytes_per_s
    if not decode.tokens_per_s or bandwidth is None:
        return result
    # A replica spends each second decoding or prefilling: the load needs
    # rps x out / rate + rps x prefill replica-seconds per second.
    decode_share = needed / decode.tokens_per_s
    prefill_share = load.rps * (prefill or 0.0)
    replicas = max(1, math.ceil(decode_share + prefill_share - 1e-9))
    # Little's law per replica: decode runs (1 - u) of the time at demand D tokens/s, holding
    # B = D x step(B) sequences, step(B) = (W + B x context x kv) / bw, solved for B.
    weights, kv_per_token = memory.weight_bytes, memory.kv_bytes_per_token
    context = decode.context_tokens
    busy_prefill = prefill_share / replicas
    demand = needed / replicas / (1 - busy_prefill)
    steady = demand * weights / (bandwidth - demand * context * kv_per_token)
    step = (weights + steady * context * kv_per_token) / bandwidth
    seconds = (prefill or 0.0) + load.output_tokens * step / (1 - busy_prefill)
    full_batch_kv = decode.batch * context * kv_per_token
    return replace(
        result, decode_replica_seconds=decode_share,
        prefill_replica_seconds=prefill_share if prefill is not None else None,
        binding="prefill" if prefill_share > decode_share else "decode", replicas=replicas,
        gpus=replicas * tp, steady_batch_per_replica=steady, request_seconds=seconds,
        in_flight_sequences=load.rps * seconds,
        kv_share_of_step_bytes=full_batch_kv / (weights + full_batch_kv),
    )  # fmt: skip
