"""`gpucluster capacity`: how a model fits on an accelerator, and how many replicas a load needs.

Registered by the main app with `app.command("capacity")(capacity)`. Exit codes: 0 the model
fits, 1 it does not (the output names the smallest tensor-parallel size that would), 2 usage
error (unknown GPU or model, inputs vLLM would refuse).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpucluster.cli.common import ConfigOption, JsonOption, emit, fmt, out
from gpucluster.config import Config, ModelConfig, load_config
from gpucluster.errors import InputError
from gpucluster.planning.arithmetic import active_params
from gpucluster.planning.capacity import CapacityPlan, plan
from gpucluster.planning.hardware import GiB, ModelShape, find_gpu, gpu_names
from gpucluster.planning.inputs import (
    KV_CACHE_DTYPES,
    WEIGHT_DTYPES,
    Load,
    PlanInputs,
    parse_params,
)
from gpucluster.planning.pod_sizes import AdmissionBounds, PodSize, worker_pod
from gpucluster.planning.shapes import HF_CACHE, resolve_model


def capacity(
    model: Annotated[str | None, typer.Option(
        "--model", "-m",
        help="A model directory or config.json, a Hugging Face id in the local hub cache, the "
        "built-in model id, or a table model (e.g. Qwen/Qwen2.5-32B-Instruct). "
        "Default: the config's first model.",
    )] = None,
    gpu: Annotated[str | None, typer.Option(
        "--gpu", "-g",
        help=f"Accelerator: {', '.join(gpu_names())}. Default: cpu for a configured CPU model.",
    )] = None,
    tp: Annotated[int | None, typer.Option("--tp", help="Tensor-parallel size.")] = None,
    max_model_len: Annotated[int | None, typer.Option(
        "--max-model-len",
        help="Context length (prompt + output). Default: the config's, else the model's.",
    )] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        "--gpu-memory-utilization", help="Share of GPU memory vLLM may use (default 0.9).",
    )] = None,
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help=f"Weight dtype: {', '.join(WEIGHT_DTYPES)} (auto: the model's).",
    )] = None,
    kv_cache_dtype: Annotated[str | None, typer.Option(
        "--kv-cache-dtype",
        help=f"KV cache dtype: {', '.join(KV_CACHE_DTYPES)} (auto: the compute dtype).",
    )] = None,
    kv_cache_gib: Annotated[float | None, typer.Option(
        "--kv-cache-gib",
        help="cpu only: the KV cache size (VLLM_CPU_KVCACHE_SPACE); default the config's, else 1.",
    )] = None,
    bandwidth_gbs: Annotated[float | None, typer.Option(
        "--bandwidth-gbs",
        help="Memory bandwidth per device in GB/s (overrides the table; needed on cpu).",
    )] = None,
    tflops: Annotated[float | None, typer.Option(
        "--tflops", help="Peak dense bf16 TFLOP/s per device (overrides the table; cpu: none).",
    )] = None,
    memory_gib: Annotated[float | None, typer.Option(
        "--memory-gib", help="GPU memory per device in GiB (overrides the table).",
    )] = None,
    overhead_gib: Annotated[float | None, typer.Option(
        "--overhead-gib",
        help="Per-GPU memory besides weights and KV cache (default 3 GiB, +2 GiB when tp > 1).",
    )] = None,
    block_size: Annotated[int | None, typer.Option(
        "--block-size", help="KV cache block in tokens (default: vLLM's, 16 on GPU, 128 on cpu).",
    )] = None,
    max_num_seqs: Annotated[int | None, typer.Option(
        "--max-num-seqs",
        help="Most sequences one engine batches (default: the config's, else vLLM's).",
    )] = None,
    params: Annotated[str | None, typer.Option(
        "--params",
        help="Parameter count, e.g. 32.8B (default: the table's, or counted from the config).",
    )] = None,
    rps: Annotated[float | None, typer.Option(
        "--rps", help="Target load in requests/s: adds the replicas it needs.",
    )] = None,
    input_tokens: Annotated[int | None, typer.Option(
        "--input-tokens", help="Prompt tokens per request (with --rps).",
    )] = None,
    output_tokens: Annotated[int | None, typer.Option(
        "--output-tokens", help="Generated tokens per request (with --rps).",
    )] = None,
    hf_cache: Annotated[Path, typer.Option(
        "--hf-cache", file_okay=False,
        help="Hugging Face hub cache to look model ids up in (never downloads).",
    )] = HF_CACHE,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Plan memory, KV cache, decode throughput and replicas for a model on a GPU type."""
    cfg = load_config(config)
    configured = _configured(cfg, model)
    source = configured.source if configured else model
    gpu_name = gpu or ("cpu" if configured and configured.accelerator == "cpu" else None)
    if gpu_name is None:
        hint = f"model {configured.id} runs on GPUs: " if configured else ""
        raise InputError(f"{hint}pass --gpu, one of: {', '.join(gpu_names())}")
    if (input_tokens is None) != (output_tokens is None) or (
        rps is not None and input_tokens is None
    ):
        raise InputError("--rps needs both --input-tokens and --output-tokens")
    device = find_gpu(gpu_name)
    shape = resolve_model(
        source,
        model_cache_dir=cfg.platform.model_cache_dir,
        hf_cache_dir=hf_cache,
        params=parse_params(params) if params is not None else None,
    )
    # The configured model's settings (engine_kwargs winning), the flags given over them.
    inputs = PlanInputs.from_config(configured, device) if configured else PlanInputs()
    inputs = inputs.overridden(
        tp=tp, max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
        dtype=dtype, kv_cache_dtype=kv_cache_dtype, kv_cache_gib=kv_cache_gib,
        bandwidth_gbs=bandwidth_gbs, tflops=tflops, memory_gib=memory_gib,
        overhead_gib=overhead_gib, block_size=block_size, max_num_seqs=max_num_seqs,
        load=None if rps is None else Load(
            rps=rps, input_tokens=input_tokens, output_tokens=output_tokens
        ),
    )  # fmt: skip
    result = plan(shape, device, inputs)
    pod = _kuberay_pod(cfg, configured, shape, result, explicit_seqs=max_num_seqs is not None)
    if as_json:
        data = dataclasses.asdict(result)
        if shape.experts is None:  # a dense model's shape: no `experts` key, as before MoE
            del data["model"]["experts"]
        kuberay = {"kuberay_worker_pod": dataclasses.asdict(pod)} if pod else {}
        emit({"ok": result.fits, **data, **kuberay})
    else:
        _print_plan(result, pod)
    if not result.fits:
        raise typer.Exit(1)


def _configured(cfg: Config, model: str | None) -> ModelConfig | None:
    """The configured model planned: the first one, or the one whose id is `model`."""
    if model is None:
        return cfg.models[0] if cfg.models else None
    return next((candidate for candidate in cfg.models if candidate.id == model), None)


def _kuberay_pod(
    cfg: Config, configured: ModelConfig | None, shape: ModelShape, result: CapacityPlan, *,
    explicit_seqs: bool,
) -> PodSize | None:  # fmt: skip
    """The KubeRay worker pod of one replica as planned (`gpucluster render kuberay` sizes it
    so); None on cpu, which the KubeRay manifests do not run. A model that is not configured is
    taken as the platform's only model, with the platform's admission defaults."""
    if result.gpu.is_cpu:
        return None
    model = configured or ModelConfig(accelerator="gpu")
    if explicit_seqs or configured is None:
        model = model.model_copy(update={"max_num_seqs": result.max_num_seqs})
    bounds = AdmissionBounds.of(model)
    direct = cfg.serves_directly if configured else True
    kwargs = model.engine_kwargs
    return worker_pod(
        shape, tp=result.tp, dtype=result.weight_dtype, context_tokens=result.max_model_len,
        ongoing_requests=bounds.ongoing, queued_requests=max(0, bounds.queued) if direct else 0,
        max_body_bytes=cfg.platform.edge.max_body_bytes,
        cpu_offload_gib=float(kwargs.get("cpu_offload_gb") or 0),
        kv_offload_gib=float(kwargs.get("kv_offloading_size") or 0), model=model.id,
    )  # fmt: skip


def _print_pod(pod: PodSize) -> None:
    table = Table(
        title=f"KubeRay worker pod ({pod.group}): {pod.cpu} CPUs, {pod.memory_gib} GiB "
        f"(/dev/shm {pod.shm_gib} GiB included), as `gpucluster render kuberay` sizes it",
        title_justify="left",
    )
    for column in ("term", "amount", "how"):
        table.add_column(column, overflow="fold")
    for term in pod.memory_terms:
        table.add_row(term.name, f"{term.amount:,.2f} GiB", term.how)
    for term in pod.cpu_terms:
        table.add_row(term.name, f"{term.amount:g} CPU", term.how)
    out.print(table)


def _gib(value: float | None) -> str:
    return fmt(None if value is None else value / GiB, "{:,.2f} GiB")


def _rate(value: float | None) -> str:
    return fmt(value, "{:,.0f} tok/s")


def _params(model: ModelShape) -> str:
    """The parameter count; a mixture of experts' activated ones too."""
    text = f"{model.params / 1e9:,.2f} B params"
    if model.experts is None:
        return text
    return f"{text} ({active_params(model) / 1e9:,.2f} B activated per token)"


def _print_plan(result: CapacityPlan, pod: PodSize | None = None) -> None:
    shape, gpu = result.model, result.gpu
    table = Table(title=f"{shape.name} on {gpu.name} x tp {result.tp}", title_justify="left")
    for column in ("quantity", "value", "how"):
        table.add_column(column, overflow="fold")
    bandwidth, flops = result.bandwidth_bytes_per_s, result.flops_per_s
    bandwidth_text = fmt(bandwidth / 1e9 if bandwidth else None, "{:,.0f} GB/s")
    flops_text = fmt(flops / 1e12 if flops else None, "{:,.0f} TFLOP/s")
    attention = (f"{shape.num_layers} layers, {shape.num_attention_heads} heads / "
                 f"{shape.num_kv_heads} KV heads x {shape.head_dim}")  # fmt: skip
    rows = [
        ("model", f"{attention}, {_params(shape)}", shape.source),
        ("device", f"{_gib(result.memory_bytes_per_gpu)}, {bandwidth_text}, {flops_text}",
         gpu.note or "memory: nvidia-smi total; bandwidth, dense bf16 FLOP/s: vendor peak"),
        ("weights / GPU", _gib(result.weight_bytes_per_gpu),
         f"params x {result.weight_dtype} / tp"),
    ]  # fmt: skip
    if gpu.is_cpu:
        rows.append(("KV cache", _gib(result.kv_cache_bytes_per_gpu), "--kv-cache-gib"))
    else:
        rows += [
            ("usable / GPU", _gib(result.usable_bytes_per_gpu),
             f"memory x gpu_memory_utilization {result.gpu_memory_utilization:g}"),
            ("overhead / GPU", _gib(result.overhead_bytes_per_gpu),
             "activations, CUDA graphs, NCCL"),
            ("KV cache / GPU", _gib(result.kv_cache_bytes_per_gpu),
             "usable - weights - overhead"),
        ]  # fmt: skip
    heads = f"{result.kv_heads_per_gpu} KV head(s)/GPU"
    if result.kv_replicated:
        heads += ", replicated"
    blocks = (f"{result.kv_blocks:,} blocks of {result.block_size} "
              f"(vLLM logs {result.vllm_reported_kv_tokens:,})")  # fmt: skip
    sequences = (f"{result.max_sequences_at_max_model_len:,} full-length sequences; "
                 f"max_num_seqs {result.max_num_seqs}")  # fmt: skip
    limit = result.decode_limit
    rows += [
        ("KV bytes / token",
         f"{result.kv_bytes_per_token:,} B ({result.kv_bytes_per_token_per_gpu:,} B/GPU)",
         f"2 x layers x KV heads x head_dim x {result.kv_cache_dtype}; {heads}"),
        ("KV capacity", f"{result.kv_token_capacity:,} tokens", blocks),
        ("concurrency", f"{result.max_concurrency:,.2f}x {result.max_model_len:,} tokens",
         sequences),
        ("decode bound", _rate(result.decode_tokens_per_s),
         f"batch {result.decode_batch} at {result.decode_context_tokens:,} tokens of context"
         + (f", {limit.replace('_', ' ')} bound" if limit else "")
         + f"; one sequence alone {_rate(result.decode_tokens_per_s_single)}"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    out.print(table)
    _print_load(result)
    _print_tp(result)
    if pod is not None:
        _print_pod(pod)
    verdict = "[green]fits[/]" if result.fits else "[bold red]does not fit[/]"
    out.print(f"{verdict}: {result.reason}", highlight=False)
    for note in result.notes:
        out.print(f"[dim]note: {note}[/]", highlight=False)


def _print_load(result: CapacityPlan) -> None:
    if result.load is None:
        return
    load = result.load
    table = Table(title=f"load: {load.rps:g} req/s x ({load.input_tokens} in + "
                  f"{load.output_tokens} out) tokens", title_justify="left")  # fmt: skip
    for column in ("quantity", "value", "how"):
        table.add_column(column, overflow="fold")
    prefill = load.prefill_seconds_per_request
    rows = [
        (
            "sequences / replica",
            f"{load.sequences_per_replica:,}",
            f"limit: {load.concurrency_limit.replace('_', ' ')}",
        ),
        ("decode bound / replica", _rate(load.replica_decode_tokens_per_s), "at that batch"),
        ("decode needed", _rate(load.required_decode_tokens_per_s), "rps x output tokens"),
        (
            "prefill / request",
            "-" if prefill is None else f"{prefill * 1e3:,.1f} ms",
            "2 x params x input tokens / (tp x FLOP/s)",
        ),
    ]
    if load.replicas is not None:
        prefill_part = load.prefill_replica_seconds or 0.0
        replicas = (f"ceil({load.decode_replica_seconds:.2f} decode + {prefill_part:.2f} "
                    f"prefill); {load.binding} binds")  # fmt: skip
        rows += [
            ("replicas", f"{load.replicas} ({load.gpus} GPUs)", replicas),
            ("batch / replica", f"{load.steady_batch_per_replica:,.1f}", "Little's law"),
            ("time / request", f"{load.request_seconds:,.2f} s", "prefill + output x step"),
            ("in flight", f"{load.in_flight_sequences:,.1f}", "rps x time / request"),
            ("KV share of step bytes", f"{load.kv_share_of_step_bytes:.0%}", "at the full batch"),
        ]
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _print_tp(result: CapacityPlan) -> None:
    table = Table(title="tensor-parallel options", title_justify="left")
    columns = ("tp", "fits", "weights/GPU", "KV/GPU", "KV tokens", "max seqs", "decode bound",
               "note")  # fmt: skip
    for column in columns:
        table.add_column(column, overflow="fold")
    for option in result.tp_options:
        if not option.valid:
            table.add_row(str(option.tp), "-", "-", "-", "-", "-", "-", option.reason)
            continue
        table.add_row(
            str(option.tp),
            "yes" if option.fits else "no",
            _gib(option.weight_bytes_per_gpu),
            _gib(option.kv_cache_bytes_per_gpu),
            f"{option.kv_token_capacity:,}",
            f"{option.max_sequences_at_max_model_len:,}",
            _rate(option.decode_tokens_per_s),
            "" if option.fits else option.reason,
        )
    out.print(table)
