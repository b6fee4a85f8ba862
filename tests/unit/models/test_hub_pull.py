"""Pulling Hugging Face models into the model cache, through a fake hub on 127.0.0.1.

What is checked is what an operator sees: the directory vLLM gets, its files and marker, the
requests the hub received, and the errors' words (what went wrong and what to do).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from fake_hub import FakeHub, model_repo_files

from gpucluster.models import (
    MARKER,
    HubClient,
    ModelSourceError,
    prepare_model,
    weights_location,
)
from gpucluster.models.hub_errors import (
    ChecksumError,
    DiskSpaceError,
    HubAccessError,
    HubNotFoundError,
    HubUnreachableError,
)

REPO = "org/tiny"
SERVED = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
}


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub() as fake:
        fake.add_repo(REPO, model_repo_files())
        yield fake


def pull(hub_or_url, cache: Path, messages: list[str] | None = None, **kwargs) -> Path:
    url = hub_or_url if isinstance(hub_or_url, str) else hub_or_url.url
    free_space = kwargs.pop("free_space", None)
    client = HubClient(endpoint=url, **({"free_space": free_space} if free_space else {}))
    say = messages.append if messages is not None else None
    return Path(prepare_model(kwargs.pop("source", REPO), cache, say, hub=client, **kwargs))


def dead_endpoint() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def downloads(hub: FakeHub) -> list[str]:
    """Names of the files whose bytes were sent (GET on /resolve or the CDN)."""
    blobs = {f.sha256: f.name for r in hub.repos.values() for f in r.files.values()}
    names = []
    for seen in hub.requests:
        if seen.method != "GET" or seen.path.startswith("/api/"):
            continue
        if seen.server == "cdn":
            names.append(blobs[seen.path.removeprefix("/blobs/")])
        else:
            names.append(seen.path.split("/", 5)[5])
    return names


def test_pull_takes_only_what_vllm_loads_and_stamps_it(hub, tmp_path):
    messages: list[str] = []
    path = pull(hub, tmp_path / "cache", messages)
    assert path == tmp_path / "cache" / "hf" / "org--tiny" / "main"
    kept = {p.name for p in path.iterdir()} - {MARKER, ".gpucluster-last-used"}
    assert kept == SERVED
    repo = hub.repos[REPO]
    for name in SERVED:
        assert (path / name).read_bytes() == repo.files[name].data
    assert sorted(downloads(hub)) == sorted(SERVED)  # nothing else crossed the wire
    stamp = json.loads((path / MARKER).read_text())
    assert (stamp["source"], stamp["revision"], stamp["commit"]) == (REPO, "main", repo.commit)
    assert stamp["files"]["model-00001-of-00002.safetensors"] == {
        "size": 256 * 1024,
        "sha256": repo.files["model-00001-of-00002.safetensors"].sha256,
    }
    assert stamp["files"]["config.json"]["git-sha1"] == repo.files["config.json"].blob_id
    assert stamp["pulled_at"].endswith("Z")
    assert not (tmp_path / "cache" / ".partial" / "hf" / "org--tiny" / "main").exists()
    assert any("consolidated.safetensors" in m and "not named by" in m for m in messages)
    assert (path / ".gpucluster-last-used").is_file()


def test_weights_location_is_the_pulled_path_without_network(tmp_path):
    assert weights_location(REPO, tmp_path, revision="v1.0") == str(tmp_path / "hf/org--tiny/v1.0")
    odd = weights_location(REPO, tmp_path, revision="refs/pr/1")
    assert "/" not in Path(odd).name and Path(odd).parent == tmp_path / "hf" / "org--tiny"


def test_bin_weights_are_taken_when_there_are_no_safetensors(hub, tmp_path):
    hub.add_repo(
        "org/old",
        {
            "config.json": b"{}",
            "pytorch_model.bin": b"w" * 100,
            "training_args.bin": b"t",
            "tokenizer.json": b"{}",
        },
    )
    messages: list[str] = []
    path = pull(hub, tmp_path, messages, source="org/old")
    assert {p.name for p in path.iterdir() if not p.name.startswith(".")} == {
        "config.json",
        "pytorch_model.bin",
        "tokenizer.json",
    }
    assert any("no safetensors" in m and ".bin" in m for m in messages)


def test_a_repo_without_weights_is_refused(hub, tmp_path):
    hub.add_repo("org/gguf-only", {"config.json": b"{}", "model.gguf": b"g"})
    with pytest.raises(ModelSourceError, match=r"no \*\.safetensors or \*\.bin weights"):
        pull(hub, tmp_path, source="org/gguf-only")


def test_a_complete_commit_needs_no_network(hub, tmp_path):
    commit = hub.repos[REPO].commit
    first = pull(hub, tmp_path, revision=commit)
    seen = len(hub.requests)
    messages: list[str] = []
    again = pull(dead_endpoint(), tmp_path, messages, revision=commit)
    assert again == first and len(hub.requests) == seen
    assert "complete in the model cache" in messages[-1]


def test_an_unreachable_hub_falls_back_to_a_complete_copy_and_says_so(hub, tmp_path):
    first = pull(hub, tmp_path)
    endpoint = dead_endpoint()
    messages: list[str] = []
    assert pull(endpoint, tmp_path, messages) == first
    said = "\n".join(messages)
    assert f"cannot reach the Hugging Face hub at {endpoint}" in said
    assert "using the copy in the model cache" in said and hub.repos[REPO].commit[:12] in said


def test_an_unreachable_hub_without_a_copy_names_the_endpoint_and_the_ways_out(tmp_path):
    endpoint = dead_endpoint()
    with pytest.raises(HubUnreachableError) as error:
        pull(endpoint, tmp_path)
    text = str(error.value)
    assert f"cannot reach the Hugging Face hub at {endpoint}" in text
    assert "pull on a host that reaches it" in text and "HF_ENDPOINT" in text
    assert "local model directory" in text


def test_checksum_mismatch_names_the_file_and_keeps_nothing_bad(hub, tmp_path):
    bad = "model-00002-of-00002.safetensors"
    hub.corrupt.add(bad)
    with pytest.raises(ChecksumError) as error:
        pull(hub, tmp_path)
    text = str(error.value)
    expected = hub.repos[REPO].files[bad].sha256
    assert bad in text and f"expected sha256 {expected}, got " in text and "pull again" in text
    assert not (tmp_path / "hf" / "org--tiny" / "main").exists()
    staging = tmp_path / ".partial" / "hf" / "org--tiny" / "main"
    assert not (staging / bad).exists()
    assert not list((staging / ".incomplete").iterdir())  # the bad bytes were deleted
    # The next pull fetches only what is missing: the files verified before are kept.
    hub.corrupt.clear()
    hub.requests.clear()
    path = pull(hub, tmp_path)
    assert (path / bad).read_bytes() == hub.repos[REPO].files[bad].data
    assert bad in downloads(hub) and "config.json" not in downloads(hub)
    assert not staging.exists()


def test_too_little_disk_is_refused_before_any_weight_arrives(hub, tmp_path):
    with pytest.raises(DiskSpaceError) as error:
        pull(hub, tmp_path, free_space=lambda _path: 100 * 2**10)
    text = str(error.value)
    assert "0.00 GiB still to download" in text and "0.00 GiB free" in text
    assert str(tmp_path) in text and "model_cache_dir" in text
    assert not any(name.endswith(".safetensors") for name in downloads(hub))
    assert not (tmp_path / "hf" / "org--tiny" / "main").exists()


def test_gated_model_needs_a_token_and_says_where_to_accept_the_licence(hub, tmp_path, monkeypatch):
    hub.token = "hf_secret"
    hub.add_repo("org/gated", model_repo_files(seed=1), gated=True)
    with pytest.raises(HubAccessError) as error:
        pull(hub, tmp_path, source="org/gated")
    assert "HF_TOKEN" in str(error.value) and "licence" in str(error.value)
    assert f"{hub.url}/org/gated" in str(error.value)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubAccessError, match="403.*HF_TOKEN"):
        pull(hub, tmp_path, source="org/gated")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hub.requests.clear()
    path = pull(hub, tmp_path, source="org/gated")
    assert (path / "config.json").is_file()
    # The token goes to the hub, never to the CDN its redirects point at.
    assert all(r.authorization for r in hub.requests if r.server == "hub")
    assert not any(r.authorization for r in hub.requests if r.server == "cdn")


def test_unknown_repo_and_revision_say_what_to_check(hub, tmp_path):
    with pytest.raises(HubNotFoundError, match="org/nope was not found on .*check the id"):
        pull(hub, tmp_path, source="org/nope")
    with pytest.raises(HubNotFoundError, match="has no revision 'v9'.*tree/main"):
        pull(hub, tmp_path, revision="v9")


def test_a_branch_that_moved_is_pulled_again_in_place(hub, tmp_path):
    first = pull(hub, tmp_path)
    hub.add_repo(REPO, model_repo_files(seed=2))
    assert pull(hub, tmp_path) == first
    stamp = json.loads((first / MARKER).read_text())
    assert stamp["commit"] == hub.repos[REPO].commit
    assert (first / "config.json").read_bytes() == hub.repos[REPO].files["config.json"].data
    assert [p.name for p in (tmp_path / "hf" / "org--tiny").iterdir() if p.is_dir()] == ["main"]


def test_revision_on_a_source_without_one_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ModelSourceError, match="`revision: v1`.*remove it"):
        prepare_model("builtin:smollm2-135m-instruct", tmp_path, revision="v1")
    with pytest.raises(ModelSourceError, match="revision"):
        weights_location(str(tmp_path), tmp_path, revision="main")
