"""`${NAME}` references in config files, resolved from the environment by the loader."""

from __future__ import annotations

import pytest

from gpucluster.config import ConfigError, load_config
from gpucluster.config.interpolate import InterpolationError, interpolate

GPU_MODEL = """
models:
  - id: "${MODEL_ID}"
    source: "${MODEL_SOURCE:-Qwen/Qwen2.5-7B-Instruct}"
    accelerator: gpu
    tensor_parallel_size: "${TP:?set TP}"
    max_model_len: "${MAX_LEN:-}"
    engine_kwargs:
      served_name: "model-${MODEL_ID}-$${literal}"
"""


def write(tmp_path, text):
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    return path


def test_references_take_the_type_of_their_value(tmp_path):
    config = load_config(write(tmp_path, GPU_MODEL), env={"MODEL_ID": "qwen", "TP": "4"})
    model = config.models[0]
    assert (model.id, model.source, model.tensor_parallel_size) == (
        "qwen",
        "Qwen/Qwen2.5-7B-Instruct",
        4,
    )
    assert model.max_model_len is None  # empty: null, the model's own
    assert model.engine_kwargs == {"served_name": "model-qwen-${literal}"}


def test_a_missing_variable_names_the_key_and_the_variable(tmp_path):
    path = write(tmp_path, GPU_MODEL)
    with pytest.raises(ConfigError, match=r"models\.0\.tensor_parallel_size: .*TP .*set TP"):
        load_config(path, env={"MODEL_ID": "qwen"})
    with pytest.raises(ConfigError, match=r"models\.0\.id: environment variable MODEL_ID"):
        load_config(path, env={"TP": "1"})


def test_a_value_cannot_add_structure():
    data = interpolate({"id": "${X}"}, {"X": "{a: 1}"})
    assert data == {"id": "{a: 1}"}


def test_text_without_references_is_untouched():
    data = {"a": ["$5", "plain", 3], "b": None}
    assert interpolate(data, {}) == data
    with pytest.raises(InterpolationError):
        interpolate({"a": "${UNSET}"}, {})
