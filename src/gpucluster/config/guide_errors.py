"""The operator guide's start-up ERROR lines, each with the fix an operator applies.

One table for the writer and every reader: serving.llm_server writes a line to the replica's log
when an engine fails to start (`up` writes the timeout one itself), and `up`'s failure report
(runtime.platform) and `gpucluster diagnose` (ops.diagnose) find the lines in the logs and print
the fix. It lives in config, the layer all of them may import, so that a line cannot drift
between the one who writes it and the ones who look for it.
"""

from __future__ import annotations

MODEL_LOADING_TIMEOUT = "ERROR: Model loading timeout"
OUT_OF_MEMORY = "ERROR: Out of memory"
GPU_ALLOCATION_FAILED = "ERROR: GPU allocation failed"
MODEL_LOADING_FAILED = "ERROR: Model loading failed"

GUIDE_ERROR_FIXES: dict[str, str] = {
    MODEL_LOADING_TIMEOUT: "raise platform.startup_timeout_s, or start a smaller model "
    "(`gpucluster logs engine` shows how far loading got)",
    OUT_OF_MEMORY: "lower cpu_kvcache_gib (CPU) or "
    "gpu_memory_utilization (GPU), max_model_len or max_num_seqs, or raise "
    "tensor_parallel_size; `gpucluster capacity` says what fits",
    GPU_ALLOCATION_FAILED: "check `nvidia-smi`, that accelerator is gpu only where GPUs "
    "exist, and that tensor_parallel_size does not exceed a node's GPUs",
    MODEL_LOADING_FAILED: "check the model's source (`gpucluster prepare` re-checks "
    "it) and the engine's reason in `gpucluster logs engine`",
}
GUIDE_ERROR_LINES = tuple(GUIDE_ERROR_FIXES)


def fixes_for(lines: list[str]) -> list[str]:
    """The fix of each guide ERROR line found in `lines`, once each, in order of appearance."""
    found = [e for line in lines for e in GUIDE_ERROR_LINES if e in line]
    return [f"{e.removeprefix('ERROR: ')}: {GUIDE_ERROR_FIXES[e]}" for e in dict.fromkeys(found)]
