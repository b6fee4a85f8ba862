"""Builds the Serve application: one LLM deployment per configured model behind one ingress."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.deployment import Application
from ray.serve.llm import LLMConfig, build_llm_deployment

from gpucluster.config import Config, ModelConfig
from gpucluster.config.engine import engine_kwargs
from gpucluster.config.keys import KeySources
from gpucluster.config.names import INGRESS_NAME, llm_deployment_name
from gpucluster.serving.adapters import ADAPTERS_KEY, adapter_table
from gpucluster.serving.autoscaling import deployment_options
from gpucluster.serving.direct import AdmissionLimits
from gpucluster.serving.ingress import PlatformIngress, make_ingress_class
from gpucluster.serving.json_body import DEFAULT_MAX_BODY_BYTES
from gpucluster.serving.llm_server import PlatformLLMServer, direct_server
from gpucluster.serving.ray_internals import HEAD_NODE_RESOURCE_NAME, to_model_metadata
from gpucluster.serving.routers import ROUTER_CLASSES


def admission_limits(model: ModelConfig) -> AdmissionLimits:
    """Bounded in-flight and queued requests per replica; a full model answers 429 at once."""
    admission = model.admission
    queued = admission.max_queued_requests
    return AdmissionLimits(
        max_ongoing=admission.max_ongoing_requests or 2 * model.max_num_seqs,
        max_queued=4 * model.max_num_seqs if queued is None else queued,
        retry_after_s=admission.retry_after_s,
    )


def admission_options(model: ModelConfig) -> dict[str, Any]:
    """`admission_limits` as Serve's deployment options (the ingress path's routers keep them)."""
    limits = admission_limits(model)
    return {
        "max_ongoing_requests": limits.max_ongoing,
        "max_queued_requests": limits.max_queued,
        "backpressure_config": {"status_code": 429, "retry_after_s": limits.retry_after_s},
    }


# Direct path: Serve's own admission counts every HTTP request a replica serves, /health and
# /v1/models too; the replica's front bounds generations instead (serving.direct.Admission).
DIRECT_SERVE_ADMISSION = {"max_ongoing_requests": 10_000, "max_queued_requests": -1}


def router_options(model: ModelConfig) -> dict[str, Any]:
    """Serve's request router for the model's replicas (the ingress path routes through it)."""
    router = ROUTER_CLASSES.get(model.router)
    return {"request_router_config": {"request_router_class": router}} if router else {}


def llm_config(model: ModelConfig, weights: dict[str, str]) -> LLMConfig:
    """The Ray Serve LLM config of one model; `weights` maps the model's id (and each adapter's,
    `<id>:<adapter>`) to the directory prepared for it."""
    if model.accelerator == "cpu":
        placement: dict[str, Any] = {"bundles": [{"CPU": 1}]}
        env = {"VLLM_CPU_KVCACHE_SPACE": str(model.cpu_kvcache_gib)}
    else:
        placement = {"bundle_per_worker": {"GPU": 1, "CPU": 1}}
        env = {}
    experimental: dict[str, Any] = (
        {"stream_batching_interval_ms": model.stream_batching_ms}
        if model.stream_batching_ms is not None
        else {}
    )
    lora: dict[str, Any] | None = None
    if model.lora is not None:
        # Ray Serve LLM multiplexes adapters; our loader (serving.adapters) finds them locally.
        lora = {"max_num_adapters_per_replica": max(16, model.lora.max_loras)}
        experimental[ADAPTERS_KEY] = adapter_table(model, weights)
    return LLMConfig(
        model_loading_config={"model_id": model.id, "model_source": weights[model.id]},
        engine_kwargs=engine_kwargs(model),
        lora_config=lora,
        placement_group_config=placement,
        runtime_env={"env_vars": env},
        experimental_configs=experimental,
        deployment_config={
            **deployment_options(model),
            **admission_options(model),
            **router_options(model),
        },
    )


def build_app(
    config: Config,
    weights: dict[str, str],
    keys: KeySources,
    *,
    direct: bool = False,
    usage_url: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Application:
    """The whole application; `weights` maps each model id to what vLLM loads.

    With keys in `keys`, every /v1 request needs one of them. `direct` (one
    model only; see Config.serves_directly): the model's replicas are the ingress themselves.
    `usage_url`: where the HTTP front reports each request's usage (serving.usage_report).
    `max_body_bytes`: the largest request body the HTTP front reads (the edge's limit).
    """
    configs = [llm_config(model, weights) for model in config.models]
    if direct:
        (model,) = config.models
        (only,) = configs
        return build_llm_deployment(
            only,
            deployment_cls=direct_server(keys, admission_limits(model), usage_url, max_body_bytes),
            override_serve_options={
                "name": llm_deployment_name(only.model_id),
                **DIRECT_SERVE_ADMISSION,
            },
        )
    deployments = {
        c.model_id: build_llm_deployment(
            c,
            deployment_cls=PlatformLLMServer,
            override_serve_options={"name": llm_deployment_name(c.model_id)},
        )
        for c in configs
    }
    cards = {c.model_id: to_model_metadata(c.model_id, c) for c in configs}
    options = PlatformIngress.get_deployment_options(configs)
    # The ingress stays on the head, beside Serve's only HTTP proxy and the API key files.
    options["ray_actor_options"] = {"num_cpus": 1, "resources": {HEAD_NODE_RESOURCE_NAME: 0.001}}
    ingress_class = make_ingress_class(
        keys,
        usage_url,
        max_body_bytes=max_body_bytes,
        adapter_tables={
            model.id: adapter_table(model, weights) for model in config.models if model.lora
        },
        embedding_models=frozenset(model.id for model in config.models if model.embeds),
        tool_models=frozenset(model.id for model in config.models if model.tool_call_parser),
    )
    ingress = serve.deployment(ingress_class, name=INGRESS_NAME, **options)
    return ingress.bind(llm_deployments=deployments, model_cards=cards)


def app_from_args(args: dict[str, Any]) -> Application:
    """Serve's application builder (the `import_path` of serve_config): `args` as rendered there."""
    config = Config(models=args["models"])
    return build_app(
        config,
        args["weights"],
        KeySources.from_dict(args.get("api_keys", {})),
        direct=args.get("direct_streaming", False),
        usage_url=args.get("usage_url"),
        max_body_bytes=args.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
    )
