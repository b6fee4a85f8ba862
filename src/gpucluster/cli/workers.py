"""`gpucluster join` and `gpucluster leave`: this host as a Ray worker node of a platform's
cluster (its head started with `gpucluster up --head`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

import typer

from gpucluster.cli.common import ConfigOption, JsonOption, emit, out
from gpucluster.config import PortsConfig, load_config


def join(
    head: Annotated[
        str,
        typer.Argument(
            help="The head's Ray address, HOST:PORT (its platform.ports.ray_gcs, "
            f"{PortsConfig.model_fields['ray_gcs'].default} by default)."
        ),
    ],
    token_file: Annotated[
        Path | None,
        typer.Option(help="A copy of the head's Ray token file (default: this host's own)."),
    ] = None,
    num_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs to offer (default: this host's cores).")
    ] = None,
    num_gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs to offer (default: those nvidia-smi lists).")
    ] = None,
    node_ip: Annotated[
        str | None, typer.Option(help="This node's address (default: the one facing the head).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Join this host to a platform's Ray cluster as a worker node; replicas may then run here."""
    from gpucluster.runtime.gpus import local_gpu_count
    from gpucluster.runtime.state import StateDir
    from gpucluster.runtime.worker_node import join as start_worker

    cfg = load_config(config)
    token = token_file or StateDir(cfg.platform.state_dir).ray_token_file
    cpus = num_cpus or os.cpu_count() or 1
    gpus = local_gpu_count() if num_gpus is None else num_gpus
    result = start_worker(  # JoinError: exit 1
        cfg, head, num_cpus=cpus, num_gpus=gpus, token_file=token, node_ip=node_ip
    )
    if as_json:
        emit({"ok": True, **dataclasses.asdict(result)})
        return
    out.print(
        f"[green]Joined[/] {result.head} as {result.node_ip}: {result.num_cpus} CPUs, "
        f"{result.num_gpus} GPUs; metrics on :{result.metrics_port}. "
        "`gpucluster leave` stops this node.",
        highlight=False,
    )


def leave(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Stop this host's worker node; the head moves its replicas elsewhere."""
    from gpucluster.runtime.worker_node import leave as stop_worker

    stopped = stop_worker(load_config(config))
    if as_json:
        emit({"ok": True, "stopped": stopped})
    elif stopped:
        out.print(f"Worker node stopped ({len(stopped)} processes).")
    else:
        out.print("No worker node runs on this host.")
