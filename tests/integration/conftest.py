"""One live local platform per test session: real Ray, real vLLM (CPU build), the real default model.

The platform is started through the real CLI (`gpucluster up --json`) into a private state dir,
with API keys from a keys file (several keys, so that rate limiting one does not slow the
others), and stopped at the end; tests marked `stops_platform` run last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest

from gpucluster.config import BUILTIN_MODEL_ID

CLI = [sys.executable, "-m", "gpucluster"]
UP_TIMEOUT_S = 1200
KEYS = {
    "main": "test-key-main-0123",
    "limits": "test-key-limits-4567",
    "fuzz": "test-key-fuzz-89ab",
}
RATE_LIMIT_RPS = 50
RATE_LIMIT_BURST = 100
MAX_NUM_SEQS = 4  # small, so that tests can make requests queue


@dataclass(frozen=True)
class LivePlatform:
    env: dict[str, str] = field(repr=False)
    endpoints: dict[str, str]
    model: str
    up_seconds: float
    keys_file: Path
    state_dir: Path
    dashboard_user: str
    dashboard_password: str
    up_phases: dict[str, float] = field(default_factory=dict)
    max_num_seqs: int = MAX_NUM_SEQS

    @property
    def keys(self) -> dict[str, str]:
        """API keys by use: `main` for most tests, others where a test spends its budget."""
        return dict(KEYS)

    @property
    def api_key(self) -> str:
        return KEYS["main"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def api(self) -> str:
        return self.endpoints["openai_api"]

    @property
    def base(self) -> str:
        """The nginx proxy."""
        return self.api.removesuffix("/v1")

    @property
    def prometheus(self) -> str:
        return self.endpoints["prometheus"]

    @property
    def alertmanager(self) -> str:
        return self.endpoints["alertmanager"]

    @property
    def serve(self) -> str:
        """Ray Serve directly, bypassing nginx."""
        return self.endpoints["serve"]

    def cli(
        self, *args: str, timeout: float = UP_TIMEOUT_S, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `gpucluster ARGS` against this platform, `input` (if any) on its stdin."""
        return subprocess.run(
            [*CLI, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )


def pytest_collection_modifyitems(items):
    """Tests that need a quiet platform run first, tests that saturate the engine after the
    others, and those stopping it last."""

    def phase(item) -> int:
        if item.get_closest_marker("stops_platform"):
            return 2
        if item.get_closest_marker("quiet_platform"):
            return -1
        return 1 if item.get_closest_marker("saturates") else 0

    items.sort(key=phase)


def pytest_configure(config):
    config.addinivalue_line("markers", "stops_platform: stops the live platform; runs last")
    config.addinivalue_line("markers", "saturates: loads the engine until requests queue")
    config.addinivalue_line(
        "markers",
        "quiet_platform: needs Prometheus' 5-minute windows free of other tests' "
        "requests; runs first",
    )


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> LivePlatform:
    root = tmp_path_factory.mktemp("platform")
    keys_file = root / "api-keys"
    keys_file.write_text("# test keys\n" + "\n".join(KEYS.values()) + "\n")
    config = root / "platform.yaml"
    config.write_text(
        "models:\n"
        f"  - id: {BUILTIN_MODEL_ID}\n"
        f"    max_num_seqs: {MAX_NUM_SEQS}\n"
        "    replicas: {min: 1, max: 2}\n"
        "    autoscaling: {upscale_delay_s: 10, downscale_delay_s: 20}\n"
        "platform:\n"
        f"  state_dir: {root / 'state'}\n"
        "  security:\n"
        f"    api_keys_file: {keys_file}\n"
        "  edge:\n"
        f"    rate_limit_rps: {RATE_LIMIT_RPS}\n"
        f"    rate_limit_burst: {RATE_LIMIT_BURST}\n"
    )
    state_dir = root / "state"
    env = {**os.environ, "GPUCLUSTER_CONFIG": str(config)}
    for var in (
        "GPUCLUSTER_STATE_DIR",
        "GPUCLUSTER_API_KEYS",
        "NGINX_HTTP_PORT",
        "RAY_DASHBOARD_PORT",
    ):
        env.pop(var, None)
    result = subprocess.run(
        [*CLI, "up", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"gpucluster up failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
        )
    data = json.loads(result.stdout)
    platform = LivePlatform(
        env=env,
        endpoints=data["endpoints"],
        model=BUILTIN_MODEL_ID,
        up_seconds=data["seconds"],
        keys_file=keys_file,
        state_dir=state_dir,
        dashboard_user=data["dashboard_user"],
        dashboard_password=data["dashboard_password"],
        up_phases=data["phases"],
    )
    yield platform
    down = platform.cli("down", "--json", timeout=300)
    for log in (state_dir / "logs").glob("*.log"):
        (artifacts_dir() / log.name).write_text(log.read_text(errors="replace"))
    assert down.returncode == 0, down.stdout + down.stderr[-3000:]
    assert json.loads(down.stdout)["leftovers"] == [], down.stdout


def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at afterwards (logs, screenshots)."""
    path = Path(os.environ.get("TEST_ARTIFACTS", "test-artifacts"))
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return artifacts_dir()


@pytest.fixture(scope="session")
def openai_client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.api, api_key=live.api_key, timeout=120, max_retries=0)
