"""How a model config becomes a Ray Serve LLM config (no Ray cluster needed)."""

from __future__ import annotations

import asyncio

import pytest

from gpucluster.config import BUILTIN_EMBEDDING_SOURCE, BUILTIN_MODEL_ID, Config, ModelConfig
from gpucluster.config.engine import engine_kwargs
from gpucluster.config.guide_errors import GUIDE_ERROR_LINES
from gpucluster.serving.adapters import ADAPTERS_KEY, LocalAdapterLoader, available
from gpucluster.serving.app import llm_config
from gpucluster.serving.llm_server import classify_start_failure, engine_root_cause

WEIGHTS = {BUILTIN_MODEL_ID: "/m"}


def test_cpu_model_runs_eager_with_its_kv_cache_size():
    model = ModelConfig(cpu_kvcache_gib=3, max_num_seqs=8)
    config = llm_config(model, {model.id: "/models/smollm2"})
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
    config = llm_config(model, {model.id: "Qwen/Qwen2.5-32B-Instruct"})
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


def test_the_replicas_write_only_lines_of_the_guides_table_and_every_one_of_them():
    written = {
        classify_start_failure(exc)
        for exc in (TimeoutError(), MemoryError(), RuntimeError("no CUDA GPUs"), ValueError("x"))
    }
    assert written == set(GUIDE_ERROR_LINES)  # so `up` and `diagnose` find each and its fix


def test_stream_batching_defaults_to_unbatched_and_null_keeps_rays_default():
    assert llm_config(ModelConfig(), WEIGHTS).experimental_configs == {
        "stream_batching_interval_ms": 0
    }
    assert llm_config(ModelConfig(stream_batching_ms=None), WEIGHTS).experimental_configs == {}


def test_admission_bounds_the_queues_and_answers_429_when_full():
    options = llm_config(ModelConfig(max_num_seqs=4), WEIGHTS).deployment_config
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (8, 16)
    assert options["backpressure_config"] == {"status_code": 429, "retry_after_s": 2}
    custom = ModelConfig(admission={"max_ongoing_requests": 3, "max_queued_requests": -1})
    options = llm_config(custom, WEIGHTS).deployment_config
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (3, -1)


def test_the_engine_root_cause_in_the_replica_log_decides_the_error_line(tmp_path):
    log = tmp_path / "worker.err"
    log.write_text(
        '(EngineCore pid=1)   File "core.py", line 308, in _initialize_kv_caches\n'
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


def test_an_embedding_model_runs_vllms_pooling_runner():
    model = ModelConfig(id="minilm", source=BUILTIN_EMBEDDING_SOURCE)
    assert model.embeds and not ModelConfig().embeds
    kwargs = engine_kwargs(model)
    assert kwargs["runner"] == "pooling" and kwargs["convert"] == "embed"
    assert ModelConfig(id="e", source="/x", task="embed").embeds
    assert not ModelConfig(id="e", source=BUILTIN_EMBEDDING_SOURCE, task="generate").embeds


def test_the_config_and_the_built_in_table_agree_on_which_built_in_embeds():
    from gpucluster.models.builtin import BUILTINS, builtin_task

    for name in BUILTINS:
        embeds = ModelConfig(id="m", source=f"builtin:{name}").embeds
        assert embeds == (builtin_task(name) == "embed"), name


def test_lora_turns_on_vllms_lora_and_rays_multiplexing_with_a_local_table(tmp_path):
    model = ModelConfig(
        lora={
            "adapters": {"pirate": "/a/pirate"},
            "dynamic_dir": str(tmp_path),
            "max_loras": 3,
            "max_lora_rank": 8,
        }
    )
    kwargs = engine_kwargs(model)
    assert (kwargs["enable_lora"], kwargs["max_loras"], kwargs["max_lora_rank"]) == (True, 3, 8)
    weights = {**WEIGHTS, f"{BUILTIN_MODEL_ID}:pirate": "/cache/adapters/pirate"}
    config = llm_config(model, weights)
    assert config.lora_config.max_num_adapters_per_replica == 16
    table = config.experimental_configs[ADAPTERS_KEY]
    assert table == {"static": {"pirate": "/cache/adapters/pirate"}, "dynamic_dir": str(tmp_path)}
    # an adapter dropped into the dynamic directory is found; a directory without
    # adapter_config.json is not
    (tmp_path / "terse").mkdir()
    (tmp_path / "terse" / "adapter_config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    assert available(table) == {
        "pirate": "/cache/adapters/pirate",
        "terse": str(tmp_path / "terse"),
    }


def test_the_local_loader_hands_ray_the_adapters_directory(tmp_path):
    model = ModelConfig(lora={"adapters": {"pirate": str(tmp_path)}})
    config = llm_config(model, {**WEIGHTS, f"{BUILTIN_MODEL_ID}:pirate": str(tmp_path)})
    loader = LocalAdapterLoader(download_timeout_s=None, max_tries=1)

    def load(name: str):
        return asyncio.run(loader.load_model_from_config(f"{BUILTIN_MODEL_ID}:{name}", config))

    loaded = load("pirate")
    assert loaded.local_path == str(tmp_path) and loaded.model_id == f"{BUILTIN_MODEL_ID}:pirate"
    assert load("pirate") is loaded
    with pytest.raises(ValueError, match="no LoRA adapter 'nope'"):
        load("nope")


def test_the_router_setting_reaches_the_deployment_config():
    default = llm_config(ModelConfig(), WEIGHTS).deployment_config
    assert "request_router_config" not in default
    prefix = llm_config(ModelConfig(router="prefix_cache_affinity"), WEIGHTS).deployment_config
    assert prefix["request_router_config"] == {
        "request_router_class": "gpucluster.serving.routers:PrefixAffinityRouter"
    }


def test_the_prefix_router_routes_a_request_without_a_prompt_like_the_default():
    from types import SimpleNamespace

    from gpucluster.serving.routers import PrefixAffinityRouter

    router = PrefixAffinityRouter.__new__(PrefixAffinityRouter)
    detokenize = SimpleNamespace(args=[SimpleNamespace(tokens=[1, 2])])
    assert router._extract_text_from_request(detokenize) is None
    chat = SimpleNamespace(args=[SimpleNamespace(messages=[{"role": "user", "content": "Hi"}])])
    assert "Hi" in router._extract_text_from_request(chat)


def test_tool_calling_settings_become_vllm_frontend_arguments(tmp_path):
    template = tmp_path / "tools.jinja"
    model = ModelConfig(
        tool_call_parser="hermes", enable_auto_tool_choice=True, chat_template=template
    )
    kwargs = engine_kwargs(model)
    assert kwargs["tool_call_parser"] == "hermes" and kwargs["enable_auto_tool_choice"] is True
    assert kwargs["chat_template"] == str(template)
    assert "tool_call_parser" not in engine_kwargs(ModelConfig())


def test_only_a_plain_generative_model_streams_directly():
    assert Config().serves_directly
    for model in (
        {"lora": {"adapters": {"a": "/a"}}},
        {"router": "prefix_cache_affinity"},
        {"source": BUILTIN_EMBEDDING_SOURCE},
    ):
        assert not Config(models=[model]).serves_directly, model


def test_tool_calling_needs_the_parser_and_auto_choice_together():
    from pydantic import ValidationError

    for fields in ({"tool_call_parser": "hermes"}, {"enable_auto_tool_choice": True}):
        with pytest.raises(ValidationError, match="together"):
            ModelConfig(**fields)
    with pytest.raises(ValidationError, match="not a tool-call parser"):
        ModelConfig(tool_call_parser="nope", enable_auto_tool_choice=True)


def test_vllms_tool_call_parsers_are_the_ones_the_config_accepts():
    from vllm.tool_parsers import ToolParserManager

    from gpucluster.config.schema import TOOL_CALL_PARSERS

    assert sorted(TOOL_CALL_PARSERS) == sorted(ToolParserManager.list_registered())
