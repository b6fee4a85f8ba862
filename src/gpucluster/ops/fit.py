"""Will the configured models fit? Checked by `up` and `config check` before anything starts.

vLLM finds out that a model does not fit only after loading its weights, minutes in, and then
fails with a CUDA out-of-memory or "KV cache is needed" error deep in an engine log. The same
arithmetic `gpucluster capacity` does (planning.capacity.plan) answers it in milliseconds from
the model's config.json: weights plus the KV cache of one `max_model_len` sequence against each
device, and on CPU the KV space (`cpu_kvcache_gib`) and the host's memory for every replica.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from gpucluster.config import Config, ModelConfig
from gpucluster.models import ModelError
from gpucluster.planning.capacity import CapacityPlan, plan
from gpucluster.planning.hardware import CPU, GPUS, GiB, Gpu, MiB, find_gpu
from gpucluster.planning.inputs import CapacityInputError, PlanInputs
from gpucluster.planning.shapes import HF_CACHE, configured_shape
from gpucluster.runtime.gpus import local_gpus

# Memory one CPU replica takes besides its weights and KV space: measured 3.8 GB RSS for the
# built-in model with a 1 GiB KV space (vLLM worker 2.2, engine core 0.7, Serve replica 0.9).
CPU_REPLICA_OVERHEAD_GIB = 2.5
# Ray head, dashboard, Serve controller and proxy, nginx, Prometheus, Alertmanager.
PLATFORM_GIB = 1.5


@dataclass(frozen=True)
class Fit:
    """One check's verdict: `fits` None when it could not be checked (say why in `detail`)."""

    model: str  # "*" for the checks of all models together
    check: str  # "memory": one replica on its device; "host": memory; "gpus": GPU count
    fits: bool | None
    detail: str
    fix: str | None = None


def check_fit(
    config: Config,
    gpu: Gpu | None = None,
    *,
    hf_cache_dir: Path = HF_CACHE,
    host_memory_bytes: int | None = None,
    local_gpus: list[Gpu] | None = None,
) -> list[Fit]:
    """Every model of `config` checked against its device: `gpu` (a table GPU) when given, else
    the GPUs `nvidia-smi` shows here; CPU models against their KV space and this host's memory.
    `host_memory_bytes` and `local_gpus` replace what this host reports (tests)."""
    gpus = detect_gpus() if local_gpus is None else local_gpus
    device = gpu or (gpus[0] if gpus else None)
    fits: list[Fit] = []
    plans: dict[str, CapacityPlan] = {}
    for model in config.models:
        fit, result = _fit_on_device(config, model, device, hf_cache_dir)
        fits.append(fit)
        if result is not None:
            plans[model.id] = result
    cpu_plans = {model_id: result for model_id, result in plans.items()
                 if config.model(model_id).accelerator == "cpu"}  # fmt: skip
    if cpu_plans:
        total = host_memory_bytes
        if total is None:
            total = psutil.virtual_memory().total
        fits.append(_host_memory(config, cpu_plans, total))
    if gpu is None and gpus and config.platform.cluster_host is None:
        fits.extend(_gpu_count(config, len(gpus)))
    return fits


def problems(fits: list[Fit]) -> list[Fit]:
    """The checks that failed."""
    return [fit for fit in fits if fit.fits is False]


def describe(fit: Fit) -> str:
    """One sentence for a failed check: what does not fit, the numbers, and the fix."""
    what = {
        "memory": f"model {fit.model} does not fit its device",
        "host": "the CPU replicas do not fit this host's memory",
        "gpus": "the initial replicas need more GPUs than this host has",
    }[fit.check]
    return f"{what}: {fit.detail}. Fix: {fit.fix}"


def as_dicts(fits: list[Fit]) -> list[dict]:
    return [asdict(fit) for fit in fits]


def detect_gpus() -> list[Gpu]:
    """This host's GPUs as `nvidia-smi` reports them (memory), matched to the table by name for
    bandwidth and FLOP/s; [] without the NVIDIA driver."""
    found = []
    for name, mib in local_gpus():
        known = next((table for table in GPUS if _same_gpu(table, name)), None)
        found.append(Gpu(
            name, memory_bytes=mib * MiB,
            bandwidth_bytes_per_s=known.bandwidth_bytes_per_s if known else None,
            flops=known.flops if known else None,
        ))  # fmt: skip
    return found


def _same_gpu(table: Gpu, reported: str) -> bool:
    words = reported.lower().replace("nvidia", "").split()
    return bool(words) and any(words[0] == alias.split("-")[0] for alias in table.aliases)


def _fit_on_device(
    config: Config, model: ModelConfig, device: Gpu | None, hf_cache_dir: Path
) -> tuple[Fit, CapacityPlan | None]:
    """Whether one replica of `model` fits its device (cpu, else `device`), and its plan."""
    if model.accelerator == "cpu":
        device = find_gpu(CPU)
    elif device is None:
        return Fit(model=model.id, check="memory", fits=None,
                   detail="no GPU is visible here (nvidia-smi) to check against; `gpucluster "
                   "config check --gpu NAME` checks against a GPU type"), None  # fmt: skip
    try:
        shape = configured_shape(
            model, model_cache_dir=config.platform.model_cache_dir, hf_cache_dir=hf_cache_dir
        )
    except (CapacityInputError, ModelError) as exc:
        return Fit(model=model.id, check="memory", fits=None, detail=f"not checked: {exc}"), None
    try:
        result = plan(shape, device, PlanInputs.from_config(model, device))
    except CapacityInputError as exc:  # what vLLM would refuse, such as max_model_len
        return Fit(model=model.id, check="memory", fits=False, detail=str(exc),
                   fix="fix the model's settings"), None  # fmt: skip
    where = "the KV space (cpu_kvcache_gib)" if device.is_cpu else f"one {device.name}"
    detail = (
        f"weights {result.weight_bytes_per_gpu / GiB:.2f} GiB/device, KV cache "
        f"{result.kv_cache_bytes_per_gpu / GiB:.2f} GiB/device on {where} x tp {result.tp}: "
        f"{result.kv_token_capacity:,} tokens for max_model_len {result.max_model_len:,}"
    )
    if result.fits:
        return Fit(model=model.id, check="memory", fits=True, detail=detail), result
    return Fit(model=model.id, check="memory", fits=False, detail=f"{detail}; {_reason(result)}",
               fix=_fix(result)), result  # fmt: skip


def _reason(result: CapacityPlan) -> str:
    """The plan's reason without its advice (which speaks in flags, not config keys)."""
    return result.reason.split(";")[0]


def _fix(result: CapacityPlan) -> str:
    """What to change in the config, in its own keys."""
    if result.gpu.is_cpu:
        need_gib = math.ceil(result.max_model_len * result.kv_bytes_per_token_per_gpu / GiB)
        holds = result.kv_token_capacity
        return f"one of cpu_kvcache_gib: {need_gib} or more; max_model_len: {holds:,} or less"
    fixes = []
    if result.smallest_tp is not None and result.smallest_tp != result.tp:
        fixes.append(f"tensor_parallel_size: {result.smallest_tp}")
    if result.kv_token_capacity > 0:
        fixes.append(f"max_model_len: {result.kv_token_capacity:,} or less")
    fixes += [
        "a quantized model (fp8, AWQ/GPTQ int4)",
        "engine_kwargs kv_cache_dtype: fp8",
        "a GPU with more memory",
    ]
    return "one of " + "; ".join(fixes)


def _host_memory(config: Config, plans: dict[str, CapacityPlan], total: int) -> Fit:
    per_replica = {
        model_id: result.weight_bytes_per_gpu
        + result.kv_cache_bytes_per_gpu
        + int(CPU_REPLICA_OVERHEAD_GIB * GiB)
        for model_id, result in plans.items()
    }
    need = int(PLATFORM_GIB * GiB) + sum(
        config.model(model_id).replicas.max * size for model_id, size in per_replica.items()
    )
    parts = ", ".join(
        f"{model_id}: {config.model(model_id).replicas.max} x {size / GiB:.1f} GiB"
        for model_id, size in per_replica.items()
    )
    detail = (
        f"CPU replicas at replicas.max need {need / GiB:.1f} GiB ({parts}, platform "
        f"{PLATFORM_GIB:g} GiB); this host has {total / GiB:.1f} GiB"
    )
    if need <= total:
        return Fit(model="*", check="host", fits=True, detail=detail)
    return Fit(
        model="*",
        check="host",
        fits=False,
        detail=detail,
        fix="lower replicas.max or cpu_kvcache_gib, or run on a host with more memory",
    )


def _gpu_count(config: Config, gpus: int) -> list[Fit]:
    gpu_models = [model for model in config.models if model.accelerator == "gpu"]
    if not gpu_models:
        return []
    need = sum(
        (model.replicas.initial if model.replicas.initial is not None else model.replicas.min)
        * PlanInputs.from_config(model).tp
        for model in gpu_models
    )
    detail = f"initial replicas need {need} GPU(s) (replicas x tensor_parallel_size); {gpus} here"
    if need <= gpus:
        return [Fit(model="*", check="gpus", fits=True, detail=detail)]
    return [
        Fit(
            model="*",
            check="gpus",
            fits=False,
            detail=detail,
            fix="lower replicas.min/initial or tensor_parallel_size, or join GPU hosts "
            "(`gpucluster up --head`, docs/deployment.md#more-hosts)",
        )
    ]
