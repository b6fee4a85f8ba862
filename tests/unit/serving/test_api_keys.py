"""API keys: files re-read on change, Bearer parsing, 401s that never echo the key."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient

from gpucluster.config.keys import KeyStore
from gpucluster.serving.api_app import build_fastapi_app
from gpucluster.serving.api_keys import RECHECK_S, ApiKeys
from gpucluster.serving.errors import ApiError


def test_no_files_means_no_authentication():
    ApiKeys([]).check(None)


def refused(keys: ApiKeys, authorization: str) -> int:
    """The HTTP status `keys` refuses `authorization` with (fails if it lets it through)."""
    with pytest.raises(ApiError) as err:
        keys.check(authorization)
    return err.value.status


def test_keys_file_with_comments_and_rotation(tmp_path, clock):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# operators\nkey-one\n\n  key-two  # ci\n")
    keys = ApiKeys([str(keys_file)], clock=clock)
    keys.check("Bearer key-one")
    keys.check("bearer key-two")
    assert refused(keys, "Bearer wrong-key") == 401
    assert refused(keys, "Bearer key-three") == 401  # not a key until the rotation
    for comment in ("operators", "# operators", "ci", "# ci", "key-two  # ci"):
        assert refused(keys, f"Bearer {comment}") == 401, comment
    keys_file.write_text("key-three\n")
    os.utime(keys_file, ns=(1, 1))  # a different mtime even within the same clock tick
    clock.now += RECHECK_S
    keys.check("Bearer key-three")
    assert refused(keys, "Bearer key-one") == 401
    assert refused(keys, "Bearer key-two") == 401


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Basic abc", "invalid_api_key"),
        ("Bearer wrong-key", "invalid_api_key"),
    ],
)
def test_refusals_say_why_without_echoing_the_key(tmp_path, header, code):
    keys_file = tmp_path / "keys"
    keys_file.write_text("right-key\n")
    with pytest.raises(ApiError) as err:
        ApiKeys([str(keys_file)]).check(header)
    assert err.value.code == code
    assert "wrong-key" not in err.value.message and "right-key" not in err.value.message


def test_unreadable_keys_file_refuses_everything(tmp_path):
    with pytest.raises(ApiError):
        ApiKeys([str(tmp_path / "missing")]).check("Bearer anything")


def test_middleware_guards_v1_before_the_body_is_read(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("k\n")
    app = build_fastapi_app(ApiKeys([str(keys_file)]))

    @app.post("/v1/x")
    async def x(body: dict) -> dict:
        return body

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    client = TestClient(app)
    refused = client.post(
        "/v1/x", content=b"not json", headers={"content-type": "application/json"}
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "missing_api_key"
    assert client.post("/v1/x", json={"a": 1}, headers={"Authorization": "Bearer k"}).json() == {
        "a": 1
    }
    assert client.get("/health").status_code == 200


def test_named_keys_from_the_store_and_the_key_matched(tmp_path, clock):
    store = KeyStore(tmp_path / "keys.json")
    operator = tmp_path / "operator-key"
    operator.write_text("op\n")
    keys = ApiKeys([], clock=clock, store=store.path, operator_files=[str(operator)])
    assert not keys.enabled  # the operator key alone leaves the API open
    assert keys.check(None) is None
    assert keys.check("Bearer op").name == "gpucluster-operator"
    key = store.create("team-a")
    clock.now += RECHECK_S
    assert keys.enabled
    assert keys.check(f"bearer  {key}").name == "team-a"
    with pytest.raises(ApiError) as err:
        keys.check(None)
    assert err.value.code == "missing_api_key"
