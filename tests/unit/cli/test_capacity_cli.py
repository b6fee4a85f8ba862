"""`gpucluster capacity` as scripts see it: --json parsed back, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpucluster.cli.capacity import capacity
from gpucluster.cli.errors import Typer
from gpucluster.config import load_config
from gpucluster.planning.platform_pods import worker_sizes


@pytest.fixture
def run(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("GPUCLUSTER_"):
            monkeypatch.delenv(name)
    # An empty model cache: the built-in model's shape then comes from the table.
    monkeypatch.setenv("GPUCLUSTER_MODEL_CACHE", str(tmp_path / "models"))
    app = Typer()  # the CLI's, with its error handler
    app.command("capacity")(capacity)
    app.command("other")(lambda: None)  # two commands: `capacity` is a subcommand, as in main
    runner = CliRunner()
    hub = str(tmp_path / "hub")
    return lambda *args: runner.invoke(app, ["capacity", "--hf-cache", hub, *args])


def test_the_default_model_on_cpu_with_one_gib_fits(run):
    result = run("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["fits"] is True
    assert data["gpu"]["name"] == "cpu" and data["model"]["name"] == "smollm2-135m-instruct"
    assert data["kv_bytes_per_token"] == 23_040
    assert data["kv_token_capacity"] == 46_592
    assert data["max_model_len"] == 2048 and data["max_num_seqs"] == 16  # the config defaults


def test_a_mixture_of_experts_shows_its_experts_and_a_dense_model_has_none(run, tmp_path):
    config = {
        "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
        "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
        "vocab_size": 32000, "torch_dtype": "bfloat16",
    }  # fmt: skip
    (tmp_path / "mixtral").mkdir()
    (tmp_path / "mixtral" / "config.json").write_text(json.dumps(config))
    moe = json.loads(run("--json", "-m", str(tmp_path / "mixtral"), "-g", "h100", "--tp", "2",
                         "--max-model-len", "8192").stdout)  # fmt: skip
    assert moe["model"]["experts"]["count"] == 8 and moe["model"]["params"] > 46e9
    people = run("-m", str(tmp_path / "mixtral"), "-g", "h100", "--tp", "2")
    assert "B activated per token" in people.output
    assert "experts" not in json.loads(run("--json").stdout)["model"]


def test_a_config_file_supplies_the_model_settings(run, tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text("models:\n  - id: small\n    cpu_kvcache_gib: 2\n    max_model_len: 4096\n")
    data = json.loads(run("--json", "-c", str(config)).stdout)
    assert data["kv_token_capacity"] == 728 * 128
    assert data["max_model_len"] == 4096
    overridden = json.loads(run("--json", "-c", str(config), "--kv-cache-gib", "1").stdout)
    assert overridden["kv_token_capacity"] == 46_592


def test_a_model_that_does_not_fit_exits_1_naming_the_smallest_tp(run):
    result = run("--json", "-m", "Qwen/Qwen2.5-32B-Instruct", "-g", "H100", "--max-model-len",
                 "32768")  # fmt: skip
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["smallest_tp"] == 2
    assert data["kv_token_capacity"] == 31_344


def test_people_get_tables_and_the_advice(run):
    result = run("-m", "Qwen/Qwen2.5-32B-Instruct", "-g", "h100", "--max-model-len", "32768")
    assert result.exit_code == 1
    assert "does not fit" in result.output
    assert "smallest tensor-parallel size that fits is 2" in result.output.replace("\n", " ")
    assert "tensor-parallel options" in result.output


def test_a_target_load_adds_replicas(run):
    result = run("--json", "-m", "meta-llama/Llama-3.1-8B-Instruct", "-g", "a100-80gb",
                 "--max-model-len", "8192", "--rps", "30", "--input-tokens", "1000",
                 "--output-tokens", "300")  # fmt: skip
    assert result.exit_code == 0, result.output
    load = json.loads(result.stdout)["load"]
    assert load["replicas"] >= 1
    assert load["replicas"] * load["replica_decode_tokens_per_s"] >= 30 * 300


def test_a_gpu_plan_shows_the_kuberay_worker_pod_render_would_size(run, tmp_path):
    platform = Path(__file__).resolve().parents[3] / "deploy" / "kuberay" / "platform.yaml"
    result = run("--json", "-c", str(platform), "-g", "l4")
    assert result.exit_code == 0, result.output
    pod = json.loads(result.stdout)["kuberay_worker_pod"]
    config = load_config(platform, env={"GPUCLUSTER_MODEL_CACHE": str(tmp_path / "models")})
    rendered = worker_sizes(config, hf_cache_dir=tmp_path / "hub")[1]
    assert (pod["cpu"], pod["memory_gib"], pod["shm_gib"]) == (
        rendered.cpu,
        rendered.memory_gib,
        rendered.shm_gib,
    )
    assert [t["amount"] for t in pod["memory_terms"]] == [t.amount for t in rendered.memory_terms]
    people = run("-c", str(platform), "-g", "l4")
    assert f"KubeRay worker pod (gpu-tp1): {rendered.cpu} CPUs" in people.output
    assert "kuberay_worker_pod" not in json.loads(run("--json").stdout)  # cpu: not on KubeRay


@pytest.mark.parametrize(
    "args, message",
    [
        (["-g", "V100"], "known: H100-80GB-SXM"),
        (["-m", "acme/unknown", "-g", "h100"], "known: smollm2-135m-instruct"),
        (["-m", "Qwen/Qwen2.5-32B-Instruct"], "pass --gpu"),
        (["-m", "Qwen/Qwen2.5-32B-Instruct", "-g", "h100", "--tp", "3"], "does not divide"),
        (["--rps", "3"], "--input-tokens"),
        (["-g", "h100", "--kv-cache-gib", "2"], "cpu only"),
    ],
)
def test_usage_errors_exit_2(run, args, message):
    result = run("--json", *args)
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and message in data["error"]
