"""The capacity table and the built-in model: one identity (models.builtin), known to both."""

from __future__ import annotations

from gpucluster.config import BUILTIN_MODEL_ID
from gpucluster.models.builtin import BUILTINS
from gpucluster.planning.hardware import find_table_model


def test_the_table_knows_the_default_models_upstream_release():
    # `gpucluster capacity` plans the default model from the table before it is prepared
    assert find_table_model(BUILTINS[BUILTIN_MODEL_ID].upstream) is not None
