"""The KubeRay pods of a platform config: pod_sizes' arithmetic applied to the head and to each
GPU worker group (one per tensor parallel size, sized for its largest model), with the
config's overrides (`platform.kubernetes.head_resources`, `worker_resources`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gpucluster.config import Config, ModelConfig
from gpucluster.config.schema import PodResources
from gpucluster.models import ModelError, resolve_source
from gpucluster.planning.inputs import CapacityInputError, PlanInputs
from gpucluster.planning.pod_sizes import (
    AdmissionBounds,
    HeldRequests,
    PodSize,
    PodSizeError,
    head_pod,
    shm_gib,
    text_bytes,
    total,
    worker_cpu_terms,
    worker_pod,
)
from gpucluster.planning.shapes import HF_CACHE, configured_shape


def head_size(config: Config) -> PodSize:
    """The head pod of `config`'s KubeRay deployment, with platform.kubernetes.head_resources."""
    held = []
    for model in config.models:
        bounds = AdmissionBounds.of(model)
        context = PlanInputs.from_config(model).max_model_len
        held.append(HeldRequests(
            model.id,
            model.replicas.max * bounds.ongoing + max(0, bounds.queued),
            text_bytes(context, config.platform.edge.max_body_bytes),
        ))  # fmt: skip
    size = head_pod(ingress=not config.serves_directly, held=held)
    return _overridden(size, config.platform.kubernetes.head_resources)


def worker_sizes(config: Config, *, hf_cache_dir: Path = HF_CACHE) -> dict[int, PodSize]:
    """One pod size per tensor parallel size of `config`'s models (one worker group each): the
    largest of the models sharing it, with platform.kubernetes.worker_resources.

    PodSizeError when a model's shape is unknown and its group's memory is not set by hand.
    """
    by_size: dict[int, list[ModelConfig]] = {}
    for model in config.models:
        by_size.setdefault(model.tensor_parallel_size, []).append(model)
    overrides = config.platform.kubernetes.worker_resources
    sizes = {}
    for tp, models in sorted(by_size.items()):
        resources = overrides.get(tp, PodResources())
        if resources.memory_gib is not None:
            largest = _unsized(tp, models, resources.memory_gib)
        else:
            pods = [_model_pod(config, model, hf_cache_dir) for model in models]
            largest = max(pods, key=lambda pod: pod.memory_gib)
        sizes[tp] = _overridden(largest, resources)
    return sizes


def _model_pod(config: Config, model: ModelConfig, hf_cache_dir: Path) -> PodSize:
    try:
        shape = configured_shape(
            model, model_cache_dir=config.platform.model_cache_dir, hf_cache_dir=hf_cache_dir
        )
    except (CapacityInputError, ModelError) as exc:
        tp = model.tensor_parallel_size
        try:
            hub = resolve_source(model.source).kind == "hf"
        except ModelError:
            hub = False
        where = (
            f"`hf download {model.source} config.json` (the config alone) or `gpucluster pull`"
            if hub
            else "its directory with config.json on this host"
        )
        raise PodSizeError(
            f"model {model.id}: its worker pods cannot be sized without its shape: {exc}. "
            f"Give the renderer its config.json ({where}), or set the pod's memory: "
            f"platform.kubernetes.worker_resources: {{{tp}: {{memory_gib: N}}}}"
        ) from None
    inputs = PlanInputs.from_config(model)
    bounds = AdmissionBounds.of(model)
    kwargs = model.engine_kwargs
    try:
        return worker_pod(
            shape, tp=model.tensor_parallel_size, dtype=inputs.dtype,
            context_tokens=inputs.max_model_len, ongoing_requests=bounds.ongoing,
            queued_requests=max(0, bounds.queued) if config.serves_directly else 0,
            max_body_bytes=config.platform.edge.max_body_bytes,
            cpu_offload_gib=float(kwargs.get("cpu_offload_gb") or 0),
            kv_offload_gib=float(kwargs.get("kv_offloading_size") or 0), model=model.id,
        )  # fmt: skip
    except CapacityInputError as exc:
        raise PodSizeError(f"model {model.id}: {exc}") from None


def _unsized(tp: int, models: list[ModelConfig], memory_gib: int) -> PodSize:
    """A worker group whose memory is set by hand: no model shape needed."""
    cpu = worker_cpu_terms(tp)
    return PodSize(group=f"gpu-tp{tp}", memory_terms=(), cpu_terms=cpu, memory_gib=memory_gib,
                   cpu=total(cpu), shm_gib=shm_gib(tp), ray_cpus=tp + 1,
                   model=", ".join(model.id for model in models))  # fmt: skip


def _overridden(size: PodSize, resources: PodResources) -> PodSize:
    """`size` with the CPU and memory set in platform.kubernetes, the rest derived."""
    update: dict[str, int] = {}
    if resources.cpu is not None:
        update["cpu"] = resources.cpu
    if resources.memory_gib is not None:
        update["memory_gib"] = resources.memory_gib
    if not update:
        return size
    return replace(size, **update, overridden=tuple(update))
