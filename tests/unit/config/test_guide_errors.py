"""The guide's start-up ERROR lines come with the fix an operator applies."""

from gpucluster.config.guide_errors import GUIDE_ERROR_LINES, fixes_for


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
