"""API keys: read from files, re-read when a file changes, compared in constant time.

Keys are kept only as SHA-256 digests and never logged; error messages never echo them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path

from gpucluster.config.keys import parse_keys
from gpucluster.serving.errors import ApiError

logger = logging.getLogger("ray.serve")

RECHECK_S = 1.0


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The valid API keys of the platform. No files: authentication is off."""

    def __init__(self, files: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._files = [Path(f) for f in files]
        self._clock = clock
        self._checked_at = float("-inf")
        self._signature: tuple = ()
        self._digests: list[bytes] = []

    @property
    def enabled(self) -> bool:
        return bool(self._files)

    def check(self, authorization: str | None) -> None:
        """Raise a 401 ApiError unless `authorization` is `Bearer <valid key>`."""
        if not self.enabled:
            return
        scheme, _, key = (authorization or "").partition(" ")
        if not authorization:
            raise ApiError(
                401,
                "Missing API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
            )
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(
                401,
                "Malformed Authorization header. Send the key as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        digest = _digest(key.strip())
        # compare against every key so the time taken does not tell which one nearly matched
        matched = False
        for valid in self._current():
            matched |= hmac.compare_digest(digest, valid)
        if not matched:
            raise ApiError(401, "Invalid API key.", code="invalid_api_key")

    def _current(self) -> list[bytes]:
        now = self._clock()
        if now - self._checked_at >= RECHECK_S:
            self._checked_at = now
            signature = tuple(self._stat(path) for path in self._files)
            if signature != self._signature:
                self._signature = signature
                self._digests = self._load()
        return self._digests

    @staticmethod
    def _stat(path: Path) -> tuple:
        try:
            stat = path.stat()
        except OSError:
            return (str(path), None)
        return (str(path), stat.st_mtime_ns, stat.st_size)

    def _load(self) -> list[bytes]:
        digests = []
        for path in self._files:
            try:
                keys = parse_keys(path.read_text(encoding="utf-8"))
            except OSError as exc:
                logger.error("ERROR: cannot read API keys file %s: %s", path, exc.strerror)
                continue
            digests.extend(_digest(key) for key in keys)
        logger.info("API keys loaded: %d key(s) from %d file(s)", len(digests), len(self._files))
        return digests
