"""What the operator tools talk to: the running platform's endpoints, credentials and config.

Read from the state dir's record that `gpucluster up` wrote (or, when nothing runs, derived from
the configuration), so that every tool sees the platform over HTTP like an operator does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpucluster.config import Config, env_api_keys
from gpucluster.config.keys import first_key
from gpucluster.runtime.state import Endpoints, StateDir, endpoints_for


@dataclass(frozen=True)
class Target:
    """The platform as the operator tools see it."""

    config: Config
    state: StateDir
    endpoints: Endpoints
    running: bool  # `up` left a record (the processes may still have died)
    api_key: str | None
    models: list[str]

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def ray_headers(self) -> dict[str, str]:
        """Ray's dashboard API wants the platform's Ray token."""
        try:
            token = self.state.ray_token_file.read_text(encoding="utf-8").strip()
        except OSError:
            return {}
        return {"Authorization": f"Bearer {token}"}


def load_target(config: Config) -> Target:
    """The platform described by `config`'s state dir."""
    state = StateDir(config.platform.state_dir)
    record = state.read_record()
    endpoints = record.endpoints if record else endpoints_for(config)
    # the platform's own key first: it passes every tenant's quota
    key = first_key(state.operator_key_file)
    if key is None and record:
        key = next((k for f in record.api_key_files if (k := first_key(Path(f)))), None)
    key = key or next(iter(env_api_keys()), None)
    models = record.models if record else [m.id for m in config.models]
    return Target(config, state, endpoints, record is not None, key, models)
