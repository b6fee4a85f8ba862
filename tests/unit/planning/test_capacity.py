"""Capacity maths against hand-computed values (docs/capacity-planning.md has the formulas)."""

from __future__ import annotations

import math

import pytest

from gpucluster.planning.arithmetic import decode_rate, estimate_params, kv_bytes_per_token
from gpucluster.planning.capacity import plan
from gpucluster.planning.hardware import (
    GPUS,
    MODELS,
    GiB,
    UnknownNameError,
    find_gpu,
    find_table_model,
)
from gpucluster.planning.inputs import CapacityInputError, Load, PlanInputs, parse_params

MiB = 2**20


def model(name: str):
    found = find_table_model(name)
    assert found is not None
    return found


QWEN32 = model("Qwen/Qwen2.5-32B-Instruct")
LLAMA70 = model("meta-llama/Llama-3.1-70B-Instruct")
MISTRAL = model("mistralai/Mistral-7B-Instruct-v0.3")
SMOL = model("SmolLM2-135M-Instruct")
H100, L4, CPU = find_gpu("H100 80GB SXM"), find_gpu("l4"), find_gpu("cpu")


# --- KV bytes per token: 2 x layers x kv_heads x head_dim x bytes -----------------------------


def test_kv_bytes_per_token_of_grouped_query_attention_models():
    assert kv_bytes_per_token(QWEN32, 2) == 2 * 64 * 8 * 128 * 2 == 262_144
    assert kv_bytes_per_token(LLAMA70, 2) == 2 * 80 * 8 * 128 * 2 == 327_680
    assert kv_bytes_per_token(MISTRAL, 2) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert kv_bytes_per_token(SMOL, 2) == 2 * 30 * 3 * 64 * 2 == 23_040
    assert kv_bytes_per_token(LLAMA70, 1) == 163_840  # fp8 halves it


def test_kv_heads_split_over_tp_until_each_gpu_holds_one_replicated_head():
    assert kv_bytes_per_token(QWEN32, 2, tp=2) == 131_072
    assert kv_bytes_per_token(QWEN32, 2, tp=8) == 2 * 64 * 1 * 128 * 2
    at8 = plan(LLAMA70, H100, PlanInputs(tp=8, max_model_len=8192))
    at16 = plan(LLAMA70, H100, PlanInputs(tp=16, max_model_len=8192))
    assert (at8.kv_heads_per_gpu, at8.kv_replicated) == (1, False)
    assert (at16.kv_heads_per_gpu, at16.kv_replicated) == (1, True)
    assert at16.kv_bytes_per_token_per_gpu == at8.kv_bytes_per_token_per_gpu == 40_960
    assert any("replicated" in note for note in at16.notes)


def test_the_table_parameter_counts_match_the_shapes():
    for shape in MODELS:
        assert estimate_params(shape) == shape.params, shape.name


# --- memory: fits, does not fit, smallest TP ---------------------------------------------------


def test_qwen32b_on_one_h100_leaves_less_than_one_32k_sequence():
    result = plan(QWEN32, H100, PlanInputs(tp=1, max_model_len=32768, gpu_memory_utilization=0.9))
    usable = int(81559 * MiB * 0.9)
    weights = 32_763_876_352 * 2
    kv = usable - weights - 3 * GiB
    assert result.weight_bytes_per_gpu == weights == 65_527_752_704
    assert result.usable_bytes_per_gpu == usable == 76_968_728_985
    assert result.kv_cache_bytes_per_gpu == kv == 8_219_750_809
    assert result.kv_blocks == kv // (16 * 262_144) == 1959
    assert result.kv_token_capacity == 1959 * 16 == 31_344
    assert not result.fits and result.max_sequences_at_max_model_len == 0
    assert result.smallest_tp == 2
    assert "smallest tensor-parallel size that fits is 2" in result.reason
    assert result.decode_tokens_per_s is None


def test_qwen32b_at_tp2_shards_weights_and_kv_and_adds_the_nccl_overhead():
    result = plan(QWEN32, H100, PlanInputs(tp=2, max_model_len=32768))
    kv = int(81559 * MiB * 0.9) - 32_763_876_352 - 5 * GiB
    assert result.weight_bytes_per_gpu == 32_763_876_352
    assert result.overhead_bytes_per_gpu == 5 * GiB
    assert result.kv_bytes_per_token_per_gpu == 131_072
    assert result.kv_blocks == kv // (16 * 131_072)
    assert result.kv_token_capacity == result.kv_blocks * 16
    assert result.fits and result.max_sequences_at_max_model_len == result.kv_blocks // 2048
    assert result.max_concurrency == pytest.approx(result.kv_blocks / 2048)


def test_mistral_on_l4_fits_16k_but_needs_tp2_for_32k():
    usable = int(23034 * MiB * 0.9)
    kv = usable - 7_248_023_552 * 2 - 3 * GiB
    short = plan(MISTRAL, L4, PlanInputs(max_model_len=16384))
    assert short.usable_bytes_per_gpu == usable
    assert short.kv_cache_bytes_per_gpu == kv == 4_020_337_049
    assert short.kv_blocks == kv // (16 * 131_072) == 1917
    assert short.kv_token_capacity == 30_672
    assert short.fits and short.max_sequences_at_max_model_len == 1
    long = plan(MISTRAL, L4, PlanInputs(max_model_len=32768))
    assert not long.fits and long.smallest_tp == 2
    tp2 = next(option for option in long.tp_options if option.tp == 2)
    kv2 = usable - 7_248_023_552 - 5 * GiB
    assert tp2.kv_token_capacity == kv2 // (16 * 65_536) * 16 == 139_168


def test_weights_that_do_not_fit_at_any_tp_say_what_to_do():
    result = plan(LLAMA70, L4, PlanInputs(tp=8, max_model_len=131072))
    assert not result.fits and result.smallest_tp is None
    assert "no tensor-parallel size" in result.reason


def test_tp_options_skip_sizes_the_heads_do_not_divide():
    qwen7 = model("Qwen/Qwen2.5-7B-Instruct")  # 28 heads, 4 KV heads
    result = plan(qwen7, H100, PlanInputs(max_model_len=32768))
    valid = {option.tp: option.valid for option in result.tp_options}
    assert valid == {1: True, 2: True, 4: True, 8: False}


def test_quantized_weights_keep_the_kv_cache_in_the_compute_dtype():
    result = plan(QWEN32, H100, PlanInputs(dtype="fp8", max_model_len=32768))
    assert result.weight_bytes_per_gpu == 32_763_876_352
    assert (result.kv_cache_dtype, result.kv_bytes_per_token) == ("bf16", 262_144)
    int4 = plan(QWEN32, H100, PlanInputs(dtype="int4"))
    assert int4.weight_bytes_per_gpu == 32_763_876_352 // 2
    fp8_kv = plan(QWEN32, H100, PlanInputs(kv_cache_dtype="fp8", max_model_len=32768))
    assert fp8_kv.kv_bytes_per_token == 131_072 and fp8_kv.fits


# --- CPU: the KV cache is VLLM_CPU_KVCACHE_SPACE -----------------------------------------------


def test_cpu_kv_capacity_is_the_kv_space_over_bytes_per_token_in_whole_blocks():
    result = plan(SMOL, CPU, PlanInputs(kv_cache_gib=1, max_model_len=2048))
    assert result.block_size == 128
    assert result.kv_cache_bytes_per_gpu == 2**30
    assert result.weight_bytes_per_gpu == 134_515_008 * 2  # shown, but not charged on CPU
    assert result.kv_blocks == 2**30 // (128 * 23_040) == 364
    assert result.kv_token_capacity == result.vllm_reported_kv_tokens == 46_592
    assert result.max_concurrency == 22.75 and result.max_sequences_at_max_model_len == 22
    assert result.fits and result.decode_tokens_per_s is None  # no bandwidth figure for cpu
    # vLLM allocates whole blocks: fewer tokens than the unrounded 2**30 / 23_040
    unrounded = result.kv_cache_bytes_per_gpu // result.kv_bytes_per_token
    assert result.kv_token_capacity < unrounded == 46_603
    small_blocks = plan(SMOL, CPU, PlanInputs(kv_cache_gib=1, block_size=16))
    assert small_blocks.kv_token_capacity == 2912 * 16
    assert plan(SMOL, CPU, PlanInputs(kv_cache_gib=2)).kv_token_capacity == 728 * 128


def test_cpu_kv_space_too_small_names_the_gib_needed():
    result = plan(SMOL, CPU, PlanInputs(kv_cache_gib=0.125, max_model_len=8192))
    assert result.kv_blocks == 45 and not result.fits
    assert "raise --kv-cache-gib to at least 1" in result.reason


def test_vllm_log_figure_follows_its_formula_when_the_length_is_not_a_block_multiple():
    # 16 blocks per request
    result = plan(SMOL, CPU, PlanInputs(kv_cache_gib=1, max_model_len=2000))
    assert result.vllm_reported_kv_tokens == int(364 / 16 * 2000) == 45_500
    assert result.kv_token_capacity == 46_592


# --- decode bound and replicas -----------------------------------------------------------------


def test_decode_rate_is_batch_times_bandwidth_over_bytes_read_per_step():
    assert decode_rate(1e9, 1e5, batch=10, context=1000, bandwidth=1e12) == 5000
    assert decode_rate(1e9, 0, batch=1, context=0, bandwidth=1e12) == 1000


def test_replicas_when_max_num_seqs_caps_the_batch():
    load = Load(rps=20, input_tokens=512, output_tokens=256)
    result = plan(SMOL, CPU, PlanInputs(kv_cache_gib=1, bandwidth_gbs=100, max_num_seqs=16,
                                   max_model_len=2048, load=load))  # fmt: skip
    weights, context = 134_515_008 * 2, 512 + 128
    rate = 16 * 100e9 / (weights + 16 * context * 23_040)
    load = result.load
    assert load.sequences_per_replica == 16 and load.concurrency_limit == "max_num_seqs"
    assert load.prefill_seconds_per_request is None and load.binding == "decode"  # no FLOPs
    assert result.load.replica_decode_tokens_per_s == pytest.approx(rate)  # ~3169 tok/s
    assert result.load.required_decode_tokens_per_s == 20 * 256
    assert result.load.replicas == math.ceil(5120 / rate) == 2
    # Little's law at 2 replicas: in flight = rps x time per request = replicas x batch.
    assert result.load.steady_batch_per_replica <= 16
    assert result.load.in_flight_sequences == pytest.approx(20 * result.load.request_seconds)
    assert load.in_flight_sequences == pytest.approx(2 * load.steady_batch_per_replica)


def test_replicas_when_the_kv_cache_caps_the_batch():
    load = Load(rps=20, input_tokens=512, output_tokens=256)
    result = plan(SMOL, CPU, PlanInputs(kv_cache_gib=1, bandwidth_gbs=100, max_num_seqs=256,
                                   load=load, max_model_len=2048))  # fmt: skip
    assert result.load.sequences_per_replica == 364 // 6 == 60
    assert result.load.concurrency_limit == "kv_cache"
    assert result.load.replicas == 1
    assert result.load.gpus == 1


def test_replicas_on_gpus_cover_the_load_with_the_fewest_replicas():
    load = Load(rps=40, input_tokens=1000, output_tokens=500)
    result = plan(model("meta-llama/Llama-3.1-8B-Instruct"), H100,
             PlanInputs(max_model_len=8192, load=load))  # fmt: skip
    load = result.load
    assert load.replicas * load.replica_decode_tokens_per_s >= 40 * 500
    assert (load.replicas - 1) * load.replica_decode_tokens_per_s < 40 * 500
    assert 0 < load.kv_share_of_step_bytes < 1


def test_prompt_heavy_loads_are_bound_by_prefill_compute():
    load = Load(rps=20, input_tokens=2000, output_tokens=300)
    result = plan(QWEN32, H100, PlanInputs(tp=2, max_model_len=32768, load=load))
    params = 32_763_876_352
    prefill = 2 * params * 2000 / (2 * 989e12)  # ~66 ms on two GPUs at peak
    assert result.load.sequences_per_replica == 18518 // math.ceil(2300 / 16) == 128
    rate = 128 * 3.35e12 / (params + 128 * 2150 * 131_072)  # ~6229 tok/s
    assert result.load.replica_decode_tokens_per_s == pytest.approx(rate)
    assert result.load.prefill_seconds_per_request == pytest.approx(prefill)
    assert result.load.replicas == math.ceil(20 * prefill + 6000 / rate) == 3
    assert result.load.binding == "prefill" and result.load.gpus == 6
    assert result.load.in_flight_sequences == pytest.approx(20 * result.load.request_seconds)
    assert result.load.steady_batch_per_replica <= 128


def test_decode_of_short_sequences_in_big_batches_is_capped_by_compute():
    llama8 = model("meta-llama/Llama-3.1-8B-Instruct")
    load = Load(rps=1, input_tokens=100, output_tokens=100)
    result = plan(llama8, H100, PlanInputs(max_model_len=8192, load=load))
    assert result.decode_batch == 1024  # vLLM's default max_num_seqs on an H100
    assert result.decode_limit == "compute"
    assert result.decode_tokens_per_s == pytest.approx(989e12 / (2 * 8_030_261_248))


def test_load_longer_than_max_model_len_is_an_input_error():
    load = Load(rps=1, input_tokens=1000, output_tokens=100)
    with pytest.raises(CapacityInputError, match="exceed max_model_len"):
        plan(SMOL, CPU, PlanInputs(max_model_len=1024, load=load))


# --- inputs ------------------------------------------------------------------------------------


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        find_gpu("V100")
    for gpu in GPUS:
        assert gpu.name in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tp": 3}, "does not divide"),
        ({"max_model_len": 65536}, "max_position_embeddings"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"kv_cache_gib": 4}, "cpu only"),
        ({"dtype": "int3"}, "unknown dtype"),
    ],
)
def test_inputs_vllm_would_refuse(kwargs, message):
    with pytest.raises(CapacityInputError, match=message):
        plan(QWEN32, H100, PlanInputs(**kwargs))


def test_parse_params():
    assert parse_params("32.8B") == 32_800_000_000
    assert parse_params("135m") == 135_000_000
    assert parse_params("7615616512") == 7_615_616_512
    with pytest.raises(CapacityInputError):
        parse_params("lots")
