"""Built-in LoRA adapters: the recipe table, the stamp, the cache's reuse, and one real training.

The cache tests replace the training by a fake trainer writing two small files, so they run in
milliseconds; `test_real_training_changes_the_greedy_answer` trains the real adapter on the
prepared built-in model, for the first REAL_TRAINING_STEPS of the recipe's 30 steps (the
longest unit test still), and fails when that model is not prepared (setup prepares it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from gpucluster.models import adapters
from gpucluster.models.adapters import (
    ADAPTER_FILES,
    ADAPTERS,
    REQUIRED_CONFIG_FIELDS,
    BuiltinAdapter,
    adapter_dir,
    prepare_adapter,
    stamp_for,
)
from gpucluster.models.builtin import BUILTINS
from gpucluster.models.cache import MARKER
from gpucluster.models.sources import ModelPrepareError

NAME = "smollm2-135m-instruct-pirate"
# The real training test runs the recipe's first steps only: three passes over its 16 examples
# already halve the loss and turn the answer to an unseen question into a pirate's (measured:
# "Ahoy" from step 6 on). The whole recipe is what `gpucluster prepare` runs and the live
# multi-tenant test serves.
REAL_TRAINING_STEPS = 12
BASE_STAMP = {"conversion": 1, "source": "builtin:smollm2-135m-instruct"}


class FakeTrainer:
    """Writes an adapter directory's two files (0600, like safetensors) and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, adapter: BuiltinAdapter, base_dir: Path, out_dir: Path, progress) -> None:
        self.calls.append(out_dir)
        progress(f"training LoRA adapter {adapter.name}: step 1/1, loss 1.0")
        config = {
            "r": adapter.rank,
            "lora_alpha": adapter.alpha,
            "base_model_name_or_path": "x",
            "target_modules": list(adapter.target_modules),
        }
        (out_dir / "adapter_config.json").write_text(json.dumps(config))
        weights = out_dir / "adapter_model.safetensors"
        weights.write_bytes(b"\0" * 64)
        weights.chmod(0o600)


def _base(tmp_path: Path, stamp: dict | None = None) -> Path:
    base = tmp_path / "cache" / "smollm2-135m-instruct"
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text("{}")
    (base / MARKER).write_text(json.dumps(stamp or BASE_STAMP))
    return base


def test_table_is_well_formed() -> None:
    assert NAME in ADAPTERS
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name
        assert adapter.base in BUILTINS
        assert name.startswith(adapter.base + "-")
        assert adapter.rank > 0 and adapter.alpha > 0
        assert adapter.target_modules and all(adapter.target_modules)
        assert 0 < adapter.steps <= 100  # prepare-time training stays cheap
        assert 0 < adapter.batch_size <= len(adapter.examples)
        assert 0 < adapter.learning_rate < 1
        assert len(adapter.examples) >= 8
        questions = [q for q, _ in adapter.examples]
        assert len(set(questions)) == len(questions)
        assert all(q.strip() and a.strip() for q, a in adapter.examples)
        assert adapter.description
    pirate = ADAPTERS[NAME]
    assert (pirate.rank, pirate.alpha, pirate.target_modules) == (8, 16, ("q_proj", "v_proj"))
    assert all(answer.startswith("Ahoy, matey!") for _, answer in pirate.examples)
    # The tests' prompts are not in the training data: the behaviour must generalise.
    assert not any("France" in question for question, _ in pirate.examples)


@pytest.mark.parametrize(
    "change",
    [
        {"steps": 31},
        {"batch_size": 8},
        {"seed": 4321},
        {"rank": 4},
        {"alpha": 8},
        {"target_modules": ("q_proj", "k_proj", "v_proj")},
        {"learning_rate": 1e-3},
        {"examples": ADAPTERS[NAME].examples[:-1]},
        {"examples": (("Hi", "Ahoy, matey! Hi, arr!"), *ADAPTERS[NAME].examples[1:])},
        {"base": "other-base"},
    ],
)
def test_stamp_changes_with_the_recipe(change: dict) -> None:
    adapter = ADAPTERS[NAME]
    assert stamp_for(dataclasses.replace(adapter, **change), BASE_STAMP) != stamp_for(
        adapter, BASE_STAMP
    )


def test_stamp_changes_with_the_recipe_version_and_the_base_stamp(monkeypatch) -> None:
    adapter = ADAPTERS[NAME]
    stamp = stamp_for(adapter, BASE_STAMP)
    assert stamp == stamp_for(adapter, dict(BASE_STAMP))  # stable
    assert stamp_for(adapter, {**BASE_STAMP, "conversion": 2}) != stamp
    monkeypatch.setattr(adapters, "RECIPE_VERSION", adapters.RECIPE_VERSION + 1)
    assert stamp_for(adapter, BASE_STAMP) != stamp
    # The description is documentation, not part of the recipe.
    monkeypatch.undo()
    assert stamp_for(dataclasses.replace(adapter, description="other"), BASE_STAMP) == stamp


def test_adapter_is_trained_into_the_cache_then_reused(tmp_path: Path) -> None:
    base, cache = _base(tmp_path), tmp_path / "cache"
    trainer = FakeTrainer()
    messages: list[str] = []
    path = prepare_adapter(NAME, base, cache, messages.append, trainer=trainer)
    assert path == adapter_dir(cache, NAME) == cache / "adapters" / NAME
    assert sorted(p.name for p in path.iterdir()) == sorted([*ADAPTER_FILES, MARKER])
    assert all(stat.S_IMODE((path / f).stat().st_mode) == 0o644 for f in ADAPTER_FILES)
    assert json.loads((path / MARKER).read_text())["base_stamp"] == BASE_STAMP
    assert len(trainer.calls) == 1 and trainer.calls[0].name.startswith(f".tmp-{NAME}-")
    assert "step 1/1, loss" in "\n".join(messages)
    assert "done" in messages[-1] and "MiB" in messages[-1]
    assert list((cache / "adapters").glob(".tmp-*")) == []

    messages.clear()
    assert prepare_adapter(NAME, base, cache, messages.append, trainer=trainer) == path
    assert len(trainer.calls) == 1
    assert "reusing" in messages[-1]


def test_a_rebuilt_base_model_retrains_the_adapter(tmp_path: Path) -> None:
    base, cache = _base(tmp_path), tmp_path / "cache"
    trainer = FakeTrainer()
    prepare_adapter(NAME, base, cache, trainer=trainer)
    _base(tmp_path, {**BASE_STAMP, "conversion": 2})
    prepare_adapter(NAME, base, cache, trainer=trainer)
    assert len(trainer.calls) == 2


def test_a_changed_recipe_retrains_the_adapter(tmp_path: Path, monkeypatch) -> None:
    base, cache = _base(tmp_path), tmp_path / "cache"
    trainer = FakeTrainer()
    prepare_adapter(NAME, base, cache, trainer=trainer)
    monkeypatch.setitem(ADAPTERS, NAME, dataclasses.replace(ADAPTERS[NAME], steps=7))
    prepare_adapter(NAME, base, cache, trainer=trainer)
    assert len(trainer.calls) == 2
    assert json.loads((adapter_dir(cache, NAME) / MARKER).read_text())["steps"] == 7


def test_an_unprepared_base_model_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "cache" / "smollm2-135m-instruct"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")  # no marker: an unfinished conversion
    with pytest.raises(ModelPrepareError, match="gpucluster prepare"):
        prepare_adapter(NAME, base, tmp_path / "cache", trainer=FakeTrainer())
    assert not adapter_dir(tmp_path / "cache", NAME).exists()


def test_unknown_adapter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelPrepareError, match=NAME):
        prepare_adapter("nope", _base(tmp_path), tmp_path / "cache", trainer=FakeTrainer())


def test_failed_training_leaves_nothing_and_names_the_adapter(tmp_path: Path) -> None:
    base, cache = _base(tmp_path), tmp_path / "cache"

    def failing(adapter, base_dir, out_dir, progress) -> None:
        (out_dir / "adapter_config.json").write_text("{}")
        raise RuntimeError("out of memory")

    with pytest.raises(ModelPrepareError, match=f"{NAME}.*out of memory"):
        prepare_adapter(NAME, base, cache, trainer=failing)
    assert not adapter_dir(cache, NAME).exists()
    assert list((cache / "adapters").glob(".tmp-*")) == []

    def incomplete(adapter, base_dir, out_dir, progress) -> None:
        (out_dir / "adapter_config.json").write_text("{}")

    with pytest.raises(ModelPrepareError, match="adapter_model.safetensors"):
        prepare_adapter(NAME, base, cache, trainer=incomplete)
    assert not adapter_dir(cache, NAME).exists()


def test_saved_config_lists_target_modules_sorted(tmp_path: Path) -> None:
    # peft keeps them in a set: without sorting, the file's bytes change from run to run.
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"r": 8, "target_modules": ["v_proj", "q_proj"]}))
    adapters._sort_target_modules(path)
    assert json.loads(path.read_text()) == {"r": 8, "target_modules": ["q_proj", "v_proj"]}


def _prepared_builtin() -> Path | None:
    cache = Path(os.environ.get("GPUCLUSTER_MODEL_CACHE", "~/.cache/gpucluster/models"))
    base = cache.expanduser() / "smollm2-135m-instruct"
    return base if (base / MARKER).is_file() else None


@pytest.mark.real_model
@pytest.mark.timeout(600)  # real model work: minutes on a busy 2-core host
def test_real_training_changes_the_greedy_answer(tmp_path: Path, monkeypatch) -> None:
    base = _prepared_builtin()
    if base is None:  # setup prepares it (scripts/setup.sh): missing is a failure, not a skip
        pytest.fail(
            "the built-in model is not prepared in the model cache (run `gpucluster prepare`, "
            "or set GPUCLUSTER_MODEL_CACHE to a cache holding smollm2-135m-instruct)",
            pytrace=False,
        )
    recipe = ADAPTERS[NAME]
    assert REAL_TRAINING_STEPS % (len(recipe.examples) // recipe.batch_size) == 0  # whole passes
    monkeypatch.setitem(ADAPTERS, NAME, dataclasses.replace(recipe, steps=REAL_TRAINING_STEPS))
    messages: list[str] = []
    path = prepare_adapter(NAME, base, tmp_path, messages.append)
    assert sorted(p.name for p in path.iterdir()) == sorted([*ADAPTER_FILES, MARKER])
    assert all(stat.S_IMODE((path / f).stat().st_mode) == 0o644 for f in ADAPTER_FILES)
    config = json.loads((path / "adapter_config.json").read_text())
    assert all(field in config for field in REQUIRED_CONFIG_FIELDS)
    assert (config["r"], config["lora_alpha"]) == (8, 16)
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct"
    losses = [float(m.rsplit("loss ", 1)[1].split()[0]) for m in messages if "loss " in m]
    assert f"step {REAL_TRAINING_STEPS}/{REAL_TRAINING_STEPS}" in "\n".join(messages)
    assert losses[-1] < losses[0] / 2

    question = "What is the capital of France?"
    tuned = adapters.reference_generate(base, path, question, 16)
    plain = adapters.reference_generate(base, None, question, 16)
    assert tuned.startswith("Ahoy"), tuned
    assert not plain.startswith("Ahoy") and tuned != plain
