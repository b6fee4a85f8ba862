"""One live local platform per test session: real Ray, real vLLM (CPU build), the real default model.

The platform is started through the real CLI (`gpucluster up --json`) into a private state dir
and stopped at the end; tests marked `stops_platform` run last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpucluster.config import BUILTIN_MODEL_ID

CLI = [sys.executable, "-m", "gpucluster"]
UP_TIMEOUT_S = 1200


@dataclass(frozen=True)
class LivePlatform:
    env: dict[str, str]
    endpoints: dict[str, str]
    model: str
    up_seconds: float

    @property
    def api(self) -> str:
        return self.endpoints["openai_api"]

    @property
    def base(self) -> str:
        return self.api.removesuffix("/v1")

    def cli(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run `gpucluster ARGS` against this platform."""
        return subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )


def pytest_collection_modifyitems(items):
    """Tests that stop the platform run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("stops_platform") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "stops_platform: stops the live platform; runs last")


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> LivePlatform:
    state_dir = tmp_path_factory.mktemp("state")
    env = {**os.environ, "GPUCLUSTER_STATE_DIR": str(state_dir)}
    env.pop("GPUCLUSTER_CONFIG", None)
    result = subprocess.run(
        [*CLI, "up", "--json"], env=env, capture_output=True, text=True, timeout=UP_TIMEOUT_S
    )
    if result.returncode != 0:
        pytest.fail(f"gpucluster up failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}")
    data = json.loads(result.stdout)
    platform = LivePlatform(env, data["endpoints"], BUILTIN_MODEL_ID, data["seconds"])
    yield platform
    platform.cli("down", "--json", timeout=300)
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(exist_ok=True)
    for log in (state_dir / "logs").glob("*.log"):
        (artifacts / log.name).write_text(log.read_text(errors="replace"))
