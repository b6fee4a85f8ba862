"""CPU and memory of the KubeRay deployment's pods, derived from the models with the capacity maths.

Each quantity a pod's request is made of is a named `Term`: its amount, the formula with this
pod's numbers and where the inputs come from, so the derivation can be shown
(deploy/kuberay/README.md, "Pod sizes"; `gpucluster capacity`) and tested. Pure arithmetic over
a model's shape (planning.arithmetic: weight bytes; planning.inputs: dtype) and its config; the
one I/O is resolving a configured model's shape (`shapes.configured_shape`: its config.json or
the built-in table).
No Kubernetes types: render/kuberay.py turns the totals into requests and limits.

A GPU worker pod holds one replica of a model of tensor parallel size tp. On GPUs Ray Serve LLM
runs vLLM with its Ray executor: the Serve replica actor is vLLM's frontend (tokenizer,
detokenizer, the OpenAI layer; on the direct path the HTTP server too); it starts the engine
core process (the scheduler's busy loop), which drives tp GPU worker processes (Ray actors), one
per GPU in a placement-group bundle {GPU: 1, CPU: 1}; the first bundle also carries the replica
actor's CPU, so Ray must see tp + 1 CPUs on the pod. Beside them run Ray's own node processes.

    memory = checkpoint page cache + tp x GPU process + frontend + engine core + Ray node
             + requests held + CPU offload + /dev/shm
    CPU    = tp x GPU process + engine core + frontend + tokenizer threads + Ray node

The head runs GCS, the dashboard, Serve's controller and its only HTTP proxy (proxy_location
HeadOnly: every request passes through it), Ray's node processes and, unless the model replicas
are the ingress themselves (`Config.serves_directly`), the platform's ingress replica, which also
holds the requests queued for full models. No model replica runs on the head: their placement
groups ask for GPUs and the head has none, so no weights either. KubeRay's autoscaler runs in a
sidecar container with requests of its own.

Totals round up: CPU to whole cores, memory to whole GiB. vLLM 0.29 has no CPU swap space
(`swap_space` is gone: preempted sequences are recomputed), so nothing is counted for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpucluster.config import ModelConfig
from gpucluster.config.schema import EdgeConfig
from gpucluster.errors import InputError
from gpucluster.planning.arithmetic import weight_bytes
from gpucluster.planning.hardware import GiB, ModelShape
from gpucluster.planning.inputs import DTYPE_BYTES, weight_dtype

# --- a GPU worker pod: memory (GiB) ----------------------------------------------------------

# One GPU worker process besides its weights: Python, torch and vLLM (0.9 GB RSS for the CPU
# build's worker without its KV space and weights, see ops.fit), the host memory of the CUDA
# context and of the libraries it loads (cuBLAS, NCCL: 1-2 GiB), and vLLM's pinned staging
# buffers (inputs, block tables: tens of MiB).
GPU_PROCESS_GIB = 3.0
# The Serve replica actor, vLLM's frontend: tokenizer and detokenizer, the OpenAI layer and on
# the direct path the HTTP server (0.9 GB RSS on the CPU build with the built-in model's small
# tokenizer, ops.fit; a 150k-token vocabulary and the CUDA libraries add to it).
FRONTEND_GIB = 2.0
# The engine core process: scheduler, KV block manager, structured-output grammars (0.7 GB RSS
# on the CPU build, ops.fit; the GPU build loads the CUDA libraries too).
ENGINE_CORE_GIB = 1.5
# Ray's processes on every node: raylet, dashboard agent, runtime-env agent, log monitor.
RAY_NODE_GIB = 1.0
# A request's text held by one process: ~4 bytes of UTF-8 per token, kept as the HTTP body, the
# decoded JSON and the parsed messages. Never more than the edge's body limit per request.
TEXT_BYTES_PER_TOKEN = 16
# One token id held by one process: a Python list slot (8 bytes) and an int object (28 bytes;
# only ids up to 256 are shared), plus array copies and prefix-cache block hashes. The frontend,
# the engine core and every GPU worker process each hold the ids of every admitted request.
TOKEN_ID_BYTES = 48
# /dev/shm is an emptyDir in memory: what is written there counts against the pod's memory
# limit, so its size is a memory term. 1 GiB for shared-memory queues and semaphores, plus 1 GiB
# per GPU when tp > 1 for NCCL's shared-memory transport (segments of ~10 MiB per peer and
# channel). Ray's object store (30 % of the pod's memory, at most 10 GB) goes to /tmp when
# /dev/shm is smaller, as it was with the old 8 GiB per GPU; the platform keeps little in it.
SHM_GIB = 1
NCCL_SHM_GIB_PER_GPU = 1

# --- a GPU worker pod: CPU (cores) -----------------------------------------------------------

# A GPU worker process launches the kernels of every step and prepares its inputs.
GPU_PROCESS_CPU = 1
# The engine core's scheduler loop runs flat out while requests are in flight.
ENGINE_CORE_CPU = 1
# The frontend's event loop: HTTP, JSON, the OpenAI layer, streaming each token.
FRONTEND_CPU = 1
# Tokenizing prompts and detokenizing outputs (the tokenizers library's Rust threads).
TOKENIZER_CPU = 1
RAY_NODE_CPU = 1

# --- the head pod ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadProcess:
    """A process on the head: its memory (GiB) and CPU (cores)."""

    name: str
    gib: float
    cores: float
    source: str
    constant: str  # its name in this module


# A few-node Serve cluster keeps GCS's tables small.
GCS = HeadProcess(
    "GCS", 1.0, 0.5, "Ray's global control store: nodes, actors, placement groups", "GCS"
)
DASHBOARD = HeadProcess(
    "dashboard", 1.5, 0.5, "the dashboard and its module subprocesses; KubeRay submits "
    "serveConfigV2 to its API", "DASHBOARD",
)  # fmt: skip
SERVE_CONTROLLER = HeadProcess(
    "Serve controller",
    1.0,
    0.5,
    "reconciles deployments and autoscaling every 0.5 s",
    "SERVE_CONTROLLER",
)
SERVE_PROXY = HeadProcess(
    "Serve HTTP proxy",
    1.0,
    1.0,
    "proxy_location HeadOnly: every request passes through it",
    "SERVE_PROXY",
)
INGRESS = HeadProcess(
    "ingress replica", 1.5, 1.0, "the platform's ingress deployment, one replica pinned to the "
    "head: keys, routing, queued requests; no tokenizer (it forwards /tokenize)", "INGRESS",
)  # fmt: skip
HEAD_SHM_GIB = 1


class PodSizeError(InputError, ValueError):
    """A pod that cannot be sized (a model whose shape is unknown); the message says the fix."""


@dataclass(frozen=True)
class Term:
    """One part of a pod's CPU (cores) or memory (GiB) request."""

    name: str
    amount: float
    how: str  # the formula, with this pod's numbers
    source: str  # where the inputs or the constant come from


@dataclass(frozen=True)
class PodSize:
    """A pod's derivation and what it requests (= its limits): whole cores, whole GiB."""

    group: str  # "head" or the worker group's name, "gpu-tp<N>"
    memory_terms: tuple[Term, ...]
    cpu_terms: tuple[Term, ...]
    memory_gib: int  # the derived total rounded up, or the override
    cpu: int
    shm_gib: int  # the /dev/shm emptyDir's size (counted in memory_terms)
    ray_cpus: int  # CPUs Ray must see on the pod for what it schedules there
    model: str | None = None  # the model a worker group is sized for (its largest)
    overridden: tuple[str, ...] = ()  # "cpu" / "memory_gib" set in platform.kubernetes

    @property
    def derived_memory_gib(self) -> int:
        return total(self.memory_terms)

    @property
    def derived_cpu(self) -> int:
        return total(self.cpu_terms)


def total(terms: Sequence[Term]) -> int:
    """The terms' sum rounded up to a whole unit (a hair of float error is not a unit more)."""
    return max(1, math.ceil(sum(term.amount for term in terms) - 1e-9))


def _gib(n_bytes: float) -> float:
    return n_bytes / GiB


def shm_gib(tp: int) -> int:
    """The /dev/shm size of a worker pod: SHM_GIB, plus NCCL's per GPU when tp > 1."""
    return SHM_GIB + (NCCL_SHM_GIB_PER_GPU * tp if tp > 1 else 0)


def text_bytes(context_tokens: int | None, max_body_bytes: int) -> int:
    """A request's text held by one process: TEXT_BYTES_PER_TOKEN per token of context, at most
    the body limit (the whole limit when the context is not known)."""
    if context_tokens is None:
        return max_body_bytes
    return min(context_tokens * TEXT_BYTES_PER_TOKEN, max_body_bytes)


def worker_cpu_terms(tp: int) -> tuple[Term, ...]:
    """The CPU of a worker pod: it depends on the tensor parallel size only."""
    return (
        Term("GPU worker processes", GPU_PROCESS_CPU * tp, f"tp {tp} x GPU_PROCESS_CPU",
             "one Ray actor per GPU launches its kernels and prepares its inputs"),
        Term("engine core", ENGINE_CORE_CPU, "ENGINE_CORE_CPU",
             "vLLM's scheduler loop runs flat out while requests are in flight"),
        Term("frontend", FRONTEND_CPU, "FRONTEND_CPU",
             "the Serve replica actor's event loop: HTTP, JSON, streaming"),
        Term("tokenizer threads", TOKENIZER_CPU, "TOKENIZER_CPU",
             "tokenizing prompts, detokenizing outputs"),
        Term("Ray node", RAY_NODE_CPU, "RAY_NODE_CPU",
             "raylet, dashboard agent, runtime-env agent, log monitor"),
    )  # fmt: skip


def worker_memory_terms(
    shape: ModelShape,
    *,
    tp: int,
    dtype: str | None = "auto",
    context_tokens: int,
    ongoing_requests: int,
    queued_requests: int,
    max_body_bytes: int,
    cpu_offload_gib: float = 0.0,
    kv_offload_gib: float = 0.0,
) -> tuple[Term, ...]:
    """The memory of a worker pod holding one replica of `shape` at tensor parallel size `tp`.

    `context_tokens` is max_model_len; `ongoing_requests` the requests the replica admits
    (running and waiting in the engine), `queued_requests` those queued on this pod beyond them
    (the direct path; on the ingress path they wait on the head). `cpu_offload_gib` is vLLM's
    cpu_offload_gb (per GPU), `kv_offload_gib` its kv_offloading_size (all ranks together).
    """
    held_dtype = weight_dtype(shape, dtype)
    weights = weight_bytes(shape, held_dtype, 1)
    admitted_tokens = ongoing_requests * context_tokens
    ids = admitted_tokens * (tp + 2) * TOKEN_ID_BYTES
    text = (ongoing_requests + queued_requests) * text_bytes(context_tokens, max_body_bytes)
    offload = cpu_offload_gib * tp + kv_offload_gib
    shm = shm_gib(tp)
    nccl = f" + tp {tp} x NCCL_SHM_GIB_PER_GPU" if tp > 1 else ""
    return (
        Term("checkpoint page cache", _gib(weights),
             f"{shape.params:,} params x {DTYPE_BYTES[held_dtype]:g} B ({held_dtype})",
             "capacity's weight bytes of the whole model. Each GPU process maps its 1/tp of "
             "the safetensors (page cache, not a copy) and the ranks share the pages; vLLM "
             "prefetches a checkpoint on NFS into the cache when it fits the pod"),
        Term("GPU worker processes", GPU_PROCESS_GIB * tp, f"tp {tp} x GPU_PROCESS_GIB",
             "Python, torch, vLLM; the CUDA context's and libraries' host memory; "
             "pinned buffers"),
        Term("frontend", FRONTEND_GIB, "FRONTEND_GIB",
             "the Serve replica actor: tokenizer, detokenizer, the OpenAI layer"),
        Term("engine core", ENGINE_CORE_GIB, "ENGINE_CORE_GIB",
             "scheduler, KV block manager, structured-output grammars"),
        Term("Ray node", RAY_NODE_GIB, "RAY_NODE_GIB",
             "raylet, dashboard agent, runtime-env agent, log monitor"),
        Term("requests held", _gib(ids + text),
             f"{ongoing_requests} requests x {context_tokens:,} tokens x {tp + 2} processes x "
             f"TOKEN_ID_BYTES + {ongoing_requests + queued_requests} requests x "
             f"{text_bytes(context_tokens, max_body_bytes):,} B of text",
             "admitted requests (admission.max_ongoing_requests) at max_model_len, their ids in "
             "the frontend, the engine core and each GPU process"
             + ("; queued ones (max_queued_requests) wait here, on the direct path"
                if queued_requests else "")),
        Term("CPU offload", offload,
             f"{cpu_offload_gib:g} x tp {tp} + {kv_offload_gib:g}",
             "engine_kwargs cpu_offload_gb (per GPU) and kv_offloading_size (all GPUs); "
             "vLLM 0.29 has no swap_space"),
        Term("/dev/shm", shm, f"SHM_GIB{nccl}",
             "a memory-backed emptyDir counts against the pod's memory limit"),
    )  # fmt: skip


def worker_pod(
    shape: ModelShape,
    *,
    tp: int,
    dtype: str | None = "auto",
    context_tokens: int | None = None,
    ongoing_requests: int,
    queued_requests: int = 0,
    max_body_bytes: int = EdgeConfig().max_body_bytes,
    cpu_offload_gib: float = 0.0,
    kv_offload_gib: float = 0.0,
    model: str | None = None,
) -> PodSize:
    """The pod of one replica of `shape` (see worker_memory_terms); `context_tokens` defaults to
    the model's own max_position_embeddings, as vLLM's max_model_len does."""
    memory = worker_memory_terms(
        shape, tp=tp, dtype=dtype,
        context_tokens=context_tokens or shape.max_position_embeddings,
        ongoing_requests=ongoing_requests, queued_requests=queued_requests,
        max_body_bytes=max_body_bytes, cpu_offload_gib=cpu_offload_gib,
        kv_offload_gib=kv_offload_gib,
    )  # fmt: skip
    cpu = worker_cpu_terms(tp)
    return PodSize(group=f"gpu-tp{tp}", memory_terms=memory, cpu_terms=cpu,
                   memory_gib=total(memory), cpu=total(cpu), shm_gib=shm_gib(tp),
                   ray_cpus=tp + 1, model=model or shape.name)  # fmt: skip


@dataclass(frozen=True)
class HeldRequests:
    """Requests of one model whose bodies the head holds at once, and the text of each."""

    model: str
    requests: int
    text_bytes: int


def head_pod(*, ingress: bool, held: Sequence[HeldRequests] = ()) -> PodSize:
    """The head pod: Ray's and Serve's processes, the ingress replica when there is one
    (`ingress`), and the bodies of the requests in `held` in the proxy (and the ingress)."""
    processes = [GCS, DASHBOARD, SERVE_CONTROLLER, SERVE_PROXY, *([INGRESS] if ingress else [])]
    memory = [Term(process.name, process.gib, f"{process.constant}.gib", process.source)
              for process in processes]  # fmt: skip
    cpu = [Term(process.name, process.cores, f"{process.constant}.cores", process.source)
           for process in processes]  # fmt: skip
    memory.append(
        Term(
            "Ray node",
            RAY_NODE_GIB,
            "RAY_NODE_GIB",
            "raylet, dashboard agent, runtime-env agent, log monitor",
        )
    )
    cpu.append(
        Term(
            "Ray node",
            RAY_NODE_CPU,
            "RAY_NODE_CPU",
            "raylet, dashboard agent, runtime-env agent, log monitor",
        )
    )
    memory.append(Term(
        "request bodies", _gib(sum(model.requests * model.text_bytes for model in held)),
        " + ".join(f"{model.requests} requests x {model.text_bytes:,} B" for model in held)
        or "0",
        "the text of every request in flight through the proxy: replicas.max x "
        "max_ongoing_requests + max_queued_requests per model (an unbounded queue, -1, is not "
        "counted)",
    ))  # fmt: skip
    memory.append(
        Term(
            "/dev/shm",
            HEAD_SHM_GIB,
            "HEAD_SHM_GIB",
            "a memory-backed emptyDir counts against the pod's memory limit",
        )
    )
    return PodSize(group="head", memory_terms=tuple(memory), cpu_terms=tuple(cpu),
                   memory_gib=total(memory), cpu=total(cpu), shm_gib=HEAD_SHM_GIB,
                   ray_cpus=1 if ingress else 0)  # fmt: skip


# --- a platform config's pods ----------------------------------------------------------------


@dataclass(frozen=True)
class AdmissionBounds:
    """serving.app.admission_limits, without importing Ray: requests one replica admits and
    queues (-1: unbounded)."""

    ongoing: int
    queued: int

    @classmethod
    def of(cls, model: ModelConfig) -> AdmissionBounds:
        admission = model.admission
        queued = admission.max_queued_requests
        return cls(
            ongoing=admission.max_ongoing_requests or 2 * model.max_num_seqs,
            queued=4 * model.max_num_seqs if queued is None else queued,
        )
