"""Pod sizes of the KubeRay deployment from the capacity maths (planning.pod_sizes).

Model shapes come as `gpucluster capacity` reads them, without the network: a config.json in a
Hugging Face cache under tmp_path, or the built-in table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpucluster.config import Config, load_config
from gpucluster.planning import pod_sizes
from gpucluster.planning.hardware import GiB, find_table_model
from gpucluster.planning.platform_pods import head_size, worker_sizes
from gpucluster.planning.pod_sizes import AdmissionBounds, PodSizeError, worker_pod

REPO = Path(__file__).resolve().parents[3]
PLATFORM = REPO / "deploy" / "kuberay" / "platform.yaml"

# Qwen/Qwen2.5-7B-Instruct's published config.json (the keys the planner reads)
QWEN7_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
    "intermediate_size": 18944, "max_position_embeddings": 32768, "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "vocab_size": 152064,
}  # fmt: skip
QWEN7 = find_table_model("Qwen/Qwen2.5-7B-Instruct")
QWEN32 = find_table_model("Qwen/Qwen2.5-32B-Instruct")
LLAMA70 = find_table_model("meta-llama/Llama-3.1-70B-Instruct")


def hub_cache(root: Path, repo_id: str, config: dict) -> Path:
    """A Hugging Face hub cache holding only `repo_id`'s config.json, as `hf download` leaves it."""
    repo = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(config))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    return root / "hub"


def platform_config(tmp_path: Path, **platform) -> Config:
    """deploy/kuberay/platform.yaml with its model cache under tmp_path (nothing pulled)."""
    config = load_config(PLATFORM, env={})
    data = config.model_dump(mode="json")
    data["platform"] |= {"model_cache_dir": str(tmp_path / "models"), **platform}
    return Config.model_validate(data)


def config_with(tmp_path: Path, *models: dict, **platform) -> Config:
    return Config.model_validate({
        "models": list(models),
        "platform": {"model_cache_dir": str(tmp_path / "models"), **platform},
    })  # fmt: skip


def amounts(terms) -> dict[str, float]:
    return {t.name: t.amount for t in terms}


def raw(terms) -> float:
    return sum(t.amount for t in terms)


# --- the platform.yaml model, term by term -------------------------------------------------------


def test_the_kuberay_models_worker_pod_term_by_term(tmp_path):
    config = platform_config(tmp_path)
    hub = hub_cache(tmp_path, "Qwen/Qwen2.5-7B-Instruct", QWEN7_CONFIG)
    (size,) = worker_sizes(config, hf_cache_dir=hub).values()
    assert (size.group, size.model) == ("gpu-tp1", "qwen2.5-7b-instruct")
    memory = amounts(size.memory_terms)
    # the shape counted from config.json: 7,615,616,512 parameters in bf16
    assert memory["checkpoint page cache"] == 7_615_616_512 * 2 / GiB
    assert memory["GPU worker processes"] == pod_sizes.GPU_PROCESS_GIB
    assert memory["frontend"] == pod_sizes.FRONTEND_GIB
    assert memory["engine core"] == pod_sizes.ENGINE_CORE_GIB
    assert memory["Ray node"] == pod_sizes.RAY_NODE_GIB
    # max_num_seqs 64: 128 admitted requests (2 x) at max_model_len 8192, ids in 3 processes
    # (frontend, engine core, one GPU process); direct path: 256 queued (4 x) wait here too,
    # every request's text at 16 B/token
    ids = 128 * 8192 * 3 * pod_sizes.TOKEN_ID_BYTES
    text = (128 + 256) * 8192 * pod_sizes.TEXT_BYTES_PER_TOKEN
    assert config.serves_directly
    assert memory["requests held"] == (ids + text) / GiB
    assert memory["CPU offload"] == 0
    assert memory["/dev/shm"] == size.shm_gib == 1  # no NCCL at tp 1
    assert amounts(size.cpu_terms) == {
        "GPU worker processes": 1, "engine core": 1, "frontend": 1, "tokenizer threads": 1,
        "Ray node": 1,
    }  # fmt: skip
    # 14.19 + 3 + 2 + 1.5 + 1 + 0.19 + 1 = 22.87 GiB
    assert (size.memory_gib, size.cpu, size.ray_cpus) == (23, 5, 2)
    assert size.overridden == ()


def test_the_config_json_and_the_built_in_table_give_the_same_pod(tmp_path):
    config = platform_config(tmp_path)
    hub = hub_cache(tmp_path, "Qwen/Qwen2.5-7B-Instruct", QWEN7_CONFIG)
    from_config = worker_sizes(config, hf_cache_dir=hub)[1]
    from_table = worker_sizes(config, hf_cache_dir=tmp_path / "empty")[1]
    assert "abc123" not in str(from_table)
    assert from_config.memory_terms == from_table.memory_terms


def test_the_kuberay_head_term_by_term(tmp_path):
    size = head_size(platform_config(tmp_path))
    memory = amounts(size.memory_terms)
    assert "ingress replica" not in memory  # one model: its replicas are the ingress
    # the proxy holds 2 replicas x 128 admitted + 256 queued requests, 128 KiB of text each
    assert memory["request bodies"] == (2 * 128 + 256) * 8192 * 16 / GiB
    assert memory["/dev/shm"] == size.shm_gib == 1
    assert "checkpoint page cache" not in memory  # no model replica on the head
    assert (size.memory_gib, size.cpu, size.ray_cpus) == (7, 4, 0)


def test_the_ingress_replica_runs_on_the_head_when_the_replicas_are_not_the_ingress(tmp_path):
    config = config_with(
        tmp_path,
        {"id": "a", "source": "Qwen/Qwen2.5-7B-Instruct", "accelerator": "gpu"},
        {"id": "b", "source": "Qwen/Qwen2.5-7B-Instruct", "accelerator": "gpu"},
    )
    assert not config.serves_directly
    size = head_size(config)
    assert amounts(size.memory_terms)["ingress replica"] == pod_sizes.INGRESS.gib
    assert amounts(size.cpu_terms)["ingress replica"] == pod_sizes.INGRESS.cores
    assert size.ray_cpus == 1  # the ingress deployment asks for one CPU on the head
    direct = head_size(config_with(tmp_path, {"id": "a", "source": "x/y", "accelerator": "gpu"}))
    assert size.cpu > direct.cpu and size.memory_gib > direct.memory_gib
    # queued requests wait in the ingress, not in the model's pods
    (worker,) = worker_sizes(config, hf_cache_dir=tmp_path).values()
    assert "queued" not in next(t for t in worker.memory_terms if t.name == "requests held").source


# --- sizes move the right way --------------------------------------------------------------------


def sized(shape, **kwargs):
    kwargs = {"tp": 1, "context_tokens": 8192, "ongoing_requests": 128, **kwargs}
    return worker_pod(shape, **kwargs)


def test_a_bigger_model_needs_more_memory_and_the_same_cpu():
    small, big = sized(QWEN7), sized(QWEN32)
    assert raw(big.memory_terms) > raw(small.memory_terms)
    assert big.memory_gib > small.memory_gib
    assert big.cpu == small.cpu


def test_a_longer_context_needs_more_memory():
    short, long = sized(QWEN7, context_tokens=8192), sized(QWEN7, context_tokens=32768)
    assert raw(long.memory_terms) > raw(short.memory_terms)
    assert long.memory_gib > short.memory_gib  # 22.9 -> 23.6 GiB
    assert long.cpu == short.cpu
    more_sequences = sized(QWEN7, ongoing_requests=512)
    assert raw(more_sequences.memory_terms) > raw(short.memory_terms)


def test_more_gpus_per_replica_need_more_cpu_memory_and_shm():
    one, four = sized(LLAMA70, tp=1), sized(LLAMA70, tp=4)
    assert four.cpu == one.cpu + 3 and four.ray_cpus == 5
    assert four.shm_gib == 1 + 4 > one.shm_gib
    assert raw(four.memory_terms) > raw(one.memory_terms)
    # the checkpoint is cached once per pod, whatever the tensor parallel size
    assert amounts(four.memory_terms)["checkpoint page cache"] == amounts(
        one.memory_terms)["checkpoint page cache"]  # fmt: skip


def test_quantized_weights_and_cpu_offload():
    fp8 = sized(QWEN32, dtype="fp8")
    bf16 = sized(QWEN32, dtype="auto")
    assert amounts(fp8.memory_terms)["checkpoint page cache"] * 2 == amounts(
        bf16.memory_terms)["checkpoint page cache"]  # fmt: skip
    offload = sized(QWEN7, tp=2, cpu_offload_gib=4, kv_offload_gib=8)
    assert amounts(offload.memory_terms)["CPU offload"] == 4 * 2 + 8


def test_a_model_without_max_model_len_holds_its_own_context(tmp_path):
    config = config_with(tmp_path, {"id": "q", "source": "Qwen/Qwen2.5-7B-Instruct",
                                    "accelerator": "gpu", "max_model_len": None})  # fmt: skip
    (size,) = worker_sizes(config, hf_cache_dir=tmp_path).values()
    held = next(t for t in size.memory_terms if t.name == "requests held")
    assert "32,768 tokens" in held.how  # the model's max_position_embeddings


# --- groups, unknown models and overrides -------------------------------------------------------


def test_models_sharing_a_group_get_the_largest_pod(tmp_path):
    config = config_with(
        tmp_path,
        {"id": "small", "source": "Qwen/Qwen2.5-7B-Instruct", "accelerator": "gpu"},
        {"id": "big", "source": "Qwen/Qwen2.5-32B-Instruct", "accelerator": "gpu",
         "tensor_parallel_size": 2},
        {"id": "bigger", "source": "meta-llama/Llama-3.1-70B-Instruct", "accelerator": "gpu",
         "tensor_parallel_size": 2, "max_model_len": 8192},
    )  # fmt: skip
    sizes = worker_sizes(config, hf_cache_dir=tmp_path)
    assert {tp: s.model for tp, s in sizes.items()} == {1: "small", 2: "bigger"}


def test_an_unknown_model_is_refused_naming_the_fixes(tmp_path):
    config = config_with(tmp_path, {"id": "mystery", "source": "org/mystery", "accelerator": "gpu"})
    with pytest.raises(PodSizeError) as caught:
        worker_sizes(config, hf_cache_dir=tmp_path)
    message = str(caught.value)
    assert "mystery" in message and "hf download org/mystery config.json" in message
    assert "platform.kubernetes.worker_resources" in message
    # its config.json in the hub cache is enough
    hub = hub_cache(tmp_path, "org/mystery", QWEN7_CONFIG)
    assert worker_sizes(config, hf_cache_dir=hub)[1].memory_gib == 23


def test_overrides_replace_the_derived_numbers(tmp_path):
    config = config_with(
        tmp_path,
        {"id": "mystery", "source": "org/mystery", "accelerator": "gpu", "tensor_parallel_size": 2},
        kubernetes={"head_resources": {"memory_gib": 12},
                    "worker_resources": {2: {"memory_gib": 80}}},
    )  # fmt: skip
    (worker,) = worker_sizes(config, hf_cache_dir=tmp_path).values()  # no shape needed
    assert (worker.memory_gib, worker.cpu, worker.shm_gib) == (80, 6, 3)
    assert worker.overridden == ("memory_gib",)
    head = head_size(config)
    assert (head.memory_gib, head.cpu, head.overridden) == (12, head.derived_cpu, ("memory_gib",))
    cpu_only = config_with(
        tmp_path, {"id": "q", "source": "Qwen/Qwen2.5-7B-Instruct", "accelerator": "gpu"},
        kubernetes={"worker_resources": {1: {"cpu": 16}}},
    )  # fmt: skip
    (worker,) = worker_sizes(cpu_only, hf_cache_dir=tmp_path).values()
    assert (worker.cpu, worker.memory_gib) == (16, worker.derived_memory_gib)


@pytest.mark.parametrize(
    ("kubernetes", "message"),
    [
        ({"worker_resources": {4: {"memory_gib": 40}}}, "no model has tensor_parallel_size 4"),
        ({"worker_resources": {2: {"cpu": 2}}}, "3 Ray CPUs"),
        ({"worker_resources": {2: {"memory_gib": 0}}}, "greater than or equal to 1"),
        ({"head_resources": {"gpu": 1}}, "Extra inputs"),
    ],
)
def test_overrides_are_validated(tmp_path, kubernetes, message):
    with pytest.raises(ValueError, match=message):
        config_with(tmp_path, {"id": "a", "source": "org/a", "accelerator": "gpu",
                               "tensor_parallel_size": 2}, kubernetes=kubernetes)  # fmt: skip


def test_admission_bounds_are_the_replicas():
    from gpucluster.config import ModelConfig
    from gpucluster.serving.app import admission_limits

    for admission in ({}, {"max_ongoing_requests": 7, "max_queued_requests": -1},
                      {"max_queued_requests": 0}):  # fmt: skip
        model = ModelConfig(max_num_seqs=24, admission=admission)
        limits = admission_limits(model)
        assert AdmissionBounds.of(model) == AdmissionBounds(limits.max_ongoing, limits.max_queued)
