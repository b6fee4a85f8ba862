"""`gpucluster pull` and `gpucluster models`: through a fake hub, as an operator runs them.

The resume test runs the real command in a subprocess and kills it with SIGKILL midway, as a
lost connection or a reboot would; the rest use typer's runner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub, model_repo_files
from typer.testing import CliRunner

from gpucluster.cli.main import app
from gpucluster.models import HubClient, prepare_model
from gpucluster.models.hub_errors import ChecksumError

SRC = Path(__file__).resolve().parents[3] / "src"
CHUNK = 10 * 2**20  # huggingface_hub's http_get writes what arrives in chunks of this size


@pytest.fixture
def hub(monkeypatch):
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "GPUCLUSTER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    with FakeHub() as fake:
        fake.add_repo("org/tiny", model_repo_files())
        yield fake


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GPUCLUSTER_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "cache"


def cli(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, json.loads(result.stdout)


def command(hub: FakeHub, cache: Path, *args: str, **popen) -> subprocess.Popen:
    """`gpucluster ARGS` in a subprocess pointed at the fake hub (HF_ENDPOINT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GPUCLUSTER_"))}
    env.update(
        PYTHONPATH=str(SRC),
        HF_ENDPOINT=hub.url,
        GPUCLUSTER_MODEL_CACHE=str(cache),
        GPUCLUSTER_STATE_DIR=str(cache.parent / "state"),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gpucluster", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_pull_resumes_a_killed_download_with_a_range_request(hub, cache):
    weights = model_repo_files(shard_bytes=CHUNK + 6 * 2**20)["model-00001-of-00002.safetensors"]
    repo = hub.add_repo("org/big", {"config.json": b"{}", "model.safetensors": weights})
    hub.throttle_bps = 8 * 2**20
    part = cache / ".partial/hf/org--big/main/.incomplete" / repo.files["model.safetensors"].sha256
    first = command(hub, cache, "pull", "org/big", "--json")
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size >= CHUNK):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    first.kill()  # SIGKILL: no clean-up runs
    first.communicate()
    kept = part.stat().st_size
    assert 0 < kept < len(weights)
    assert not (cache / "hf/org--big/main").exists()
    _, listing = cli("models", "--json")
    (partial,) = listing["entries"]
    assert (partial["name"], partial["complete"]) == ("org/big@main", False)
    assert partial["bytes"] >= kept

    hub.throttle_bps = None
    hub.requests.clear()
    second = command(hub, cache, "pull", "org/big", "--json")
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["commit"] == repo.commit and result["path"] == str(cache / "hf/org--big/main")
    assert hub.ranges() == [f"bytes={kept}-"]  # only the missing part was asked for
    assert (cache / "hf/org--big/main/model.safetensors").read_bytes() == weights
    assert "resuming at" in stderr
    assert not (cache / ".partial/hf/org--big").exists()


def test_pull_of_a_configured_model_uses_its_source_and_revision(hub, cache, tmp_path):
    commit = hub.repos["org/tiny"].commit
    config = tmp_path / "platform.yaml"
    config.write_text(f"models:\n  - id: tiny\n    source: org/tiny\n    revision: '{commit}'\n")
    run = command(hub, cache, "pull", "tiny", "-c", str(config), "--json")
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["path"] == str(cache / "hf/org--tiny" / commit)
    assert (result["source"], result["revision"], result["commit"]) == ("org/tiny", commit, commit)
    assert result["bytes"] > 2 * 256 * 1024 and result["seconds"] >= 0


def test_pull_usage_errors_exit_2(cache):
    code, result = cli("pull", "not a source", "--json")
    assert code == 2 and "accepted forms" in result["error"]
    code, result = cli("pull", "builtin:smollm2-135m-instruct", "--revision", "v1", "--json")
    assert code == 2 and "`revision: v1`" in result["error"]


def fake_conversion(_gguf: Path, out_dir: Path, _progress) -> None:
    (out_dir / "config.json").write_text("{}")
    (out_dir / "model.safetensors").write_bytes(b"\0" * 4096)


def test_models_lists_removes_and_sizes_the_cache(hub, cache, tmp_path):
    client = HubClient(endpoint=hub.url)
    tiny = Path(prepare_model("org/tiny", cache, hub=client))
    prepare_model("builtin:smollm2-135m-instruct", cache, converter=fake_conversion)
    hub.add_repo("org/other", model_repo_files(seed=3))
    hub.corrupt.add("model-00002-of-00002.safetensors")
    with pytest.raises(ChecksumError):  # leaves an interrupted pull behind
        prepare_model("org/other", cache, hub=client)
    config = tmp_path / "platform.yaml"
    config.write_text("models:\n  - id: tiny\n    source: org/tiny\n")

    code, listing = cli("models", "--json", "-c", str(config))
    assert code == 0 and listing["cache_dir"] == str(cache)
    assert cli("models", "list", "--json", "-c", str(config)) == (code, listing)
    by_name = {e["name"]: e for e in listing["entries"]}
    assert set(by_name) == {"org/tiny@main", "builtin:smollm2-135m-instruct", "org/other@main"}
    entry = by_name["org/tiny@main"]
    assert (entry["kind"], entry["revision"], entry["complete"]) == ("hf", "main", True)
    assert entry["commit"] == hub.repos["org/tiny"].commit and entry["path"] == str(tiny)
    assert entry["used_by"] == ["tiny"] and entry["last_used"] is not None
    assert entry["bytes"] >= 2 * 256 * 1024
    assert by_name["builtin:smollm2-135m-instruct"]["kind"] == "builtin"
    other = by_name["org/other@main"]
    assert other["complete"] is False and other["bytes"] > 0 and other["used_by"] == []

    code, usage = cli("models", "du", "--json", "-c", str(config))
    assert code == 0 and len(usage["entries"]) == 3
    assert usage["total_bytes"] >= sum(e["bytes"] for e in usage["entries"]) > 0
    assert usage["free_bytes"] > 0

    code, refused = cli("models", "rm", "org/tiny", "--json", "-c", str(config))
    assert code == 1 and "in use" in refused["error"] and "tiny" in refused["error"]
    assert "--force" in refused["error"] and tiny.is_dir()
    code, removed = cli("models", "rm", "org/tiny", "--force", "--json", "-c", str(config))
    assert code == 0 and [e["name"] for e in removed["removed"]] == ["org/tiny@main"]
    assert not tiny.exists() and removed["freed_bytes"] == entry["bytes"]
    code, removed = cli("models", "rm", "org/other", "--json", "-c", str(config))
    assert code == 0 and not (cache / ".partial/hf/org--other").exists()
    code, missing = cli("models", "rm", "org/nothing", "--json", "-c", str(config))
    assert code == 1 and "`gpucluster models` lists" in missing["error"]
    code, listing = cli("models", "--json", "-c", str(config))
    assert [e["name"] for e in listing["entries"]] == ["builtin:smollm2-135m-instruct"]
