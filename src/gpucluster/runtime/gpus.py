"""This host's NVIDIA GPUs, as `nvidia-smi` lists them: one probe for every command that asks.

`gpucluster join` offers them to the cluster (runtime.worker_node), `up` and `config check` fit
the models to them (ops.fit), and `health` and `diagnose` check them (ops.health, ops.diagnose).
"""

from __future__ import annotations

import shutil
import subprocess

NVIDIA_SMI = "nvidia-smi"


def nvidia_smi_installed() -> bool:
    """Whether `nvidia-smi` (the NVIDIA driver's tool) is on PATH."""
    return shutil.which(NVIDIA_SMI) is not None


def local_gpus(timeout_s: float = 30) -> list[tuple[str, int]]:
    """This host's GPUs as `nvidia-smi` reports them: (name, memory in MiB) each; [] without
    the NVIDIA driver, or when it sees no GPU or fails."""
    try:
        listing = subprocess.run(
            [NVIDIA_SMI, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in listing.splitlines():
        name, _, mib = line.rpartition(",")
        if name and mib.strip().isdigit():
            gpus.append((name.strip(), int(mib)))
    return gpus


def local_gpu_count() -> int:
    """GPUs `nvidia-smi` lists here; 0 without the NVIDIA driver."""
    return len(local_gpus())
