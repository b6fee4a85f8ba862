"""Model resolution: a local config.json, the hub caches, the built-in model, the table."""

from __future__ import annotations

import json

import pytest

from gpucluster.planning.inputs import CapacityInputError
from gpucluster.planning.shapes import resolve_model

LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
}  # fmt: skip


def test_a_local_directory_is_read_through_its_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    shape = resolve_model(str(tmp_path), model_cache_dir=tmp_path, hf_cache_dir=tmp_path)
    assert (shape.num_layers, shape.num_kv_heads, shape.head_dim) == (32, 8, 128)
    assert shape.params == 8_030_261_248 and shape.params_estimated
    from_file = resolve_model(str(tmp_path / "config.json"), model_cache_dir=tmp_path,
                              hf_cache_dir=tmp_path)  # fmt: skip
    assert from_file.params == shape.params


def test_a_hugging_face_id_is_found_in_the_local_hub_cache(tmp_path):
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    hub = tmp_path / "hub"
    shape = resolve_model("acme/tiny-llama", model_cache_dir=tmp_path, hf_cache_dir=hub)
    assert shape.name == "acme/tiny-llama" and "abc123" in shape.source


def test_a_hugging_face_id_pulled_into_the_model_cache_is_found_there(tmp_path):
    from gpucluster.models.cache import MARKER

    pulled = tmp_path / "hf" / "acme--tiny-llama" / "main"
    pulled.mkdir(parents=True)
    (pulled / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    with pytest.raises(CapacityInputError, match="not pulled into the model cache"):
        resolve_model("acme/tiny-llama", model_cache_dir=tmp_path, hf_cache_dir=tmp_path)
    (pulled / MARKER).write_text(json.dumps({"kind": "hf", "pulled_at": "2026-01-01T00:00:00Z"}))
    shape = resolve_model("acme/tiny-llama", model_cache_dir=tmp_path, hf_cache_dir=tmp_path)
    assert shape.name == "acme/tiny-llama" and str(pulled) in shape.source


def test_the_builtin_model_uses_its_prepared_dir_else_the_table(tmp_path):
    table = resolve_model("builtin:smollm2-135m-instruct", model_cache_dir=tmp_path,
                          hf_cache_dir=tmp_path)  # fmt: skip
    assert table.source == "built-in table" and table.params == 134_515_008
    prepared = tmp_path / "smollm2-135m-instruct"
    prepared.mkdir()
    config = {**LLAMA_CONFIG, "hidden_size": 576, "num_hidden_layers": 30,
              "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
              "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True,
              "max_position_embeddings": 8192}  # fmt: skip
    (prepared / "config.json").write_text(json.dumps(config))
    shape = resolve_model("smollm2-135m-instruct", model_cache_dir=tmp_path, hf_cache_dir=tmp_path)
    assert shape.source == str(prepared / "config.json")
    assert shape.params == 134_515_008


def test_the_builtin_embedding_model_needs_its_prepared_dir(tmp_path):
    with pytest.raises(CapacityInputError, match="gpucluster pull builtin:all-minilm-l6-v2"):
        resolve_model("builtin:all-minilm-l6-v2", model_cache_dir=tmp_path, hf_cache_dir=tmp_path)
    prepared = tmp_path / "all-minilm-l6-v2"
    prepared.mkdir()
    bert = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 384,
            "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
            "vocab_size": 30522, "max_position_embeddings": 512}  # fmt: skip
    (prepared / "config.json").write_text(json.dumps(bert))
    shape = resolve_model("all-minilm-l6-v2", model_cache_dir=tmp_path, hf_cache_dir=tmp_path)
    assert shape.source == str(prepared / "config.json")
    assert (shape.num_layers, shape.head_dim, shape.max_position_embeddings) == (6, 32, 512)


def test_an_unknown_model_lists_the_known_ones(tmp_path):
    with pytest.raises(CapacityInputError) as info:
        resolve_model("acme/nothing", model_cache_dir=tmp_path, hf_cache_dir=tmp_path)
    assert "Qwen/Qwen2.5-32B-Instruct" in str(info.value)
    assert "smollm2-135m-instruct" in str(info.value)
    assert "all-minilm-l6-v2" in str(info.value)
