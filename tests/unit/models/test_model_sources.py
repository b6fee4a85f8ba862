"""Resolving `source` strings, checking local model directories, reading config.json facts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpucluster.models import (
    ModelSource,
    ModelSourceError,
    check_local_dir,
    read_model_info,
    resolve_source,
)


def test_builtin_source_resolves_to_its_name() -> None:
    source = resolve_source("builtin:smollm2-135m-instruct")
    assert source == ModelSource("builtin", "smollm2-135m-instruct")
    assert str(source) == "builtin:smollm2-135m-instruct"


def test_unknown_builtin_is_rejected_naming_the_known_ones() -> None:
    with pytest.raises(ModelSourceError) as err:
        resolve_source("builtin:llama-7b")
    assert "'builtin:llama-7b'" in str(err.value)
    assert "smollm2-135m-instruct" in str(err.value)


@pytest.mark.parametrize(
    "hf_id", ["Qwen/Qwen2.5-32B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "a/b", "org_x/m.v2"]
)
def test_hugging_face_ids_resolve_unchanged(hf_id: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no directory of that name here
    assert resolve_source(hf_id) == ModelSource("hf", hf_id)


def test_absolute_path_resolves_to_local_even_when_missing() -> None:
    assert resolve_source("/opt/models/missing") == ModelSource("local", "/opt/models/missing")


@pytest.mark.parametrize("relative", ["./m", "../m", ".", "./org/name"])
def test_dot_prefixed_paths_resolve_against_the_working_dir(
    relative: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = os.path.abspath(os.path.join(tmp_path, relative))
    assert resolve_source(relative) == ModelSource("local", expected)


def test_home_prefixed_path_is_expanded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_source("~/models/x") == ModelSource("local", str(tmp_path / "models/x"))


def test_existing_directory_wins_over_the_hub_id_form(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_source("org/name") == ModelSource("local", str(tmp_path / "org" / "name"))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "gpt2",
        "a/b/c",
        "org/with space",
        "org//name",
        "org/na--me",
        "org/..",
        "builtin:",
        "hf:org/name",
        "org/-name",
    ],
)
def test_other_forms_are_rejected_with_the_accepted_forms(
    bad: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelSourceError) as err:
        resolve_source(bad)
    message = str(err.value)
    assert repr(bad) in message
    assert "org/name" in message and "builtin:" in message and "./" in message


def test_source_error_is_a_value_error() -> None:
    assert issubclass(ModelSourceError, ValueError)


def test_source_is_frozen() -> None:
    source = resolve_source("a/b")
    with pytest.raises(AttributeError):
        source.value = "c/d"  # type: ignore[misc]


def _model_dir(path: Path, config: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = config or {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "max_position_embeddings": 4096,
    }
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_local_dir_with_config_is_accepted(tmp_path: Path) -> None:
    directory = _model_dir(tmp_path / "m")
    assert check_local_dir(directory) == directory


def test_missing_local_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError) as err:
        check_local_dir(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    assert "does not exist" in str(err.value)


def test_local_file_is_not_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="not a directory"):
        check_local_dir(file)


def test_local_dir_without_config_json_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelSourceError) as err:
        check_local_dir(tmp_path / "m")
    assert str(tmp_path / "m") in str(err.value)
    assert "no config.json" in str(err.value)


def test_local_dir_with_broken_config_json_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ModelSourceError, match="not valid JSON"):
        check_local_dir(tmp_path / "m")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_local_dir_is_a_clear_error(tmp_path: Path) -> None:
    directory = _model_dir(tmp_path / "m")
    directory.chmod(0)
    try:
        with pytest.raises(ModelSourceError, match="not readable"):
            check_local_dir(directory)
    finally:
        directory.chmod(0o755)


def test_model_info_reads_capacity_facts(tmp_path: Path) -> None:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "max_position_embeddings": 8192,
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "torch_dtype": "bfloat16",
    }
    info = read_model_info(_model_dir(tmp_path / "m", config))
    assert info == {
        "architecture": "LlamaForCausalLM",
        "model_type": "llama",
        "max_position_embeddings": 8192,
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "dtype": "bfloat16",
    }


def test_model_info_reads_nested_text_config_and_accepts_the_file_path(tmp_path: Path) -> None:
    config = {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "text_config": {"max_position_embeddings": 32768, "num_attention_heads": 8},
    }
    info = read_model_info(_model_dir(tmp_path / "m", config) / "config.json")
    assert info["architecture"] == "Qwen2VLForConditionalGeneration"
    assert info["max_position_embeddings"] == 32768
    assert info["num_key_value_heads"] == 8  # no GQA given: as many KV heads as heads


def test_model_info_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="file not found"):
        read_model_info(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelSourceError, match="must be a JSON object"):
        read_model_info(tmp_path)
    (tmp_path / "config.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ModelSourceError, match="not valid JSON"):
        read_model_info(tmp_path)
