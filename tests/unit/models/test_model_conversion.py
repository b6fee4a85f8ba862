"""The real conversion of the built-in GGUF into a Hugging Face directory vLLM can load (~25 s)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gpucluster.models import MARKER, prepare_model, read_model_info


@pytest.mark.real_model
@pytest.mark.timeout(600)  # real model work: minutes on a busy 2-core host
def test_builtin_gguf_converts_to_a_plain_hf_dir(tmp_path: Path) -> None:
    messages: list[str] = []
    path = Path(prepare_model("builtin:smollm2-135m-instruct", tmp_path, messages.append))
    assert path == tmp_path / "smollm2-135m-instruct"

    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["rope_theta"] == 100000
    assert config["rope_parameters"]["rope_theta"] == 100000
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16"
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (path / name).is_file(), name
    weights = list(path.glob("*.safetensors"))
    assert weights and weights[0].stat().st_size > 200 * 2**20
    assert all(f.stat().st_mode & stat.S_IROTH for f in path.iterdir())
    assert (path / MARKER).is_file()
    assert list(tmp_path.glob(".tmp-*")) == []
    assert read_model_info(path)["max_position_embeddings"] == 8192

    tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert tokenizer_config["model_max_length"] == 8192
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2 and generation["temperature"] == 0
    assert "dequantizing" in "\n".join(messages) and "done" in messages[-1]
