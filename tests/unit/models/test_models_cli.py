"""`python -m gpucluster.models`: prints the model path, progress on stderr, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

from gpucluster.models.__main__ import main


def test_prints_the_local_dir(tmp_path: Path, capsys) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"architectures": ["X"]}))
    assert main([str(tmp_path / "m"), "--cache-dir", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{tmp_path / 'm'}\n"
    assert "[models]" in captured.err


def test_json_output_for_a_hub_id(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["Qwen/Qwen2.5-32B-Instruct", "--cache-dir", str(tmp_path), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body == {"ok": True, "source": "Qwen/Qwen2.5-32B-Instruct", "kind": "hf",
                    "model": "Qwen/Qwen2.5-32B-Instruct", "info": None}


def test_bad_source_exits_2_with_the_reason(tmp_path: Path, capsys) -> None:
    assert main(["nonsense", "--cache-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "'nonsense'" in captured.err and "accepted forms" in captured.err
