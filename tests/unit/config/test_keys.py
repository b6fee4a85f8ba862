"""Named keys: the store (digests only, atomic 0600 writes), the ring (hot reload, legacy
names, constant-time lookup, when authentication is on) and the effective quota."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat

import pytest

from gpucluster.config import load_config
from gpucluster.config.keys import (
    INVALID_KEY,
    MALFORMED_KEY,
    MISSING_KEY,
    OPERATOR_KEY_NAME,
    RECHECK_S,
    KeyRing,
    KeyStore,
    KeyStoreError,
    NamedKey,
    Quota,
    UnknownKeyError,
    effective_quota,
    key_digest,
    raw_key,
    store_path,
)
from gpucluster.config.loader import ConfigError


@pytest.fixture
def store(tmp_path) -> KeyStore:
    return KeyStore(tmp_path / "state" / "keys.json")


def test_digest_is_sha256_hex():
    assert key_digest("k") == hashlib.sha256(b"k").hexdigest()


def test_create_returns_the_key_once_and_stores_only_its_digest(store):
    key = store.create("team-a", Quota(requests_per_minute=10))
    assert key.startswith("gpc-") and len(key) == 4 + 43  # 32 bytes, URL-safe base64
    text = store.path.read_text()
    assert key not in text and key[4:] not in text
    data = json.loads(text)
    assert data["version"] == 1
    [entry] = data["keys"]
    assert entry["name"] == "team-a" and entry["sha256"] == key_digest(key)
    assert entry["created"].endswith("Z")
    assert entry["quota"] == {
        "requests_per_minute": 10,
        "tokens_per_minute": None,
        "concurrent_requests": None,
    }
    [named] = store.list()
    assert (named.name, named.digest, named.origin) == ("team-a", key_digest(key), "store")
    assert named.quota == Quota(requests_per_minute=10)


def test_store_is_private_and_replaced_atomically(store):
    store.create("one")
    first_inode = store.path.stat().st_ino
    # a leftover temporary file readable by others must not pass its mode on
    tmp = store.path.with_name(".keys.json.tmp")
    tmp.write_text("junk")
    os.chmod(tmp, 0o644)
    store.create("two")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.path.stat().st_ino != first_inode  # a new file renamed over the old one
    assert not tmp.exists()
    assert [k.name for k in store.list()] == ["one", "two"]


def test_two_keys_are_never_the_same(store):
    assert store.create("a") != store.create("b")


def test_existing_name_is_refused(store):
    store.create("team-a")
    with pytest.raises(KeyStoreError, match="exists"):
        store.create("team-a")


@pytest.mark.parametrize(
    "name", ["", "Team-A", "-lead", ".hidden", "a b", "x" * 64, "naïve", "a/b", 'a"b']
)
def test_names_rule(store, name):
    with pytest.raises(KeyStoreError, match="not a valid key name"):
        store.create(name)


@pytest.mark.parametrize("name", ["a", "0", "team.a_b-c", "x" * 63])
def test_valid_names(store, name):
    store.create(name)
    assert [k.name for k in store.list()] == [name]


@pytest.mark.parametrize("name", [OPERATOR_KEY_NAME, "key-0123abcd"])
def test_names_the_platform_gives_are_reserved(store, name):
    with pytest.raises(KeyStoreError, match="platform gives"):
        store.create(name)


def test_revoke(store):
    store.create("a")
    store.create("b")
    assert store.revoke("a").name == "a"
    assert [k.name for k in store.list()] == ["b"]
    with pytest.raises(UnknownKeyError) as err:
        store.revoke("a")
    assert isinstance(err.value, LookupError)


def test_missing_store_is_empty_and_a_broken_one_an_error(store):
    assert store.list() == []
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"version": 7, "keys": []}')
    with pytest.raises(KeyStoreError, match="version 1"):
        store.list()
    store.path.write_text("not json")
    with pytest.raises(KeyStoreError, match="not JSON"):
        store.list()


def test_legacy_keys_get_stable_names_that_reveal_nothing(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# ops\nfirst-key\nsecond-key  # ci\n")
    env_file = tmp_path / "api-keys.env"
    env_file.write_text("env-key\n")
    ring = KeyRing(None, [keys_file], env_files=[env_file])
    keys = ring.keys()
    names = {k.name: k.origin for k in keys}
    assert names == {
        f"key-{key_digest('first-key')[:8]}": "file",
        f"key-{key_digest('second-key')[:8]}": "file",
        f"key-{key_digest('env-key')[:8]}": "env",
    }
    assert raw_key("first-key", "file").name == f"key-{key_digest('first-key')[:8]}"
    assert all(k.quota == Quota() and k.created is None for k in keys)


def test_a_key_in_two_places_is_one_key(tmp_path, store):
    key = store.create("team-a")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{key}\n{key}\n")
    ring = KeyRing(store.path, [keys_file])
    assert ring.names() == {"team-a"}


def test_ring_reloads_the_store_within_the_recheck_interval(store, clock):
    ring = KeyRing(store.path, [], clock)
    assert not ring.enabled and ring.lookup("anything") is None
    key = store.create("team-a")
    assert ring.lookup(key) is None  # not looked at again yet
    clock.now += RECHECK_S
    assert ring.enabled and ring.lookup(key).name == "team-a"
    store.revoke("team-a")
    clock.now += RECHECK_S
    assert ring.lookup(key) is None
    assert ring.enabled  # the store still exists: an empty store refuses everyone


def test_ring_reloads_a_rewritten_raw_key_file(tmp_path, clock):
    keys_file = tmp_path / "keys"
    keys_file.write_text("one\n")
    ring = KeyRing(None, [keys_file], clock)
    assert ring.lookup("one") is not None
    keys_file.write_text("two\n")
    os.utime(keys_file, ns=(1, 1))  # another mtime even within the same clock tick
    clock.now += RECHECK_S
    assert ring.lookup("one") is None and ring.lookup("two") is not None


def test_when_authentication_is_on(tmp_path):
    operator = tmp_path / "operator-key"
    operator.write_text("op\n")
    only_operator = KeyRing(tmp_path / "no-store.json", [], operator_files=[operator])
    assert not only_operator.enabled
    assert only_operator.lookup("op").name == OPERATOR_KEY_NAME
    assert only_operator.lookup("op").origin == "operator"
    # a configured file that cannot be read refuses everyone rather than opening the API
    assert KeyRing(None, [tmp_path / "missing"]).enabled
    assert KeyRing(None, [], env_files=[tmp_path / "missing"]).enabled


def test_authenticate_every_spelling_of_one_key(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("k\n")
    ring = KeyRing(None, [keys_file])
    names = {ring.authenticate(h).name for h in ("Bearer k", "bearer  k", "BEARER k ", "Bearer\tk")}
    assert names == {f"key-{key_digest('k')[:8]}"}
    assert ring.authenticate(None) == MISSING_KEY
    assert ring.authenticate("") == MISSING_KEY
    assert ring.authenticate("Basic abc") == MALFORMED_KEY
    assert ring.authenticate("Bearer") == MALFORMED_KEY
    assert ring.authenticate("Bearer wrong") == INVALID_KEY
    assert KeyRing(None, []).authenticate("Bearer wrong") is None  # off: no denial


def test_lookup_compares_every_digest_in_constant_time(tmp_path, monkeypatch):
    keys_file = tmp_path / "keys"
    keys_file.write_text("first\nsecond\nthird\n")
    ring = KeyRing(None, [keys_file])
    ring.keys()  # loaded before counting
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert ring.lookup("first").name == f"key-{key_digest('first')[:8]}"  # matches the first...
    assert len(calls) == 3  # ...and still compares against every key
    assert all(a == key_digest("first").encode() for a, _ in calls)  # digests, never the key


def test_effective_quota_precedence(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        "platform:\n  security:\n"
        "    default_quota: {requests_per_minute: 100, tokens_per_minute: 1000}\n"
        "    quotas:\n      team-a: {tokens_per_minute: 50}\n"
    )
    security = load_config(config_file, env={}).platform.security
    team_a = NamedKey("team-a", "0", quota=Quota(requests_per_minute=5, tokens_per_minute=500))
    assert effective_quota(team_a, security) == Quota(5, 50, None)  # per limit: config, stored
    assert effective_quota(raw_key("x", "file"), security) == Quota(100, 1000, None)
    operator = raw_key("op", "operator")
    assert effective_quota(operator, security) == Quota()


@pytest.mark.parametrize(
    ("security", "says"),
    [
        ("quotas: {Team-A: {}}", "security.quotas: not key names: Team-A"),
        ("quotas: {b: {requests_per_minute: 0}}", "quotas.b.requests_per_minute: Input should"),
        ("default_quota: {tokens_per_minute: -1}", "default_quota.tokens_per_minute"),
        ("trusted_proxies: [10.0.0.0/8, nowhere]", "'nowhere' is not an IP address or CIDR"),
        ("real_ip_header: 'X Bad'", "real_ip_header: must be an HTTP header name"),
    ],
)
def test_quota_and_proxy_settings_are_validated(tmp_path, security, says):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"platform:\n  security:\n    {security}\n")
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(config_file, env={})


def test_trusted_proxies_take_addresses_and_networks(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        "platform:\n  security:\n    trusted_proxies: [10.0.0.0/8, '::1', 192.0.2.7]\n"
    )
    assert len(load_config(config_file, env={}).platform.security.trusted_proxies) == 3


def test_store_path_and_gatekeeper_port(tmp_path):
    config = load_config(None, env={"GPUCLUSTER_STATE_DIR": str(tmp_path)})
    assert store_path(config) == tmp_path / "keys.json"
    assert config.platform.ports.gatekeeper == 19095
    config_file = tmp_path / "c.yaml"
    config_file.write_text("platform:\n  security:\n    keys_file: ~/k.json\n")
    assert store_path(load_config(config_file, env={})).is_absolute()
