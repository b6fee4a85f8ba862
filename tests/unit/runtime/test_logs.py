"""`logs -n N` gives N lines however long they are."""

import pytest

from gpucluster.runtime.logs import tail


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
