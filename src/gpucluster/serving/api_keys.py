"""API keys on the serving side: the platform's KeyRing behind the OpenAI-shaped 401s.

Keys are kept only as SHA-256 digests and never logged; error messages never echo them. The
edge's gatekeeper checks the same ring first; this check is the defence behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gpucluster.config.keys import RECHECK_S, Denial, KeySources, NamedKey
from gpucluster.serving.errors import ApiError

__all__ = ["RECHECK_S", "ApiKeys"]

logger = logging.getLogger("ray.serve")


class ApiKeys:
    """The valid API keys of the platform. No store and no files: authentication is off.

    `files`: raw-key files (`api_keys_file`); `store`: the named key store; `env_files`: the
    file `up` writes GPUCLUSTER_API_KEYS to; `operator_files`: the platform's own key.
    """

    def __init__(
        self,
        files: Sequence[str],
        clock: Callable[[], float] = time.monotonic,
        *,
        store: str | Path | None = None,
        env_files: Sequence[str] = (),
        operator_files: Sequence[str] = (),
    ) -> None:
        sources = KeySources(
            tuple(files),
            None if store is None else str(store),
            tuple(env_files),
            tuple(operator_files),
        )
        self.ring = sources.ring(clock, logger)

    @classmethod
    def of(cls, sources: KeySources) -> ApiKeys:
        """The keys of `sources` (the Serve config's `api_keys` args)."""
        return cls(
            sources.files,
            store=sources.store,
            env_files=sources.env_files,
            operator_files=sources.operator_files,
        )

    @property
    def enabled(self) -> bool:
        return self.ring.enabled

    def check(self, authorization: str | None) -> NamedKey | None:
        """The key `authorization` (`Bearer <key>`) carries, None when authentication is off
        and it carries none; a 401 ApiError when authentication is on and no valid key."""
        result = self.ring.authenticate(authorization)
        if isinstance(result, Denial):
            raise ApiError(401, result.message, code=result.code)
        return result
