"""API keys: the named key store, the legacy raw-key files, and the hot-reloaded ring of both.

The platform never keeps a raw key: the store holds SHA-256 digests, and keys from raw-key files
(`platform.security.api_keys_file`, `GPUCLUSTER_API_KEYS` written by `up`, the operator key) are
digested as they are read. Every key has a name, the only thing logs, metrics and the usage log
ever show: store keys are named by `gpucluster keys create`; a raw key gets `key-<8 hex of its
digest>` (stable, and it reveals nothing), the operator key `gpucluster-operator`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gpucluster.config.schema import KEY_NAME_PATTERN, Config, QuotaConfig, SecurityConfig
from gpucluster.errors import GpuClusterError, InputError

KEY_PREFIX = "gpc-"
OPERATOR_KEY_NAME = "gpucluster-operator"
STORE_VERSION = 1
STORE_FILENAME = "keys.json"
RECHECK_S = 1.0  # how often the ring looks at its files: a revoked key stops within this

# Names the platform gives keys itself; `keys create` refuses them so that a name means one key.
_GENERATED_NAME = re.compile(r"^key-[0-9a-f]{8}$")

Origin = Literal["store", "file", "env", "operator"]


def parse_keys(text: str) -> list[str]:
    """Keys in the text of a raw-key file: one a line; blank lines and `#` comments skipped."""
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            keys.append(line)
    return keys


def first_key(path: Path) -> str | None:
    """The first key of a raw-key file, or None when it has none or cannot be read."""
    try:
        keys = parse_keys(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    return keys[0] if keys else None


def key_digest(key: str) -> str:
    """The SHA-256 hex digest of a raw key: what the store keeps and the ring compares."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key: `gpc-` and 32 random bytes, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, whatever the scheme's case and the
    spaces around it (so every spelling of one key is one key); None when malformed."""
    parts = (authorization or "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1].strip() or None


def store_path(config: Config) -> Path:
    """The named key store: `platform.security.keys_file`, else `<state_dir>/keys.json`."""
    return config.platform.security.keys_file or config.platform.state_dir / STORE_FILENAME


@dataclass(frozen=True)
class Quota:
    """Limits on one key; None: unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @classmethod
    def from_config(cls, quota: QuotaConfig | None) -> Quota:
        return cls(**quota.model_dump()) if quota is not None else cls()

    def over(self, *fallbacks: Quota) -> Quota:
        """This quota, each limit it leaves unset taken from the first fallback that sets it."""
        merged = {}
        for name, value in self.as_dict().items():
            for fallback in fallbacks:
                if value is not None:
                    break
                value = getattr(fallback, name)
            merged[name] = value
        return Quota(**merged)


@dataclass(frozen=True)
class NamedKey:
    """A valid key as the platform knows it: never the key itself, only its digest."""

    name: str
    digest: str
    created: str | None = None
    quota: Quota = field(default_factory=Quota)
    origin: Origin = "store"


def raw_key(key: str, origin: Origin) -> NamedKey:
    """A key from a raw-key file or the environment, with its generated name."""
    digest = key_digest(key)
    name = OPERATOR_KEY_NAME if origin == "operator" else f"key-{digest[:8]}"
    return NamedKey(name=name, digest=digest, origin=origin)


def effective_quota(key: NamedKey, security: SecurityConfig) -> Quota:
    """A key's quota: `security.quotas[name]` over its stored quota over `default_quota`.

    The operator key has none: the platform's own probes must not be throttled by tenants' limits.
    """
    if key.origin == "operator":
        return Quota()
    configured = Quota.from_config(security.quotas.get(key.name))
    return configured.over(key.quota, Quota.from_config(security.default_quota))


class KeyStoreError(GpuClusterError, ValueError):
    """The store cannot do what was asked; the message says why."""


class UnknownKeyError(KeyStoreError, LookupError):
    """No key of that name in the store."""

    next_step = "`gpucluster keys list` shows the names"


class BadKeyName(KeyStoreError, InputError):
    """A name a new key cannot have; the message says the rule (a usage error: exit 2)."""


def check_name(name: str) -> str:
    """`name` if it can name a new key, else BadKeyName saying why."""
    if not KEY_NAME_PATTERN.match(name):
        raise BadKeyName(
            f"{name!r} is not a valid key name: use lower-case letters, digits and . _ -, "
            "starting with a letter or digit, at most 63 characters"
        )
    if name == OPERATOR_KEY_NAME or _GENERATED_NAME.match(name):
        raise BadKeyName(f"{name!r} is a name the platform gives keys itself; choose another")
    return name


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyStore:
    """The named key store: `{"version": 1, "keys": [{"name", "sha256", "created", "quota"}]}`,
    written atomically, readable by its owner only."""

    def __init__(self, path: Path, now: Callable[[], str] = _utc_now) -> None:
        self.path = path
        self._now = now

    def list(self) -> list[NamedKey]:
        """The stored keys (none when the store does not exist yet)."""
        return [self._named(entry) for entry in self._read()]

    def create(self, name: str, quota: Quota | None = None) -> str:
        """Store a new key named `name`; returns the raw key, which is not kept anywhere."""
        check_name(name)
        with self._locked():
            entries = self._read()
            if any(entry["name"] == name for entry in entries):
                raise KeyStoreError(f"a key named {name!r} exists; revoke it first or pick another")
            key = new_key()
            entries.append(
                {
                    "name": name,
                    "sha256": key_digest(key),
                    "created": self._now(),
                    "quota": (quota or Quota()).as_dict(),
                }
            )
            self._write(entries)
        return key

    def revoke(self, name: str) -> NamedKey:
        """Remove the key named `name`; returns what it was. UnknownKeyError when there is none."""
        with self._locked():
            entries = self._read()
            kept = [entry for entry in entries if entry["name"] != name]
            if len(kept) == len(entries):
                raise UnknownKeyError(f"no key named {name!r} in {self.path}")
            self._write(kept)
        return next(self._named(e) for e in entries if e["name"] == name)

    def _read(self) -> list[dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyStoreError(f"cannot read the key store {self.path}: {exc.strerror}") from None
        except ValueError:
            raise KeyStoreError(f"the key store {self.path} is not JSON") from None
        if not isinstance(data, dict) or data.get("version") != STORE_VERSION:
            raise KeyStoreError(f"the key store {self.path} is not a version {STORE_VERSION} store")
        return list(data.get("keys", []))

    def _write(self, entries: list[dict]) -> None:
        text = json.dumps({"version": STORE_VERSION, "keys": entries}, indent=2) + "\n"
        write_private_file(self.path, text)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise read-modify-write between concurrent `keys` commands."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _named(self, entry: dict) -> NamedKey:
        try:
            return NamedKey(
                name=entry["name"],
                digest=entry["sha256"],
                created=entry.get("created"),
                quota=Quota(**(entry.get("quota") or {})),
                origin="store",
            )
        except (KeyError, TypeError):
            raise KeyStoreError(f"the key store {self.path} has a malformed entry") from None


@dataclass(frozen=True)
class KeySources:
    """Where a platform's keys are, as the replicas and the gatekeeper both read them: raw-key
    files (`api_keys_file`), the named key store, the file `up` writes GPUCLUSTER_API_KEYS to,
    and the platform's own key."""

    files: tuple[str, ...] = ()
    store: str | None = None
    env_files: tuple[str, ...] = ()
    operator_files: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A plain dict for the Serve config's application args."""
        return {
            "files": list(self.files),
            "store": self.store,
            "env_files": list(self.env_files),
            "operator_files": list(self.operator_files),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeySources:
        return cls(
            tuple(data.get("files", ())),
            data.get("store"),
            tuple(data.get("env_files", ())),
            tuple(data.get("operator_files", ())),
        )

    def ring(
        self, clock: Callable[[], float] = time.monotonic, logger: logging.Logger | None = None
    ) -> KeyRing:
        """A KeyRing over these sources (a file named twice is read once)."""
        return KeyRing(
            Path(self.store) if self.store is not None else None,
            list(dict.fromkeys(Path(f).absolute() for f in self.files)),
            clock,
            env_files=[Path(f) for f in self.env_files],
            operator_files=[Path(f) for f in self.operator_files],
            logger=logger,
        )


def write_private_file(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (readers see the old or the new one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an older tmp file may have had other bits
        handle.write(text)
    tmp.replace(path)


@dataclass(frozen=True)
class Denial:
    """Why a request has no valid key: an OpenAI error code and a message safe to show."""

    code: Literal["missing_api_key", "invalid_api_key"]
    message: str


MISSING_KEY = Denial(
    "missing_api_key", "Missing API key. Send it as 'Authorization: Bearer <key>'."
)
MALFORMED_KEY = Denial(
    "invalid_api_key",
    "Malformed Authorization header. Send the key as 'Authorization: Bearer <key>'.",
)
INVALID_KEY = Denial("invalid_api_key", "Invalid API key.")


class KeyRing:
    """Every valid key, re-read when a file changes (looked at every RECHECK_S at most).

    `store`: the named key store; it turns authentication on once it exists. `key_files`
    (`api_keys_file`) and `env_files` (the file `up` writes GPUCLUSTER_API_KEYS to) turn it on
    when configured, even unreadable: a lost file refuses everyone rather than opening the API.
    `operator_files` hold the platform's own key, which never turns authentication on.
    """

    def __init__(
        self,
        store: Path | None,
        key_files: Sequence[Path],
        clock: Callable[[], float] = time.monotonic,
        *,
        env_files: Sequence[Path] = (),
        operator_files: Sequence[Path] = (),
        logger: logging.Logger | None = None,
    ) -> None:
        self._store = store
        self._sources: list[tuple[Path, Origin]] = [
            *((Path(p), "file") for p in key_files),
            *((Path(p), "env") for p in env_files),
            *((Path(p), "operator") for p in operator_files),
        ]
        self._clock = clock
        self._log = logger or logging.getLogger("gpucluster.keys")
        self._checked_at = float("-inf")
        self._signature: tuple = ()
        self._keys: list[NamedKey] = []
        self._enabled = False

    @property
    def enabled(self) -> bool:
        """Whether /v1 needs a valid key."""
        self._refresh()
        return self._enabled

    def keys(self) -> list[NamedKey]:
        """The valid keys: store first, then raw-key files, env, operator."""
        self._refresh()
        return list(self._keys)

    def names(self) -> set[str]:
        """The names of the valid keys."""
        return {key.name for key in self.keys()}

    def lookup(self, key: str) -> NamedKey | None:
        """The named key whose digest matches `key`, compared in constant time."""
        digest = key_digest(key).encode("ascii")
        found = None
        # compare against every digest, without stopping at a match, so that the time taken
        # does not tell which key nearly matched or where it stands
        for named in self.keys():
            if hmac.compare_digest(digest, named.digest.encode("ascii")) and found is None:
                found = named
        return found

    def authenticate(self, authorization: str | None) -> NamedKey | Denial | None:
        """The key an `Authorization` header carries; else a Denial when authentication is
        on, None when it is off (the request goes on without a key)."""
        token = bearer_token(authorization)
        named = self.lookup(token) if token else None
        if named is not None:
            return named
        if not self.enabled:
            return None
        if not authorization:
            return MISSING_KEY
        return INVALID_KEY if token else MALFORMED_KEY

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked_at < RECHECK_S:
            return
        self._checked_at = now
        paths = [self._store, *(path for path, _ in self._sources)]
        signature = tuple(_stat(path) for path in paths)
        if signature != self._signature:
            self._signature = signature
            self._keys = self._load()
            store_exists = self._store is not None and signature[0][1] is not None
            self._enabled = store_exists or any(o != "operator" for _, o in self._sources)

    def _load(self) -> list[NamedKey]:
        keys: list[NamedKey] = []
        if self._store is not None:
            try:
                keys.extend(KeyStore(self._store).list())
            except KeyStoreError as exc:
                self._log.error("ERROR: %s; its keys are refused until it is fixed", exc)
        for path, origin in self._sources:
            try:
                raw = parse_keys(path.read_text(encoding="utf-8"))
            except OSError as exc:
                self._log.error("ERROR: cannot read API keys file %s: %s", path, exc.strerror)
                continue
            keys.extend(raw_key(key, origin) for key in raw)
        # one key listed twice (two files, or a file and the store) is one key: the first
        first: dict[str, NamedKey] = {}
        for key in keys:
            first.setdefault(key.digest, key)
        unique = list(first.values())
        self._log.info(
            "API keys loaded: %d key(s) from %d file(s)",
            len(unique),
            len(self._sources) + (self._store is not None),
        )
        return unique


def _stat(path: Path | None) -> tuple:
    if path is None:
        return (None, None)
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), stat.st_mtime_ns, stat.st_size)
