"""Model resolution: a local config.json, the hub caches, the built-in model, the table."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gpucluster.planning.arithmetic import active_params, estimate_params
from gpucluster.planning.capacity import plan
from gpucluster.planning.hardware import Experts, find_gpu
from gpucluster.planning.inputs import CapacityInputError, Load, PlanInputs
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


# --- mixtures of experts: every expert's weights, the activated ones' FLOPs --------------------

# mistralai/Mixtral-8x7B-v0.1's config.json (the keys the planner reads, and a few more).
MIXTRAL_CONFIG = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32,
    "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "num_local_experts": 8, "rms_norm_eps": 1e-05, "rope_theta": 1e6, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 32000,
}  # fmt: skip
# Qwen/Qwen3-30B-A3B's: 128 narrow experts, 8 per token, all 48 layers sparse.
QWEN3_MOE_CONFIG = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
    "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
    "max_position_embeddings": 40960, "num_attention_heads": 32, "num_key_value_heads": 4,
    "num_hidden_layers": 48, "num_experts": 128, "num_experts_per_tok": 8,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "attention_bias": False,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 151936,
}  # fmt: skip


def shape_of(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    return resolve_model(str(tmp_path), model_cache_dir=tmp_path, hf_cache_dir=tmp_path)


def test_mixtral_counts_every_experts_weights_and_two_activated_per_token(tmp_path):
    shape = shape_of(tmp_path, MIXTRAL_CONFIG)
    assert shape.experts == Experts(count=8, per_token=2, intermediate_size=14336, moe_layers=32)
    # Published: 46.7B parameters, 12.9B of them used per token (mistral.ai, "Mixtral of experts").
    assert shape.params == pytest.approx(46.7e9, rel=0.02)
    assert active_params(shape) == pytest.approx(12.9e9, rel=0.02)
    # A dense reading of the same config (one MLP per layer) is the 7.2B it used to report.
    assert estimate_params(replace(shape, experts=None)) == pytest.approx(7.24e9, rel=0.01)


def test_qwen3_moe_counts_128_narrow_experts(tmp_path):
    shape = shape_of(tmp_path, QWEN3_MOE_CONFIG)
    assert (shape.experts.count, shape.experts.per_token, shape.experts.intermediate_size) == (
        128,
        8,
        768,
    )
    # Published: 30.5B parameters, 3.3B activated (the model card).
    assert shape.params == pytest.approx(30.5e9, rel=0.02)
    assert active_params(shape) == pytest.approx(3.3e9, rel=0.03)


def test_qwen2_moe_counts_its_shared_expert_as_activated(tmp_path):
    # Qwen/Qwen1.5-MoE-A2.7B: 60 experts, 4 per token, and a shared expert every token uses.
    config = {
        "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
        "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4,
        "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
        "max_position_embeddings": 8192, "vocab_size": 151936, "tie_word_embeddings": False,
    }  # fmt: skip
    shape = shape_of(tmp_path, config)
    assert shape.qkv_bias and shape.experts.shared_intermediate_size == 5632
    # Published: 14.3B parameters, 2.7B activated (the model card).
    assert shape.params == pytest.approx(14.3e9, rel=0.02)
    assert active_params(shape) == pytest.approx(2.7e9, rel=0.03)


def test_dense_layers_of_a_qwen_moe_config_keep_their_dense_mlp(tmp_path):
    config = {**QWEN3_MOE_CONFIG, "mlp_only_layers": [0, 1], "decoder_sparse_step": 2}
    shape = shape_of(tmp_path, config)
    assert shape.experts.moe_layers == 23  # odd layers 1..47 are sparse, but for layer 1
    full = shape_of(tmp_path, QWEN3_MOE_CONFIG)
    per_layer = 128 * 3 * 2048 * 768 + 2048 * 128 - 3 * 2048 * 6144  # experts + router - dense
    assert full.params - shape.params == 25 * per_layer


def test_experts_change_memory_and_flops_but_not_the_kv_cache(tmp_path):
    mixtral = shape_of(tmp_path, MIXTRAL_CONFIG)
    h100 = find_gpu("h100")
    load = Load(rps=1, input_tokens=1000, output_tokens=100)
    moe = plan(mixtral, h100, PlanInputs(tp=2, max_model_len=8192, load=load))
    one_mlp = replace(mixtral, experts=None)
    dense = plan(
        replace(one_mlp, params=estimate_params(one_mlp)),
        h100,
        PlanInputs(tp=2, max_model_len=8192),
    )
    assert moe.kv_bytes_per_token == dense.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    assert moe.weight_bytes_per_gpu == mixtral.params  # bf16 over 2 GPUs: 2 bytes / 2
    assert moe.load.prefill_seconds_per_request == pytest.approx(
        2 * active_params(mixtral) * 1000 / (2 * h100.flops)
    )
    assert any("routed to 2 of 8 experts" in note for note in moe.notes)
    assert not any("routed to" in note for note in dense.notes)
