"""This host's GPUs from `nvidia-smi`: one probe for join, the fit check, health and diagnose.

A stand-in `nvidia-smi` on PATH answers as the real one does for its CSV query.
"""

from __future__ import annotations

import pytest

from gpucluster.config import Config
from gpucluster.ops import health
from gpucluster.ops.target import Target
from gpucluster.runtime.gpus import local_gpu_count, local_gpus, nvidia_smi_installed
from gpucluster.runtime.state import StateDir

TWO_L4 = "NVIDIA L4, 23034\nNVIDIA L4, 23034\n"


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """Put an `nvidia-smi` printing `listing` (and exiting `code`) first on PATH."""

    def install(listing: str, code: int = 0) -> None:
        script = tmp_path / "nvidia-smi"
        script.write_text(f"#!/bin/sh\nprintf '%s' '{listing}'\nexit {code}\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))

    return install


def gpu_target(tmp_path) -> Target:
    config = Config(models=[{"accelerator": "gpu"}])
    return Target(config, StateDir(tmp_path / "state"), None, False, None, [])


def test_the_gpus_nvidia_smi_lists_with_their_memory(fake_smi, tmp_path):
    fake_smi(TWO_L4)
    assert nvidia_smi_installed()
    assert local_gpus() == [("NVIDIA L4", 23034), ("NVIDIA L4", 23034)]
    assert local_gpu_count() == 2
    assert health.check_gpu(gpu_target(tmp_path)) == "2 GPU(s)"


def test_a_failing_nvidia_smi_is_no_gpu(fake_smi, tmp_path):
    fake_smi("NVIDIA-SMI has failed because it could not communicate with the driver", code=9)
    assert local_gpus() == []
    with pytest.raises(health.CheckFailed, match="nvidia-smi sees no GPU"):
        health.check_gpu(gpu_target(tmp_path))


def test_without_the_driver_there_is_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi there
    assert not nvidia_smi_installed() and local_gpus() == [] and local_gpu_count() == 0
    with pytest.raises(health.CheckFailed, match="nvidia-smi is not installed"):
        health.check_gpu(gpu_target(tmp_path))
    assert health.check_gpu(Target(Config(), None, None, False, None, [])).startswith("not used")
