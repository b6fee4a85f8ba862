"""Where the config's LoRA adapters come from: built-in adapters and local directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpucluster.config import ModelConfig
from gpucluster.models.adapter_sources import adapter_locations, prepare_adapters
from gpucluster.models.adapters import adapter_dir
from gpucluster.models.sources import ModelSourceError

PIRATE = "smollm2-135m-instruct-pirate"


def model_with(adapters: dict[str, str], **fields) -> ModelConfig:
    return ModelConfig(lora={"adapters": adapters}, **fields)


def test_a_built_in_adapter_lives_in_the_cache_and_a_directory_where_it_is(tmp_path):
    model = model_with({"pirate": f"builtin:{PIRATE}", "mine": str(tmp_path / "mine")})
    assert adapter_locations(model, tmp_path / "cache") == {
        f"{model.id}:pirate": str(adapter_dir(tmp_path / "cache", PIRATE)),
        f"{model.id}:mine": str(tmp_path / "mine"),
    }
    assert adapter_locations(ModelConfig(), tmp_path) == {}


def test_an_unknown_built_in_adapter_is_named_with_the_known_ones(tmp_path):
    with pytest.raises(ModelSourceError, match=f"'nope'.*{PIRATE}"):
        adapter_locations(model_with({"x": "builtin:nope"}), tmp_path)


def test_a_built_in_adapter_refuses_another_base(tmp_path):
    model = model_with({"pirate": f"builtin:{PIRATE}"}, id="other", source=str(tmp_path))
    with pytest.raises(ModelSourceError, match="made for builtin:smollm2-135m-instruct"):
        prepare_adapters(model, str(tmp_path), tmp_path / "cache", lambda _: None)


def test_a_directory_without_adapter_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    model = model_with({"empty": str(tmp_path / "empty")})
    with pytest.raises(ModelSourceError, match="has no adapter_config.json"):
        prepare_adapters(model, "/base", tmp_path, lambda _: None)
    (tmp_path / "empty" / "adapter_config.json").write_text("{}")
    seen: list[str] = []
    assert prepare_adapters(model, "/base", tmp_path, seen.append) == {
        f"{model.id}:empty": str(Path(tmp_path / "empty"))
    }
    assert seen
