"""`gpucluster health`: the guide's health-check script, run in parallel with short timeouts.

Each check reports a status, what it saw, how long it took and, when it fails, what to do.
The end-to-end probe generates one token through nginx -> Serve -> engine, which tells a
platform whose processes are up from one that actually generates.

Every check sends through one `httpx.Client` (`run_health`'s, else one of its own), each request
with the check's own timeout; tests give a client on an httpx.MockTransport.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import httpx

from gpucluster.errors import GpuClusterError
from gpucluster.ops.prom import Prometheus, PrometheusUnavailable
from gpucluster.ops.ray_api import NODES_PATH, RayApiError, ray_nodes
from gpucluster.ops.target import Target
from gpucluster.runtime.gpus import local_gpus, nvidia_smi_installed
from gpucluster.runtime.readiness import answers
from gpucluster.runtime.state import RAY_SD_FILE

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"
TIMEOUT_S = 2.0
PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    detail: str
    latency_ms: float
    hint: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class CheckFailed(GpuClusterError):
    """A check's failure: what was seen and what to do (`hint`, the next step; empty: the
    check's default)."""

    def __init__(self, detail: str, hint: str, status: str = FAIL) -> None:
        super().__init__(detail, next_step=hint or None)
        self.detail = detail
        self.hint = hint
        self.status = status


def _get(
    client: httpx.Client,
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT_S,
) -> httpx.Response:
    try:
        return client.get(url, headers=headers or {}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise CheckFailed(f"{url}: {type(exc).__name__}", "") from None


def check_api(t: Target, client: httpx.Client) -> str:
    response = _get(client, f"{t.endpoints.openai_api}/models", t.auth_headers)
    if response.status_code == 401:
        raise CheckFailed(
            "401 from /v1/models", "set GPUCLUSTER_API_KEYS to a valid key for the checks"
        )
    if response.status_code != 200:
        raise CheckFailed(f"HTTP {response.status_code} from /v1/models", "gpucluster logs serve")
    ids = [m["id"] for m in response.json()["data"]]
    return f"models: {', '.join(ids)}"


def check_proxy_health(t: Target, client: httpx.Client) -> str:
    response = _get(client, t.endpoints.health, timeout=8)
    if response.status_code != 200:
        reason = response.json().get("error", {}).get("message", response.text[:200])
        raise CheckFailed(
            f"HTTP {response.status_code}: {reason}",
            "gpucluster logs serve; gpucluster logs engine",
        )
    return "200 " + ", ".join(f"{m}: {s}" for m, s in response.json().get("models", {}).items())


def check_ray_dashboard(t: Target, client: httpx.Client) -> str:
    response = _get(client, t.endpoints.ray_dashboard)
    if response.status_code != 200:
        raise CheckFailed(f"HTTP {response.status_code}", "gpucluster logs ray")
    return "200"


def check_ray_cluster(t: Target, client: httpx.Client) -> str:
    try:
        nodes = ray_nodes(t.endpoints.ray_dashboard, t.ray_headers(), timeout_s=5, client=client)
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        raise CheckFailed(f"Ray API answered HTTP {code}", "gpucluster logs ray") from None
    except RayApiError as exc:
        raise CheckFailed(str(exc), "gpucluster logs ray") from None
    except httpx.HTTPError as exc:
        url = f"{t.endpoints.ray_dashboard}{NODES_PATH}"
        raise CheckFailed(f"{url}: {type(exc).__name__}", "") from None
    alive = [n for n in nodes if n.alive]
    if not alive:
        raise CheckFailed("no alive Ray node", "gpucluster down && gpucluster up")
    return f"{len(alive)} alive node(s)"


def check_prometheus(t: Target, client: httpx.Client) -> str:
    response = _get(client, f"{t.endpoints.prometheus}/-/healthy")
    if response.status_code != 200:
        raise CheckFailed(f"HTTP {response.status_code}", "gpucluster logs prometheus")
    try:
        ray = Prometheus(t.endpoints.prometheus, client).ray_targets()
    except PrometheusUnavailable as exc:
        raise CheckFailed(str(exc), "") from None
    down = [x["scrapeUrl"] for x in ray if x["health"] != "up"]
    if not ray or down:
        raise CheckFailed(
            f"Ray targets up: {len(ray) - len(down)}/{len(ray)}"
            + (f"; down: {', '.join(down)}" if down else ""),
            f"cat {RAY_SD_FILE}; curl {t.endpoints.ray_metrics}",
            WARN,
        )
    return f"healthy; {len(ray)} Ray target(s) up"


def check_alertmanager(t: Target, client: httpx.Client) -> str:
    response = _get(client, f"{t.endpoints.alertmanager}/-/healthy")
    if response.status_code != 200:
        raise CheckFailed(f"HTTP {response.status_code}", "gpucluster logs alertmanager")
    return "healthy"


def check_gpu(t: Target, client: httpx.Client | None = None) -> str:  # nvidia-smi: no HTTP
    if not any(m.accelerator == "gpu" for m in t.config.models):
        return "not used (every model runs on CPU)"
    if not nvidia_smi_installed():
        raise CheckFailed(
            "a model asks for GPUs but nvidia-smi is not installed", "install the NVIDIA driver"
        )
    gpus = local_gpus(timeout_s=5)
    if not gpus:
        raise CheckFailed(
            "nvidia-smi sees no GPU", "check the driver and that GPUs are visible: nvidia-smi"
        )
    return f"{len(gpus)} GPU(s)"


def check_generation(t: Target, client: httpx.Client) -> str:
    model = t.models[0]
    try:
        embeds = t.config.model(model).embeds
    except KeyError:  # a model the platform serves that this config does not name
        embeds = False
    ok, detail = answers(
        t.endpoints.openai_api, model, t.api_key, PROBE_TIMEOUT_S, embeds=embeds, client=client
    )
    if not ok:
        raise CheckFailed(detail, "gpucluster logs serve; gpucluster logs engine")
    return f"{model} embedded one word" if embeds else f"{model} generated 1 token"


RAY_HEAD_RECOVERY = "gpucluster down && gpucluster up"
RAY_HEAD_LOST = (
    "the Ray head is gone and Serve and the models with it: `gpucluster logs ray` says why; "
    f"recover with `{RAY_HEAD_RECOVERY}`"
)

Check = Callable[[Target, httpx.Client], str]  # what it saw, or CheckFailed

CHECKS: dict[str, tuple[Check, str]] = {
    "api": (check_api, "gpucluster logs serve; gpucluster up"),
    "nginx /health": (check_proxy_health, "gpucluster logs nginx"),
    "ray dashboard": (check_ray_dashboard, RAY_HEAD_LOST),
    "ray cluster": (check_ray_cluster, RAY_HEAD_LOST),
    "prometheus": (check_prometheus, "gpucluster logs prometheus"),
    "alertmanager": (check_alertmanager, "gpucluster logs alertmanager"),
    "gpu": (check_gpu, "nvidia-smi"),
    "generation": (check_generation, "gpucluster logs engine"),
}


def _run(
    name: str, check: Check, default_hint: str, target: Target, client: httpx.Client
) -> CheckResult:
    started = time.perf_counter()
    try:
        detail, status, hint = check(target, client), OK, ""
    except CheckFailed as exc:
        detail, status, hint = exc.detail, exc.status, exc.hint or default_hint
    except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, not a crash
        detail, status, hint = f"{type(exc).__name__}: {exc}", FAIL, default_hint
    return CheckResult(name, status, detail, round((time.perf_counter() - started) * 1000, 1), hint)


def run_health(target: Target, client: httpx.Client | None = None) -> list[CheckResult]:
    """Every check, in parallel, through `client` (shared by the checks' threads; default: one
    of its own, closed at the end); results in CHECKS order."""
    if client is None:
        with httpx.Client(timeout=TIMEOUT_S) as own:
            return run_health(target, own)
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = [
            pool.submit(_run, name, check, hint, target, client)
            for name, (check, hint) in CHECKS.items()
        ]
        return [future.result() for future in futures]
