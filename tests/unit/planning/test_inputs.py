"""Plan inputs from a configured model: the values vLLM runs with (config.engine.engine_kwargs,
where engine_kwargs win over the model's fields), command-line flags over them."""

from __future__ import annotations

import pytest

from gpucluster.config import ModelConfig
from gpucluster.config.engine import engine_kwargs
from gpucluster.planning.hardware import find_gpu
from gpucluster.planning.inputs import PlanInputs, normalise_dtype

CPU, H100 = find_gpu("cpu"), find_gpu("h100")


def configured(**fields) -> ModelConfig:
    return ModelConfig.model_validate({"id": "m", **fields})


def test_the_defaults_are_the_model_configs():
    inputs = PlanInputs.from_config(configured(), CPU)
    assert inputs == PlanInputs(tp=1, max_model_len=2048, gpu_memory_utilization=0.9,
                                dtype="auto", max_num_seqs=16, kv_cache_gib=1)  # fmt: skip


def test_engine_kwargs_win_over_every_field():
    model = configured(
        accelerator="gpu", tensor_parallel_size=1, max_model_len=32768, max_num_seqs=64,
        gpu_memory_utilization=0.9, dtype="bfloat16",
        engine_kwargs={"tensor_parallel_size": 4, "max_model_len": 8192, "max_num_seqs": 8,
                       "gpu_memory_utilization": 0.8, "dtype": "float16",
                       "kv_cache_dtype": "fp8_e5m2", "block_size": 32},
    )  # fmt: skip
    inputs = PlanInputs.from_config(model, H100)
    assert (inputs.tp, inputs.max_model_len, inputs.max_num_seqs) == (4, 8192, 8)
    assert (inputs.gpu_memory_utilization, inputs.block_size) == (0.8, 32)
    assert (inputs.dtype, inputs.kv_cache_dtype) == ("fp16", "fp8")


def test_a_null_context_in_engine_kwargs_leaves_the_models_own():
    model = configured(max_model_len=4096, engine_kwargs={"max_model_len": None})
    assert PlanInputs.from_config(model, CPU).max_model_len is None
    assert PlanInputs.from_config(configured(max_model_len=None), CPU).max_model_len is None


def test_null_engine_kwargs_fall_back_to_the_defaults():
    model = configured(engine_kwargs={"dtype": None, "kv_cache_dtype": None, "block_size": None})
    inputs = PlanInputs.from_config(model, CPU)
    assert (inputs.dtype, inputs.kv_cache_dtype, inputs.block_size) == ("auto", "auto", None)


def test_the_cpu_kv_space_is_taken_on_cpu_only():
    model = configured(cpu_kvcache_gib=3)
    assert PlanInputs.from_config(model, CPU).kv_cache_gib == 3
    assert PlanInputs.from_config(model, H100).kv_cache_gib is None
    assert PlanInputs.from_config(model).kv_cache_gib is None


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"accelerator": "gpu", "tensor_parallel_size": 2, "max_model_len": None},
        {"source": "builtin:all-minilm-l6-v2"},
        {"engine_kwargs": {"max_model_len": 1024, "block_size": 64, "cpu_offload_gb": 4}},
        {"accelerator": "gpu", "dtype": "bfloat16",
         "engine_kwargs": {"tensor_parallel_size": 8, "gpu_memory_utilization": 0.5}},
    ],
)  # fmt: skip
def test_the_inputs_are_what_vllm_gets(fields):
    model = configured(**fields)
    inputs, kwargs = PlanInputs.from_config(model, CPU), engine_kwargs(model)
    assert inputs.tp == kwargs["tensor_parallel_size"]
    assert inputs.max_model_len == kwargs.get("max_model_len")
    assert inputs.gpu_memory_utilization == kwargs["gpu_memory_utilization"]
    assert inputs.dtype == normalise_dtype(kwargs["dtype"])
    assert inputs.max_num_seqs == kwargs["max_num_seqs"]
    assert inputs.block_size == kwargs.get("block_size")


def test_flags_given_override_and_flags_not_given_do_not():
    inputs = PlanInputs.from_config(configured(max_model_len=4096), CPU)
    assert inputs.overridden(max_model_len=None, tp=None) == inputs
    assert inputs.overridden(max_model_len=1024).max_model_len == 1024
