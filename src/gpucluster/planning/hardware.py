"""Reference tables for capacity planning: accelerators and the shapes of common models.

GPU memory is the total `nvidia-smi` reports (memory.total, MiB): CUDA itself sees a few hundred
MiB less (vLLM logs it as `total_gpu_memory`), which the planner's overhead allowance absorbs.
Bandwidth is the vendor's peak HBM/GDDR figure (real kernels reach roughly 70-90 % of it) and
FLOPs the peak dense (no sparsity) bf16/fp16 tensor-core rate.

Model shapes are copied from each model's published config.json; `params` is the published
parameter count (it equals `arithmetic.estimate_params` of the shape, which the tests check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpucluster.errors import InputError

MiB = 2**20
GiB = 2**30
CPU = "cpu"


class UnknownNameError(InputError, ValueError):
    """A GPU or model name that no table knows; the message lists the known ones."""


@dataclass(frozen=True)
class Gpu:
    """One accelerator type: memory per device and memory bandwidth per device."""

    name: str
    memory_bytes: int | None  # None for the `cpu` pseudo-device: its KV space is given
    bandwidth_bytes_per_s: float | None  # None when unknown (cpu: pass --bandwidth-gbs)
    flops: float | None  # peak dense bf16 FLOP/s; None when unknown (cpu: pass --tflops)
    aliases: tuple[str, ...] = ()
    note: str = ""

    @property
    def is_cpu(self) -> bool:
        return self.name == CPU


@dataclass(frozen=True)
class Experts:
    """A mixture-of-experts MLP (Mixtral, Qwen2-MoE, Qwen3-MoE): each MoE layer holds `count`
    experts and routes each token to `per_token` of them."""

    count: int
    per_token: int
    intermediate_size: int  # one expert's gated-MLP width
    moe_layers: int  # layers with experts; the others have a dense MLP of intermediate_size
    shared_intermediate_size: int = 0  # an expert every token uses (Qwen2-MoE); 0: none


@dataclass(frozen=True)
class ModelShape:
    """What capacity depends on: the decoder's shape, parameter count and context limit."""

    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int | None
    intermediate_size: int | None
    params: int
    max_position_embeddings: int
    dtype: str = "bfloat16"  # the checkpoint's dtype (config.json `dtype` / `torch_dtype`)
    source: str = "built-in table"
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    params_estimated: bool = False  # True: counted from the shape, not published
    experts: Experts | None = None  # None: a dense MLP in every layer


GPUS: tuple[Gpu, ...] = (
    Gpu("H100-80GB-SXM", 81559 * MiB, 3.35e12, 989e12,
        ("h100", "h100-sxm", "h100-80gb", "h100-80gb-hbm3")),
    Gpu("H200-141GB", 143771 * MiB, 4.8e12, 989e12, ("h200", "h200-sxm")),
    Gpu("A100-40GB", 40960 * MiB, 1.555e12, 312e12, ("a100-40gb-sxm", "a100-sxm4-40gb")),
    Gpu("A100-80GB", 81920 * MiB, 2.039e12, 312e12, ("a100", "a100-80gb-sxm", "a100-sxm4-80gb")),
    Gpu("L40S-48GB", 46068 * MiB, 864e9, 362e12, ("l40s",)),
    Gpu("L4-24GB", 23034 * MiB, 300e9, 121e12, ("l4",)),
    # AWS's A10G: no datasheet; ~70 TFLOP/s is what bf16 matmuls reach (the A10's sheet says 125).
    Gpu("A10G-24GB", 23028 * MiB, 600e9, 70e12, ("a10g",)),
    Gpu(CPU, memory_bytes=None, bandwidth_bytes_per_s=None, flops=None, aliases=("host",),
        note="vLLM's CPU build: the KV cache is exactly --kv-cache-gib (VLLM_CPU_KVCACHE_SPACE)"),
)  # fmt: skip

MODELS: tuple[ModelShape, ...] = (
    ModelShape(
        name="Qwen/Qwen2.5-32B-Instruct", num_layers=64, hidden_size=5120,
        num_attention_heads=40, num_kv_heads=8, head_dim=128, vocab_size=152064,
        intermediate_size=27648, params=32_763_876_352, max_position_embeddings=32768,
        qkv_bias=True,
    ),
    ModelShape(
        name="Qwen/Qwen2.5-7B-Instruct", num_layers=28, hidden_size=3584,
        num_attention_heads=28, num_kv_heads=4, head_dim=128, vocab_size=152064,
        intermediate_size=18944, params=7_615_616_512, max_position_embeddings=32768,
        qkv_bias=True,
    ),
    ModelShape(
        name="meta-llama/Llama-3.1-8B-Instruct", num_layers=32, hidden_size=4096,
        num_attention_heads=32, num_kv_heads=8, head_dim=128, vocab_size=128256,
        intermediate_size=14336, params=8_030_261_248, max_position_embeddings=131072,
    ),
    ModelShape(
        name="meta-llama/Llama-3.1-70B-Instruct", num_layers=80, hidden_size=8192,
        num_attention_heads=64, num_kv_heads=8, head_dim=128, vocab_size=128256,
        intermediate_size=28672, params=70_553_706_496, max_position_embeddings=131072,
    ),
    ModelShape(
        name="mistralai/Mistral-7B-Instruct-v0.3", num_layers=32, hidden_size=4096,
        num_attention_heads=32, num_kv_heads=8, head_dim=128, vocab_size=32768,
        intermediate_size=14336, params=7_248_023_552, max_position_embeddings=32768,
    ),
    ModelShape(
        name="HuggingFaceTB/SmolLM2-135M-Instruct", num_layers=30, hidden_size=576,
        num_attention_heads=9, num_kv_heads=3, head_dim=64, vocab_size=49152,
        intermediate_size=1536, params=134_515_008, max_position_embeddings=8192,
        tie_word_embeddings=True,
    ),
)  # fmt: skip


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def gpu_names() -> list[str]:
    """Canonical names of the known accelerators."""
    return [gpu.name for gpu in GPUS]


def find_gpu(name: str) -> Gpu:
    """The GPU called `name` (case, spaces and dashes ignored; aliases such as `h100` accepted)."""
    wanted = _key(name)
    for gpu in GPUS:
        if wanted in {_key(gpu.name), *(_key(alias) for alias in gpu.aliases)}:
            return gpu
    raise UnknownNameError(f"unknown GPU {name!r}; known: {', '.join(gpu_names())}")


def model_names() -> list[str]:
    """Ids of the models in the built-in table."""
    return [model.name for model in MODELS]


def find_table_model(name: str) -> ModelShape | None:
    """The table model whose id, or name without the organisation, is `name` (any case)."""
    wanted = name.strip().lower()
    for model in MODELS:
        if wanted in (model.name.lower(), model.name.split("/", 1)[1].lower()):
            return model
    return None
