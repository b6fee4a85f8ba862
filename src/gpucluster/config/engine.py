"""The vLLM engine arguments a model runs with: the platform's own fields first, then the
model's `engine_kwargs`, which win.

One definition for every reader: the Serve application hands them to vLLM (serving.app), and
capacity planning and the fit check (planning.capacity) plan with the values vLLM will run with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gpucluster.config.schema import ModelConfig

Task = Literal["generate", "embed"]

# The vLLM engine arguments a model of each task needs beyond the defaults. An embedding model
# runs vLLM's pooling runner; `convert: embed` makes it return one vector per input
# (`LLM.embed`, the OpenAI /v1/embeddings endpoint).
TASK_ENGINE_ARGS: dict[Task, dict[str, str]] = {
    "generate": {},
    "embed": {"runner": "pooling", "convert": "embed"},
}


def engine_kwargs(model: ModelConfig) -> dict[str, Any]:
    """vLLM engine arguments for `model`; `engine_kwargs` from the config win."""
    kwargs: dict[str, Any] = {
        "tensor_parallel_size": model.tensor_parallel_size,
        "gpu_memory_utilization": model.gpu_memory_utilization,
        "max_num_seqs": model.max_num_seqs,
        "dtype": model.dtype,
    }
    if model.max_model_len is not None:
        kwargs["max_model_len"] = model.max_model_len
    if model.accelerator == "cpu":
        # CUDA-graph capture does not exist on CPU; eager mode cuts start-up from ~100 s to ~30 s.
        kwargs["enforce_eager"] = True
    kwargs.update(TASK_ENGINE_ARGS["embed" if model.embeds else "generate"])
    if model.lora is not None:
        kwargs.update(
            enable_lora=True, max_loras=model.lora.max_loras, max_lora_rank=model.lora.max_lora_rank
        )
    if model.tool_call_parser is not None:
        kwargs["tool_call_parser"] = model.tool_call_parser
        kwargs["enable_auto_tool_choice"] = model.enable_auto_tool_choice
    if model.chat_template is not None:
        kwargs["chat_template"] = str(model.chat_template)
    return {**kwargs, **model.engine_kwargs}
