"""One live compose stack per test session: the CPU flavour of deploy/compose, through `make compose-up`.

Real Docker engine (started here if none runs, and stopped again only then), real images built
here, the real built-in model; the tests talk to it the way the operator guide does, with
`docker` and `docker compose` run in deploy/compose, and with the official `openai` client.
The stack publishes on ports of its own, so a local-mode platform on the guide's ports does not
collide with it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest

from gpucluster.config import BUILTIN_MODEL_ID

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
API_KEY = "compose-test-key-0123"
PORTS = {
    "NGINX_HTTP_PORT": 18180,
    "RAY_DASHBOARD_PORT": 18365,
    "PROMETHEUS_PORT": 19190,
    "ALERTMANAGER_PORT": 19193,
}


@dataclass(frozen=True)
class ComposeStack:
    env: dict[str, str] = field(repr=False)
    model: str = BUILTIN_MODEL_ID
    api_key: str = API_KEY
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))

    @property
    def base(self) -> str:
        """nginx, published on all interfaces."""
        return f"http://127.0.0.1:{PORTS['NGINX_HTTP_PORT']}"

    @property
    def directory(self) -> Path:
        """deploy/compose, where the operator runs `docker compose`."""
        return COMPOSE_DIR

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{PORTS['PROMETHEUS_PORT']}"

    def run(
        self, *argv: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """A command as the operator types it, in deploy/compose."""
        result = subprocess.run(
            argv,
            cwd=COMPOSE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"{argv}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def shell(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A shell pipeline as the guide writes it (`docker logs ray-serve | grep -i error`)."""
        return self.run("bash", "-o", "pipefail", "-c", command, timeout=timeout, check=False)

    def make(self, target: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-C", str(ROOT), target],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def stack() -> ComposeStack:
    engine_was_running = engine_answers()
    env = {**os.environ, **{k: str(v) for k, v in PORTS.items()}, "GPUCLUSTER_API_KEYS": API_KEY}
    env.pop("COMPOSE_FILE", None)
    compose = ComposeStack(env=env)
    up = compose.make("compose-up")
    if up.returncode != 0:
        compose.make("compose-down", timeout=300)
        pytest.fail(f"make compose-up failed:\n{up.stdout[-4000:]}\n{up.stderr[-6000:]}")
    yield compose
    down = compose.make("compose-down", timeout=300)  # a no-op once the down test ran
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-3000:]
    if not engine_was_running:
        subprocess.run(["bash", str(ROOT / "scripts" / "docker-stop.sh")], timeout=120, check=True)


@pytest.fixture(scope="session")
def openai_client(stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.base}/v1", api_key=stack.api_key, timeout=120, max_retries=0
    )
