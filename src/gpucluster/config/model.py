"""One served model's configuration (`models[]`), and the built-in models' names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gpucluster.config.base import Strict, check_names

# The built-in models, named in a source as `builtin:<name>` (models.builtin prepares each): the
# default chat model, and the embedding model (what `task: null` means for its source).
BUILTIN_PREFIX = "builtin:"
BUILTIN_MODEL_ID = "smollm2-135m-instruct"
BUILTIN_SOURCE = f"{BUILTIN_PREFIX}{BUILTIN_MODEL_ID}"
BUILTIN_EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
BUILTIN_EMBEDDING_SOURCE = f"{BUILTIN_PREFIX}{BUILTIN_EMBEDDING_MODEL_ID}"
BUILTIN_MODELS: tuple[str, ...] = (BUILTIN_MODEL_ID, BUILTIN_EMBEDDING_MODEL_ID)

_MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
# API key names: they become Prometheus label values and file keys, so a small alphabet.
KEY_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class ReplicaBounds(Strict):
    """How many serving replicas a model may have."""

    min: int = Field(1, ge=0, description="Fewest replicas kept running.")
    max: int = Field(1, ge=1, description="Most replicas the autoscaler may start.")
    initial: int | None = Field(
        None, ge=0, description="Replicas started at deploy time; defaults to `min`."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(f"initial ({self.initial}) must lie between min and max")
        return self


class AutoscalingSettings(Strict):
    """When the autoscaler adds or removes a replica: the guide's Scaling Decisions as knobs."""

    kv_cache_high: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Scale up when the replicas' mean KV cache usage stays above this.",
    )
    kv_cache_low: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Scale down when utilisation (KV cache, and ongoing requests over their "
        "target) stays below this with nothing waiting.",
    )
    waiting_requests_high: float = Field(
        0,
        ge=0,
        description="Scale up when more requests than this wait per replica in the engines' queues.",
    )
    target_ongoing_requests: float | None = Field(
        None,
        gt=0,
        description="Fallback signal: scale up when ongoing requests per replica stay above "
        "this; null: the model's `max_num_seqs` (a full batch).",
    )
    upscale_delay_s: float = Field(
        30, ge=0, description="How long a scale-up signal must last before a replica is added."
    )
    downscale_delay_s: float = Field(
        300, ge=0, description="How long replicas must stay idle before one is removed."
    )
    look_back_period_s: float = Field(
        10,
        gt=2,
        description="Window over which each replica's metrics are averaged (Ray Serve's "
        "`look_back_period_s`; replicas report every 2 s).",
    )
    drain_timeout_s: float = Field(
        600,
        gt=0,
        description="How long a replica being removed may finish its in-flight requests "
        "(Ray Serve's `graceful_shutdown_timeout_s`); size it for the longest generation.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSettings:
        if self.kv_cache_low >= self.kv_cache_high:
            raise ValueError(
                f"kv_cache_low ({self.kv_cache_low}) must be below kv_cache_high ({self.kv_cache_high})"
            )
        return self


class AdmissionSettings(Strict):
    """How many requests one replica takes before new ones are turned away (backpressure)."""

    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="Requests one replica works on at once (its engine batches `max_num_seqs` "
        "of them, the rest wait in its queue); null: 2 x max_num_seqs.",
    )
    max_queued_requests: int | None = Field(
        None,
        ge=-1,
        description="Requests held per ingress replica while every model replica is full; "
        "beyond it new requests get 429 with Retry-After. null: 4 x max_num_seqs; -1: unbounded.",
    )
    retry_after_s: int = Field(
        2, ge=1, description="The Retry-After (seconds) sent with a 429 for a full model."
    )


# Adapter names: the part after `base:` in a request's `model` (Ray Serve LLM's convention).
ADAPTER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The tool-call parsers vLLM 0.29 registers (vllm.tool_parsers.ToolParserManager); a unit test
# checks this list against vLLM's own, so that an upgrade that changes it fails loudly.
TOOL_CALL_PARSERS = (
    "apertus",
    "cohere_command3",
    "cohere_command4",
    "deepseek_v3",
    "deepseek_v31",
    "deepseek_v32",
    "deepseek_v4",
    "dots",
    "ernie45",
    "functiongemma",
    "gemma4",
    "gigachat3",
    "glm45",
    "glm47",
    "granite",
    "granite-20b-fc",
    "granite4",
    "hermes",
    "hunyuan_a13b",
    "hy_v3",
    "hy_v4",
    "inkling",
    "internlm",
    "jamba",
    "kimi_k2",
    "kimi_k3",
    "lfm2",
    "ling3",
    "llama3_json",
    "llama4_json",
    "llama4_pythonic",
    "longcat",
    "mimo",
    "minicpm5",
    "minimax_m2",
    "minimax_m3",
    "mistral",
    "muse_glimmer",
    "olmo3",
    "openai",
    "phi4_mini_json",
    "poolside_v1",
    "pythonic",
    "qwen3_coder",
    "qwen3_xml",
    "seed_oss",
    "step3",
    "step3p5",
    "xlam",
)


def _embeds(task: str | None, source: str) -> bool:
    """Whether a model of this `task` and `source` embeds: `task: null` means the built-in's."""
    return task == "embed" if task is not None else source == BUILTIN_EMBEDDING_SOURCE


class LoraSettings(Strict):
    """LoRA adapters served on top of a model; each is requested as `model: <base>:<name>`."""

    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="Adapters by name: a local directory holding adapter_config.json and the "
        "adapter's weights (peft's layout), or `builtin:<adapter>`.",
    )
    dynamic_dir: Path | None = Field(
        None,
        description="A directory whose subdirectories are adapters too (by subdirectory name), "
        "listed and loaded when first asked for: drop an adapter in, no restart.",
    )
    max_loras: int = Field(
        2, ge=1, description="Adapters one engine batch may mix (vLLM's max_loras)."
    )
    max_lora_rank: Literal[8, 16, 32, 64, 128, 256] = Field(
        16, description="Highest LoRA rank any adapter may have (vLLM's max_lora_rank)."
    )

    @field_validator("adapters")
    @classmethod
    def _adapter_names(cls, adapters: dict[str, str]) -> dict[str, str]:
        check_names(
            adapters,
            ADAPTER_NAME_PATTERN,
            "adapter names",
            "letters, digits and . _ -, starting with a letter or digit, at most 64",
        )
        empty = sorted(name for name, source in adapters.items() if not source.strip())
        if empty:
            raise ValueError(f"adapters without a source: {', '.join(empty)}")
        return adapters


class ModelConfig(Strict):
    """One served model: where its weights come from and how its engine runs."""

    id: str = Field(BUILTIN_MODEL_ID, description="Model id clients send in `model`.")
    source: str = Field(
        BUILTIN_SOURCE,
        description=(
            f"Where the weights come from: `{BUILTIN_SOURCE}` (chat), "
            f"`{BUILTIN_EMBEDDING_SOURCE}` (embeddings), a Hugging Face id "
            "(`org/name`, pulled into the model cache before serving), or a local directory path."
        ),
    )
    revision: str | None = Field(
        None,
        description=(
            "Hugging Face branch, tag or commit pulled; default main. Pin a commit for "
            "reproducible deploys. Only for Hugging Face sources."
        ),
    )
    accelerator: Literal["cpu", "gpu"] = Field(
        "cpu", description="`cpu` runs vLLM's CPU build; `gpu` asks Ray for one GPU per shard."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica shards over.")
    max_model_len: int | None = Field(
        2048, ge=16, description="Longest context (prompt + output) in tokens; null: model's own."
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of accelerator memory vLLM may use."
    )
    max_num_seqs: int = Field(16, ge=1, description="Most sequences one engine batches at once.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="Weight and activation dtype."
    )
    cpu_kvcache_gib: int = Field(
        1,
        ge=1,
        description="KV cache size in whole GiB for the CPU build (VLLM_CPU_KVCACHE_SPACE).",
    )
    stream_batching_ms: int | None = Field(
        0,
        ge=0,
        description="How long Ray Serve LLM gathers streamed tokens into one chunk, ms. 0 (the "
        "default, measured faster in docs/benchmarks.md): each token at once; null: Ray's 50 ms.",
    )
    replicas: ReplicaBounds = Field(
        default_factory=ReplicaBounds, description="Replica count bounds for this model."
    )
    admission: AdmissionSettings = Field(
        default_factory=AdmissionSettings,
        description="Bounded queues: when a model is full, new requests get 429 at once.",
    )
    autoscaling: AutoscalingSettings = Field(
        default_factory=AutoscalingSettings,
        description="The signals and delays that move the replica count between its bounds.",
    )
    task: Literal["generate", "embed"] | None = Field(
        None,
        description="`generate` (chat and completions) or `embed` (embeddings, score, rerank); "
        "null: the built-in model's own task, else generate.",
    )
    lora: LoraSettings | None = Field(
        None, description="LoRA adapters served on this model (through the ingress deployment)."
    )
    router: Literal["power_of_two", "prefix_cache_affinity", "kv_aware"] = Field(
        "power_of_two",
        description="How the ingress picks a replica: Serve's power-of-two choices, or Ray Serve "
        "LLM's PrefixCacheAffinityRouter (the replica whose cache holds the prompt's prefix).",
    )
    tool_call_parser: str | None = Field(
        None,
        description="vLLM tool-call parser that turns the model's output into `tool_calls` "
        "(`hermes`, `llama3_json`, ...); needed for any `tools` request.",
    )
    enable_auto_tool_choice: bool = Field(
        False,
        description="Let the model decide when to call a tool (`tool_choice: auto`); set "
        "together with tool_call_parser.",
    )
    chat_template: Path | None = Field(
        None,
        description="A Jinja chat template file replacing the model's own (for example one "
        "that renders `tools` in the format the parser reads).",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Escape hatch: extra vLLM engine arguments passed through unchanged "
            "(for example `enable_prefix_caching: true`). They win over the fields above."
        ),
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _MODEL_ID_PATTERN.match(value):
            raise ValueError(
                "must start with a letter or digit and use only letters, digits and . _ : / -"
            )
        return value

    @field_validator("source")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("revision")
    @classmethod
    def _one_word(cls, value: str | None) -> str | None:
        if value is not None and (not value or value != value.strip() or " " in value):
            raise ValueError("must be a branch, tag or commit name, without spaces")
        return value

    @property
    def embeds(self) -> bool:
        """Whether this is an embedding model (`task: embed`, or the built-in embedding model)."""
        return _embeds(self.task, self.source)

    def adapter_ids(self) -> list[str]:
        """The model ids of the configured (static) adapters: `<id>:<adapter>`."""
        return [f"{self.id}:{name}" for name in (self.lora.adapters if self.lora else {})]

    @model_validator(mode="before")
    @classmethod
    def _embedding_context(cls, data: Any) -> Any:
        """An embedding model's context defaults to the model's own (all-MiniLM-L6-v2 reads
        256 tokens; the 2048 default of generative models would not load)."""
        embeds = isinstance(data, dict) and _embeds(
            data.get("task"), data.get("source", BUILTIN_SOURCE)
        )
        if embeds and "max_model_len" not in data:
            return {**data, "max_model_len": None}
        return data

    @field_validator("tool_call_parser")
    @classmethod
    def _known_parser(cls, value: str | None) -> str | None:
        if value is not None and value not in TOOL_CALL_PARSERS:
            raise ValueError(
                f"{value!r} is not a tool-call parser of vLLM 0.29; known: "
                f"{', '.join(TOOL_CALL_PARSERS)}"
            )
        return value

    @field_validator("router")
    @classmethod
    def _usable_router(cls, value: str) -> str:
        if value == "kv_aware":
            raise ValueError(
                "kv_aware (Ray Serve LLM's KVAwareRouter) is not usable here: it works only "
                "inside Ray's own direct-streaming router (behind HAProxy) and needs the "
                "ai-dynamo package; behind this platform's ingress it would pick replicas at "
                "random. Use prefix_cache_affinity"
            )
        return value

    @model_validator(mode="after")
    def _cpu_has_no_shards(self) -> ModelConfig:
        if self.accelerator == "cpu" and self.tensor_parallel_size != 1:
            raise ValueError("tensor_parallel_size must be 1 when accelerator is cpu")
        return self

    @model_validator(mode="after")
    def _consistent_features(self) -> ModelConfig:
        if self.enable_auto_tool_choice != (self.tool_call_parser is not None):
            raise ValueError(
                "set tool_call_parser and enable_auto_tool_choice: true together: vLLM 0.29 "
                "loads the parser only with auto tool choice on, and every tool call ('auto', "
                "'required' or a named function) needs the parser"
            )
        if self.lora is not None and ":" in self.id:
            raise ValueError(
                f"a model with LoRA adapters must have an id without ':' ({self.id!r}): "
                "requests name an adapter as <model id>:<adapter>"
            )
        if self.embeds and (self.lora is not None or self.tool_call_parser):
            raise ValueError("an embedding model (task: embed) takes no lora or tool calling")
        return self
