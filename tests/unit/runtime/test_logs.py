"""The guide's start-up ERROR lines come with the fix an operator applies; `logs -n N` gives N
lines however long they are."""

import pytest

from gpucluster.runtime.logs import GUIDE_ERROR_LINES, fixes_for, tail


def test_every_guide_error_line_has_a_fix_and_each_fix_is_given_once():
    lines = [
        "ERROR 2026-11-27 ... -- ERROR: Out of memory (model m): KV cache space larger than memory",
        "ERROR 2026-11-27 ... -- ERROR: Out of memory (model m): again",
        "INFO ... nothing to see",
        "ERROR ... -- ERROR: Model loading failed (model m): bad weights",
    ]
    fixes = fixes_for(lines)
    assert len(fixes) == 2
    assert fixes[0].startswith("Out of memory: lower cpu_kvcache_gib")
    assert fixes[1].startswith("Model loading failed: check the model's source")
    assert all(fixes_for([line]) for line in GUIDE_ERROR_LINES)


@pytest.mark.parametrize("count", [1, 10, 5000, 20000])
def test_tail_gives_the_last_lines_of_a_long_file(tmp_path, count):
    log = tmp_path / "replica.log"
    lines = ["Loading model m..."] + [f"INFO request {i} " + "x" * 200 for i in range(12000)]
    log.write_text("\n".join(lines) + "\n")  # 2.5 MB
    assert tail(log, count) == lines[-count:]


def test_tail_of_a_short_or_empty_file(tmp_path):
    log = tmp_path / "short.log"
    log.write_text("")
    assert tail(log, 5) == []
    log.write_text("one\ntwo")  # no final newline
    assert tail(log, 5) == ["one", "two"] and tail(log, 1) == ["two"]
