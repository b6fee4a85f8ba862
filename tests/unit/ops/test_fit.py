"""The fit check `up` and `config check` run: each verdict from the model's shape and the devices,
with the numbers and a fix in the config's own keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpucluster.cli.main import app
from gpucluster.config import Config
from gpucluster.ops.fit import check_fit, problems
from gpucluster.planning.hardware import GiB, find_gpu

HOST = 24 * GiB
# A Llama-70B-like shape: 80 layers x 8 KV heads x 128 x bf16 = 320 KiB of KV per token.
BIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "intermediate_size": 28672,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
}


def config(tmp_path: Path, **model) -> Config:
    return Config.model_validate(
        {
            "platform": {"model_cache_dir": str(tmp_path / "cache")},
            "models": [{"id": "m", **model}],
        }
    )


def big_model(tmp_path: Path) -> str:
    directory = tmp_path / "big"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(BIG))
    return str(directory)


def check(cfg: Config, gpu: str | None = None, **kwargs):
    kwargs.setdefault("host_memory_bytes", HOST)
    kwargs.setdefault("local_gpus", [])
    return check_fit(
        cfg, find_gpu(gpu) if gpu else None, hf_cache_dir=Path("/nonexistent"), **kwargs
    )


def test_the_builtin_model_fits_the_default_cpu_setup(tmp_path):
    fits = check(config(tmp_path))
    assert [(f.check, f.fits) for f in fits] == [("memory", True), ("host", True)]
    assert "46,592 tokens for max_model_len 2,048" in fits[0].detail  # 1 GiB / 23,040 B/token


def test_a_cpu_kv_space_too_small_for_max_model_len_names_the_size_that_fits(tmp_path):
    cfg = config(tmp_path, source=big_model(tmp_path), max_model_len=131072, cpu_kvcache_gib=1)
    bad, host = problems(check(cfg))
    assert host.check == "host"  # and 140 GB of weights do not fit 24 GiB either
    # 131,072 tokens x 327,680 B = 40 GiB of KV; 1 GiB holds 3,200 tokens (blocks of 128)
    assert "3,200 tokens for max_model_len 131,072" in bad.detail
    assert bad.fix == "one of cpu_kvcache_gib: 40 or more; max_model_len: 3,200 or less"


def test_cpu_replicas_beyond_the_hosts_memory_are_refused(tmp_path):
    cfg = config(tmp_path, replicas={"min": 1, "max": 8}, cpu_kvcache_gib=2)
    (bad,) = problems(check(cfg, host_memory_bytes=16 * GiB))
    assert bad.check == "host"
    assert "8 x 4.8 GiB" in bad.detail and "this host has 16.0 GiB" in bad.detail
    assert "replicas.max" in bad.fix


def test_a_32b_model_on_one_l4_is_refused_with_the_tp_that_fits(tmp_path):
    cfg = config(
        tmp_path, source="Qwen/Qwen2.5-32B-Instruct", accelerator="gpu", max_model_len=8192
    )
    (bad,) = problems(check(cfg, "l4"))
    assert "weights 61.03 GiB/device" in bad.detail and "leave no room" in bad.detail
    assert bad.fix.startswith("one of tensor_parallel_size: 8;")


def test_a_context_longer_than_the_kv_cache_suggests_both_fixes(tmp_path):
    cfg = config(
        tmp_path, source="Qwen/Qwen2.5-32B-Instruct", accelerator="gpu", max_model_len=32768
    )
    (bad,) = problems(check(cfg, "h100"))
    assert "less than one sequence of max_model_len 32,768" in bad.detail
    assert "tensor_parallel_size: 2" in bad.fix and "max_model_len: 31,344 or less" in bad.fix
    fixed = config(
        tmp_path,
        source="Qwen/Qwen2.5-32B-Instruct",
        accelerator="gpu",
        max_model_len=32768,
        tensor_parallel_size=2,
    )
    assert problems(check(fixed, "h100")) == []


def test_engine_kwargs_win_over_the_fields_as_they_do_for_vllm(tmp_path):
    cfg = config(
        tmp_path,
        source="Qwen/Qwen2.5-32B-Instruct",
        accelerator="gpu",
        max_model_len=8192,
        engine_kwargs={"tensor_parallel_size": 8},
    )
    assert problems(check(cfg, "l4")) == []


def test_a_context_beyond_the_models_own_is_what_vllm_would_refuse(tmp_path):
    cfg = config(
        tmp_path,
        source="Qwen/Qwen2.5-32B-Instruct",
        accelerator="gpu",
        max_model_len=65536,
        tensor_parallel_size=4,
    )
    (bad,) = problems(check(cfg, "h100"))
    assert "max_position_embeddings (32768)" in bad.detail


def test_gpu_models_are_not_checked_without_a_gpu_to_check_against(tmp_path):
    cfg = config(tmp_path, source="Qwen/Qwen2.5-32B-Instruct", accelerator="gpu")
    (fit,) = check(cfg)
    assert fit.fits is None and "--gpu NAME" in fit.detail


def test_initial_replicas_need_the_gpus_this_host_has(tmp_path):
    cfg = config(
        tmp_path,
        source="Qwen/Qwen2.5-7B-Instruct",
        accelerator="gpu",
        tensor_parallel_size=4,
        max_model_len=8192,
    )
    fits = check(cfg, local_gpus=[find_gpu("l4")] * 2)
    (bad,) = problems(fits)
    assert bad.check == "gpus" and "need 4 GPU(s)" in bad.detail and "2 here" in bad.detail


def test_an_unknown_model_is_not_checked_and_says_why(tmp_path):
    cfg = config(tmp_path, source="someorg/unknown-model", accelerator="gpu")
    (fit,) = check(cfg, "h100")
    assert fit.fits is None and "unknown model" in fit.detail


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    return lambda *args: CliRunner().invoke(app, list(args))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    return str(path)


QWEN_ON_ONE_GPU = """models:
  - id: qwen
    source: Qwen/Qwen2.5-32B-Instruct
    accelerator: gpu
    max_model_len: 32768
"""


def test_config_check_refuses_with_the_numbers_and_the_fix(run, tmp_path):
    config_file = write(tmp_path, QWEN_ON_ONE_GPU)
    result = run("config", "check", "--json", "--gpu", "h100", "-c", config_file)
    assert result.exit_code == 2, result.output
    body = json.loads(result.stdout)
    assert body["ok"] is False
    assert "model qwen does not fit its device" in body["error"]
    assert "tensor_parallel_size: 2" in body["error"]
    assert [fit["fits"] for fit in body["fit"]] == [False]


def test_up_refuses_before_starting_anything(run, tmp_path):
    text = f"models:\n  - id: big\n    source: {big_model(tmp_path)}\n    max_model_len: 131072\n"
    result = run("up", "--json", "-c", write(tmp_path, text))
    assert result.exit_code == 2, result.output
    assert "cpu_kvcache_gib: 40 or more" in json.loads(result.stdout)["error"]
    assert not (tmp_path / "state").exists()  # nothing started, nothing written
