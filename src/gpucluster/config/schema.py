"""The platform's configuration schema: strict, frozen pydantic models.

Every field says what it is for; unknown keys are rejected so that a typo in a config file is
an error naming the key, not a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BUILTIN_MODEL_ID = "smollm2-135m-instruct"
BUILTIN_SOURCE = f"builtin:{BUILTIN_MODEL_ID}"
# The built-in embedding model (all-MiniLM-L6-v2): what `task: null` means for its source.
BUILTIN_EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
BUILTIN_EMBEDDING_SOURCE = f"builtin:{BUILTIN_EMBEDDING_MODEL_ID}"

_MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
# API key names: they become Prometheus label values and file keys, so a small alphabet.
KEY_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplicaBounds(_Strict):
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


class AutoscalingSettings(_Strict):
    """When the autoscaler adds or removes a replica: the guide's Scaling Decisions as knobs."""

    kv_cache_high: float = Field(
        0.8, ge=0, le=1, description="Scale up when the replicas' mean KV cache usage stays above this."
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


class AdmissionSettings(_Strict):
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
    "apertus", "cohere_command3", "cohere_command4", "deepseek_v3", "deepseek_v31",
    "deepseek_v32", "deepseek_v4", "dots", "ernie45", "functiongemma", "gemma4", "gigachat3",
    "glm45", "glm47", "granite", "granite-20b-fc", "granite4", "hermes", "hunyuan_a13b",
    "hy_v3", "hy_v4", "inkling", "internlm", "jamba", "kimi_k2", "kimi_k3", "lfm2", "ling3",
    "llama3_json", "llama4_json", "llama4_pythonic", "longcat", "mimo", "minicpm5",
    "minimax_m2", "minimax_m3", "mistral", "muse_glimmer", "olmo3", "openai", "phi4_mini_json",
    "poolside_v1", "pythonic", "qwen3_coder", "qwen3_xml", "seed_oss", "step3", "step3p5",
    "xlam",
)


def _check_names(names: Any, pattern: re.Pattern[str], kind: str, rule: str) -> None:
    """ValueError listing the `names` that `pattern` does not match."""
    bad = sorted(name for name in names if not pattern.match(name))
    if bad:
        raise ValueError(f"not {kind}: {', '.join(bad)} ({rule})")


def _embeds(task: str | None, source: str) -> bool:
    """Whether a model of this `task` and `source` embeds: `task: null` means the built-in's."""
    return task == "embed" if task is not None else source == BUILTIN_EMBEDDING_SOURCE


class LoraSettings(_Strict):
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
        _check_names(adapters, ADAPTER_NAME_PATTERN, "adapter names",
                     "letters, digits and . _ -, starting with a letter or digit, at most 64")
        empty = sorted(name for name, source in adapters.items() if not source.strip())
        if empty:
            raise ValueError(f"adapters without a source: {', '.join(empty)}")
        return adapters


class ModelConfig(_Strict):
    """One served model: where its weights come from and how its engine runs."""

    id: str = Field(BUILTIN_MODEL_ID, description="Model id clients send in `model`.")
    source: str = Field(
        BUILTIN_SOURCE,
        description=(
            "Where the weights come from: `builtin:smollm2-135m-instruct` (chat), "
            "`builtin:all-minilm-l6-v2` (embeddings), a Hugging Face id "
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
        1, ge=1, description="KV cache size in whole GiB for the CPU build (VLLM_CPU_KVCACHE_SPACE)."
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
        embeds = isinstance(data, dict) and _embeds(data.get("task"), data.get("source", BUILTIN_SOURCE))
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


# Ports Ray hands its worker processes. Its default range (10002-19999) holds the guide's ports
# (18080, 18265, 19090); every runner gives Ray this one instead (config.ray_node).
RAY_WORKER_PORTS = (20000, 29999)

# Loopback HTTP ports Serve gives the application's ingress replicas (Serve's direct ingress), one
# each, per host: nginx sends API traffic straight to them (config.ray_node, runtime.edge). Apart
# from Ray's worker ports, a joined node's (30000-39999) and the kernel's ephemeral range.
DIRECT_INGRESS_PORTS = (18400, 18415)


class PortsConfig(_Strict):
    """TCP ports; the defaults are the operator guide's."""

    nginx_http: int = Field(18080, ge=1, le=65535, description="nginx proxy (NGINX_HTTP_PORT).")
    ray_dashboard: int = Field(
        18265, ge=1, le=65535, description="Ray dashboard (RAY_DASHBOARD_PORT)."
    )
    serve_http: int = Field(8000, ge=1, le=65535, description="Ray Serve HTTP proxy.")
    ray_metrics: int = Field(
        8080, ge=1, le=65535, description="Ray metrics export, found by Prometheus via file_sd."
    )
    prometheus: int = Field(19090, ge=1, le=65535, description="Prometheus web UI and API.")
    alertmanager: int = Field(19093, ge=1, le=65535, description="Alertmanager.")
    alert_receiver: int = Field(
        19094, ge=1, le=65535, description="The platform's webhook receiver for Alertmanager."
    )
    gatekeeper: int = Field(
        19095, ge=1, le=65535,
        description="The edge's key and quota service: nginx's auth_request, the replicas' "
        "usage reports, and its /metrics (Prometheus job gpucluster-edge).",
    )
    grafana: int = Field(13000, ge=1, le=65535, description="Grafana (compose mode).")
    ray_gcs: int = Field(6379, ge=1, le=65535, description="Ray head GCS port.")

    @model_validator(mode="after")
    def _outside_rays_worker_ports(self) -> PortsConfig:
        # Ray refuses to start when one of its own ports lies in its worker port range.
        low, high = RAY_WORKER_PORTS
        for name in ("ray_dashboard", "ray_metrics", "ray_gcs", "serve_http"):
            port = getattr(self, name)
            if low <= port <= high:
                raise ValueError(
                    f"{name}: {port} lies in Ray's worker port range {low}-{high}; "
                    "choose a port outside it"
                )
        return self


class EdgeConfig(_Strict):
    """The nginx proxy in front of everything: where it listens and what it lets through."""

    listen_host: str = Field(
        "0.0.0.0",
        description="Address nginx listens on: the one component reachable beyond localhost.",
    )
    rate_limit_rps: int = Field(
        20, ge=1, description="Requests per second per API key (per client address without keys)."
    )
    rate_limit_burst: int = Field(
        40, ge=0, description="Requests beyond the rate admitted at once before 429s start."
    )
    max_body_mib: int = Field(4, ge=1, le=1024, description="Largest request body in MiB (413).")
    read_timeout_s: int = Field(
        600, ge=10, description="Longest a response (a whole generation) may take through nginx."
    )

    @property
    def max_body_bytes(self) -> int:
        """`max_body_mib` in bytes: the replicas hold callers that bypass nginx to it too."""
        return self.max_body_mib << 20

    @property
    def max_body_size(self) -> str:
        """`max_body_mib` as nginx's config writes it ("4m") and its 413 says it."""
        return body_size_text(self.max_body_bytes)


def body_size_text(n_bytes: int) -> str:
    """A body limit in nginx's size syntax ("4m"), the words of every 413 the platform gives;
    "N bytes" for a limit that is not a whole number of MiB."""
    return f"{n_bytes >> 20}m" if n_bytes % (1 << 20) == 0 else f"{n_bytes} bytes"


class QuotaConfig(_Strict):
    """Limits on one API key's use; null: unlimited (or, per key, the next quota that sets it)."""

    requests_per_minute: int | None = Field(
        None, ge=1, description="Requests admitted in any 60 s window."
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Prompt + completion tokens in any 60 s window, charged from the engine's "
        "usage when a request ends; a request is refused once the window holds this many.",
    )
    concurrent_requests: int | None = Field(
        None, ge=1, description="Generation requests (completions, chat, embeddings) in flight at once."
    )


class SecurityConfig(_Strict):
    """API keys, their quotas, and operator credentials."""

    api_keys_file: Path | None = Field(
        None,
        description="File of API keys, one per line (# comments); re-read when it changes. "
        "With it or GPUCLUSTER_API_KEYS set, /v1 requires `Authorization: Bearer <key>`.",
    )
    keys_file: Path | None = Field(
        None,
        description="The named key store that `gpucluster keys create` writes (SHA-256 digests "
        "only); null: `<state_dir>/keys.json`. Once it exists, /v1 requires a key.",
    )
    default_quota: QuotaConfig = Field(
        default_factory=QuotaConfig,
        description="Quota of every key that neither `quotas` nor its own stored quota limits.",
    )
    quotas: dict[str, QuotaConfig] = Field(
        default_factory=dict,
        description="Quotas per key name; each limit set here wins over the key's stored quota, "
        "which wins over default_quota.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of proxies in front of nginx whose real_ip_header is "
        "believed for the client address; empty: the TCP peer's address.",
    )
    real_ip_header: str = Field(
        "X-Forwarded-For",
        min_length=1,
        description="Header that trusted proxies put the client address in.",
    )
    dashboard_user: str = Field(
        "operator", min_length=1, description="The /dashboard basic-auth login the first `up` "
        "creates, and the one `gpucluster dashboard-password` resets without --user."
    )
    dashboard_write: bool = Field(
        False,
        description="Let /dashboard pass every call to Ray's dashboard, job submission and Serve "
        "deploys included: the dashboard password then runs any command on every node. "
        "false: only the calls its viewing pages make (GET), everything else gets 403.",
    )

    @field_validator("quotas")
    @classmethod
    def _key_names(cls, quotas: dict[str, QuotaConfig]) -> dict[str, QuotaConfig]:
        _check_names(quotas, KEY_NAME_PATTERN, "key names", "lower-case letters, digits and "
                     ". _ -, starting with a letter or digit, at most 63")
        return quotas

    @field_validator("dashboard_user")
    @classmethod
    def _htpasswd_user(cls, value: str) -> str:
        # a line of nginx's basic-auth file is `user:hash`; basic auth itself splits on `:`
        if re.search(r"[:\x00-\x1f\x7f]", value):
            raise ValueError("must not hold ':' or control characters")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or CIDR") from None
        return proxies

    @field_validator("real_ip_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError("must be an HTTP header name (letters, digits and -)")
        return value


# A Kubernetes object name (a DNS-1123 subdomain) and a key of a Secret's data.
_K8S_NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY_PATTERN = re.compile(r"^[-._a-zA-Z0-9]+$")
# What Ray (RAY_REDIS_ADDRESS) and KubeRay's Redis cleanup Job read: host:port, with an optional
# redis:// or rediss:// (TLS) scheme; the host a DNS name, an IPv4 address or a bracketed IPv6 one.
_REDIS_ADDRESS_PATTERN = re.compile(
    r"^(?:(?P<scheme>rediss?)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})$"
)
_STORAGE_NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class SecretKeyRef(_Strict):
    """One key of a Kubernetes Secret in the RayService's namespace (a `secretKeyRef`)."""

    name: str = Field(..., description="The Secret's name.")
    key: str = Field(..., description="The key of the Secret's data that holds the value.")

    @field_validator("name")
    @classmethod
    def _object_name(cls, value: str) -> str:
        if len(value) > 253 or not _K8S_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes object name (lower-case letters, digits, '-' and "
                "'.', starting and ending with a letter or digit, at most 253)"
            )
        return value

    @field_validator("key")
    @classmethod
    def _data_key(cls, value: str) -> str:
        if len(value) > 253 or not _SECRET_KEY_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Secret key (letters, digits, '-', '_' and '.', at most 253)"
            )
        return value


class GcsFaultToleranceConfig(_Strict):
    """The Ray head's GCS keeps its tables in Redis, so a restarted head recovers the cluster."""

    redis_address: str = Field(
        ...,
        description="host:port of the Redis the GCS stores its tables in (redis://host:port, or "
        "rediss://host:port for TLS), as the head pod reaches it: KubeRay's redisAddress.",
    )
    redis_password_secret: SecretKeyRef | None = Field(
        None,
        description="The Secret key holding Redis's password (KubeRay's redisPassword, from "
        "the Secret); null: Redis asks for none.",
    )
    external_storage_namespace: str | None = Field(
        None,
        description="Prefix of the cluster's keys in Redis; null: KubeRay uses the RayCluster's "
        "UID, unique per cluster. A fixed name is shared by the old and the new RayCluster "
        "of a RayService upgrade.",
    )

    @field_validator("redis_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" in value:
            raise ValueError(
                "must not hold credentials: put the password in a Secret and name it in "
                "redis_password_secret"
            )
        match = _REDIS_ADDRESS_PATTERN.fullmatch(value)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError(
                f"{value!r} is not a Redis address: HOST:PORT, redis://HOST:PORT or "
                "rediss://HOST:PORT (for example redis:6379), one address, port 1-65535"
            )
        return value

    @field_validator("external_storage_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not _STORAGE_NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError(
                "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63"
            )
        return value


class KubernetesConfig(_Strict):
    """Settings that only the KubeRay manifests (`gpucluster render kuberay`) use."""

    gcs_fault_tolerance: GcsFaultToleranceConfig | None = Field(
        None,
        description="GCS fault tolerance (KubeRay's gcsFaultToleranceOptions): the head's "
        "state in Redis, so that a head restart keeps the worker pods and their replicas; "
        "null: off.",
    )


class PlatformConfig(_Strict):
    """Where the platform keeps its state and how it binds."""

    state_dir: Path = Field(
        Path("~/.local/state/gpucluster"),
        description="Pid files, logs and generated files of the local-mode platform.",
    )
    model_cache_dir: Path = Field(
        Path("~/.cache/gpucluster/models"), description="Prepared model directories."
    )
    bind_host: str = Field(
        "127.0.0.1",
        description="Address Serve and the dashboard listen on; keep loopback unless fronted.",
    )
    cluster_host: str | None = Field(
        None,
        description="Address the Ray head listens on for worker nodes of other hosts "
        "(`gpucluster up --head` sets it); unset, Ray stays on bind_host: one host only.",
    )
    ray_num_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs the Ray head advertises; default max(8, 4 x cores) so that "
        "the ingress and engine replicas both schedule on small hosts.",
    )
    startup_timeout_s: float = Field(
        900, gt=0, description="How long `up` waits for every model to answer."
    )
    shutdown_grace_s: float = Field(
        60,
        ge=0,
        description="How long `down` lets in-flight requests finish: nginx stops accepting, "
        "drains, and only then is the rest stopped.",
    )
    direct_streaming: bool = Field(
        True,
        description="With one model on one host, its vLLM replicas are themselves the HTTP "
        "ingress and nginx reaches them directly: no hop between nginx and the engine's process. "
        "False, several models or worker hosts (cluster_host): an ingress deployment routes to "
        "the models' replicas.",
    )
    ports: PortsConfig = Field(default_factory=PortsConfig, description="TCP ports.")
    edge: EdgeConfig = Field(default_factory=EdgeConfig, description="The nginx proxy.")
    security: SecurityConfig = Field(
        default_factory=SecurityConfig,
        description="API keys, their quotas, and operator credentials.",
    )
    kubernetes: KubernetesConfig = Field(
        default_factory=KubernetesConfig,
        description="Settings only the KubeRay manifests use.",
    )

    @property
    def gatekeeper_address(self) -> str:
        """`host:port` of the gatekeeper on this host, as nginx, the replicas' usage reports,
        Prometheus and `up`'s readiness check all reach it (a container names its own)."""
        return f"{self.bind_host}:{self.ports.gatekeeper}"


class Config(_Strict):
    """The whole platform configuration (one YAML file)."""

    platform: PlatformConfig = Field(
        default_factory=PlatformConfig, description="Platform settings."
    )
    models: list[ModelConfig] = Field(
        default_factory=lambda: [ModelConfig()],
        min_length=1,
        description="Models to serve; default: the built-in model on CPU.",
    )

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        ids = [m.id for m in models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"model ids must be unique, repeated: {', '.join(duplicates)}")
        return models

    @property
    def serves_directly(self) -> bool:
        """Whether the model's replicas are the HTTP ingress themselves (`direct_streaming`):
        one model, and one host, since nginx reaches the replicas' loopback ports only. LoRA
        adapters (Serve's multiplexing), a router other than Serve's default and embedding models
        need the ingress deployment: it resolves adapters, routes, and serves every endpoint."""
        platform = self.platform
        if not platform.direct_streaming or len(self.models) != 1 or platform.cluster_host:
            return False
        (model,) = self.models
        return model.lora is None and model.router == "power_of_two" and not model.embeds

    def model(self, model_id: str) -> ModelConfig:
        """The configured model with this id; KeyError when there is none."""
        for model in self.models:
            if model.id == model_id:
                return model
        raise KeyError(model_id)
