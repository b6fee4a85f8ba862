"""How a model config becomes a Ray Serve LLM config (no Ray cluster needed)."""

from __future__ import annotations

from gpucluster.config import ModelConfig
from gpucluster.serving.app import engine_kwargs, llm_config
from gpucluster.serving.llm_server import classify_start_failure, engine_root_cause


def test_cpu_model_runs_eager_with_its_kv_cache_size():
    model = ModelConfig(cpu_kvcache_gib=3, max_num_seqs=8)
    config = llm_config(model, "/models/smollm2")
    assert config.model_id == model.id
    assert config.engine_kwargs["enforce_eager"] is True
    assert config.engine_kwargs["max_num_seqs"] == 8
    assert config.runtime_env["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert config.placement_group_config == {"bundles": [{"CPU": 1}]}


def test_engine_kwargs_escape_hatch_wins():
    model = ModelConfig(max_num_seqs=8, engine_kwargs={"max_num_seqs": 2, "seed": 7})
    kwargs = engine_kwargs(model)
    assert kwargs["max_num_seqs"] == 2 and kwargs["seed"] == 7


def test_gpu_model_asks_for_gpus_and_replica_bounds_pass_through():
    model = ModelConfig(
        id="big", accelerator="gpu", tensor_parallel_size=4, replicas={"min": 1, "max": 3}
    )
    config = llm_config(model, "Qwen/Qwen2.5-32B-Instruct")
    assert config.placement_group_config["bundle_per_worker"]["GPU"] == 1
    assert "enforce_eager" not in config.engine_kwargs
    assert config.engine_kwargs["tensor_parallel_size"] == 4
    autoscaling = config.deployment_config["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (1, 3)


def test_start_failures_map_to_the_guide_error_lines():
    assert classify_start_failure(TimeoutError()) == "ERROR: Model loading timeout"
    assert classify_start_failure(RuntimeError("CUDA out of memory")) == "ERROR: Out of memory"
    assert (
        classify_start_failure(ValueError("VLLM_CPU_KVCACHE_SPACE exceeds available memory"))
        == "ERROR: Out of memory"
    )
    assert classify_start_failure(RuntimeError("No CUDA GPUs are available")) == (
        "ERROR: GPU allocation failed"
    )
    assert classify_start_failure(ValueError("bad config")) == "ERROR: Model loading failed"


def test_stream_batching_defaults_to_unbatched_and_null_keeps_rays_default():
    assert llm_config(ModelConfig(), "/m").experimental_configs == {"stream_batching_interval_ms": 0}
    assert llm_config(ModelConfig(stream_batching_ms=None), "/m").experimental_configs == {}


def test_admission_bounds_the_queues_and_answers_429_when_full():
    options = llm_config(ModelConfig(max_num_seqs=4), "/m").deployment_config
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (8, 16)
    assert options["backpressure_config"] == {"status_code": 429, "retry_after_s": 2}
    custom = ModelConfig(admission={"max_ongoing_requests": 3, "max_queued_requests": -1})
    options = llm_config(custom, "/m").deployment_config
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (3, -1)


def test_the_engine_root_cause_in_the_replica_log_decides_the_error_line(tmp_path):
    log = tmp_path / "worker.err"
    log.write_text(
        "(EngineCore pid=1)   File \"core.py\", line 308, in _initialize_kv_caches\n"
        "(EngineCore pid=1) RuntimeError: Worker failed with error 'Available memory on node 0 "
        "(13.74/18.96 GiB) on kv cache allocation is less than requested memory for kv (64.0 GiB).'\n"
        "ERROR ... RuntimeError: Engine core initialization failed. See root cause above.\n"
    )
    cause = engine_root_cause(str(log))
    assert cause.startswith("RuntimeError: Worker failed with error 'Available memory")
    wrapped = RuntimeError("Engine core initialization failed. See root cause above.")
    assert classify_start_failure(wrapped) == "ERROR: Model loading failed"
    assert classify_start_failure(wrapped, cause) == "ERROR: Out of memory"
    assert engine_root_cause(str(tmp_path / "missing")) == ""
