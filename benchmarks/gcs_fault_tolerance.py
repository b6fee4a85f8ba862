"""Ray's GCS fault tolerance outside Kubernetes: Serve while the GCS is down, and the recovery.

Starts its own Redis and Ray cluster (ports 17000-17999, temp dir /tmp/gcsft-ray: never the
platform's ports or /tmp/ray, so it runs beside `gpucluster up`), with the Serve settings the
platform's Ray nodes get (direct ingress: Serve's proxy on the head only, and each ingress
replica answering HTTP on a port of its own), deploys a one-line application, sends a request
every 100 ms both through the head's proxy and straight to the replica's port, takes the GCS
down, brings it back, and prints what was answered.

    .venv/bin/python benchmarks/gcs_fault_tolerance.py [--scenario gcs|head] [--outage 10]
        [--no-redis] [--json]

Scenarios:
  gcs   SIGKILL the head's gcs_server alone and relaunch it with the command line and
        environment `ray start` gave it (nothing in a local head restarts it). The raylet, the
        Serve controller, the proxy and the replica keep running.
  head  the replica runs on a second (worker) node; SIGKILL every process of the head node
        (GCS, raylet, dashboard, Serve controller and proxy) and run `ray start --head` again,
        which is what a KubeRay head pod's restart amounts to. The worker node stays.
--no-redis: the same without external storage (the GCS keeps its tables in memory): the
control experiment. Every process the script started is stopped at the end, by PID.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from gpucluster.runtime.processes import (
    PLATFORM_TAG_ENV,
    identities,
    platform_processes,
    still_running,
    terminate_all,
    worker_tag,
)
from gpucluster.runtime.worker_node import host_address

TEMP_DIR = Path("/tmp/gcsft-ray")
WORKER_TEMP_DIR = Path("/tmp/gcsft-ray-worker")
HOST = "127.0.0.1"
RAY = str(Path(sys.executable).parent / "ray")
# A resource only the worker node offers: the head scenario's replicas must run there.
WORKER_RESOURCE = "gcsft_worker"
# What KubeRay gives worker pods when GCS FT is on (RAY_gcs_rpc_server_reconnect_timeout_s):
# how long a raylet keeps trying to reach a GCS that went away before it exits (Ray's: 60).
WORKER_RECONNECT_TIMEOUT_S = "600"
PATHS = ("proxy", "replica")


@dataclass(frozen=True)
class Ports:
    """Every port the demo binds: one block, apart from the platform's and Ray's usual ones."""

    base: int = 17000

    @property
    def serve(self) -> int:
        return self.base

    @property
    def client(self) -> int:
        return self.base + 1

    @property
    def gcs(self) -> int:
        return self.base + 2

    @property
    def redis(self) -> int:
        return self.base + 3

    @property
    def dashboard(self) -> int:
        return self.base + 4

    @property
    def direct_ingress(self) -> tuple[int, int]:
        """HTTP ports Serve gives ingress replicas (the platform's are 18400-18415)."""
        return self.base + 400, self.base + 415

    @property
    def direct_ingress_grpc(self) -> tuple[int, int]:
        return self.base + 420, self.base + 435

    def node(self, worker: bool) -> dict[str, int]:
        """`ray start` port options of the head (worker=False) or of the worker node."""
        offset = 10 if worker else 0
        low = self.base + (750 if worker else 500)
        return {
            "metrics-export-port": self.base + 20 + offset,
            "dashboard-agent-listen-port": self.base + 21 + offset,
            "node-manager-port": self.base + 22 + offset,
            "object-manager-port": self.base + 23 + offset,
            "min-worker-port": low,
            "max-worker-port": low + 249,
        }

    def fixed(self) -> list[int]:
        ports = [self.serve, self.client, self.gcs, self.redis, self.dashboard]
        for worker in (False, True):
            node = self.node(worker)
            ports += [v for k, v in node.items() if not k.endswith("worker-port")]
        return ports


@dataclass
class Probe:
    """One request: when it started (monotonic), how long it took, and what came back."""

    started: float
    seconds: float
    ok: bool
    detail: str


@dataclass
class PathFigures:
    """What one way in (the head's proxy, the replica's own port) answered."""

    url: str = ""
    phases: dict[str, dict[str, int]] = field(default_factory=dict)
    first_failure_after_kill_s: float | None = None
    back_after_relaunch_s: float | None = None  # the first answer after the last failure
    longest_gap_s: float = 0.0  # longest stretch without an answer
    failures: list[str] = field(default_factory=list)


@dataclass
class Result:
    scenario: str
    redis: bool
    outage_s: float = 0.0  # kill -> relaunch
    gcs_back_after_s: float | None = None  # relaunch -> the GCS reports every node alive
    paths: dict[str, PathFigures] = field(default_factory=dict)
    replica_before: str = ""
    replica_after: str = ""
    nodes_before: list[str] = field(default_factory=list)
    nodes_after: list[str] = field(default_factory=list)
    new_deployment_ok: bool = False
    new_deployment_s: float | None = None
    dashboard_alive_after: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Demo:
    def __init__(
        self, ports: Ports, redis: bool, scenario: str, paths: tuple[str, ...] = PATHS
    ) -> None:
        self.ports = ports
        self.paths = paths
        self.redis = redis
        self.scenario = scenario
        # Ray takes a host with a second node for a cluster and does not keep it on loopback
        # (runtime.ray_head.node_env): the head scenario's nodes use the host's address, as
        # `gpucluster join` does; Serve and Redis stay on loopback.
        self.node_ip = host_address() if scenario == "head" else HOST
        self.gcs_address = f"{self.node_ip}:{ports.gcs}"
        self.tag = f"gcsft-demo-{os.getpid()}-{secrets.token_hex(4)}"
        self.work = Path(tempfile.mkdtemp(prefix="gcsft-"))
        self.token = self.work / "ray-token"
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)
        # this process's own GCS client (nodes()) authenticates with the demo's token
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token))
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.started: list[dict[str, float]] = []  # identities, to find orphans at the end
        self.children: list[subprocess.Popen[bytes]] = []
        self.urls = {"proxy": f"http://{HOST}:{ports.serve}/"}
        self.probes: dict[str, list[Probe]] = {name: [] for name in PATHS}
        self._stop = threading.Event()

    # --- processes -------------------------------------------------------------------------

    def env(self, worker: bool = False) -> dict[str, str]:
        low, high = self.ports.direct_ingress
        grpc_low, grpc_high = self.ports.direct_ingress_grpc
        env = {
            **os.environ,
            PLATFORM_TAG_ENV: worker_tag(self.tag) if worker else self.tag,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token),
            # a head alone on loopback stays on 127.0.0.1; a second node needs clusters on
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if self.scenario == "head" else "0",
            # as config.ray_node.node_env gives every runner's Ray nodes
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(low),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(high),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_low),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_high),
        }
        env.pop("RAY_REDIS_ADDRESS", None)
        env.pop("RAY_ADDRESS", None)
        if self.redis:
            env["RAY_REDIS_ADDRESS"] = f"{HOST}:{self.ports.redis}"
            env["RAY_external_storage_namespace"] = self.tag
        if worker:
            env["RAY_gcs_rpc_server_reconnect_timeout_s"] = WORKER_RECONNECT_TIMEOUT_S
        return env

    def remember(self) -> None:
        """Record every process of the demo, so that orphans are stopped too."""
        procs = {p.pid: p for p in [*still_running(self.started), *platform_processes(self.tag)]}
        self.started = identities(list(procs.values()))

    def start_redis(self) -> None:
        self.redis_proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.ports.redis),
                "--bind",
                HOST,
                "--dir",
                str(self.work),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            executable=redis_binary(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.ports.redis), 10, "redis-server to listen")

    def ray_start_head(self) -> None:
        p = self.ports
        options = {
            "node-ip-address": self.node_ip,
            "port": p.gcs,
            "dashboard-host": HOST,
            "dashboard-port": p.dashboard,
            "ray-client-server-port": p.client,
            "num-cpus": 2 if self.scenario == "gcs" else 0,
            **p.node(worker=False),
        }
        run([RAY, "start", "--head", f"--temp-dir={TEMP_DIR}", *flags(options)], self.env())

    def ray_start_worker(self) -> None:
        options = {
            "address": self.gcs_address,
            "node-ip-address": self.node_ip,
            "num-cpus": 2,
            "resources": json.dumps({WORKER_RESOURCE: 2}),  # room for the second application
            **self.ports.node(worker=True),
        }
        run([RAY, "start", f"--temp-dir={WORKER_TEMP_DIR}", *flags(options)], self.env(worker=True))

    def head_processes(self) -> list[psutil.Process]:
        return platform_processes(self.tag, exact=True)

    def gcs_process(self) -> psutil.Process:
        for proc in self.head_processes():
            try:
                if Path(proc.cmdline()[0]).name == "gcs_server":
                    return proc
            except (psutil.Error, IndexError):
                continue
        raise RuntimeError("no gcs_server among the demo's processes")

    def driver(self, code: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run `code` as a Ray driver of the demo's cluster."""
        env = {**self.env(), "RAY_ADDRESS": self.gcs_address}
        argv = [sys.executable, "-c", code]
        try:
            return subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as expired:
            stderr = expired.stderr.decode(errors="replace") if expired.stderr else ""
            return subprocess.CompletedProcess(argv, -1, "", f"{stderr}\ntimed out ({timeout} s)")

    def deploy(self, name: str, route: str) -> subprocess.CompletedProcess[str]:
        resources = {WORKER_RESOURCE: 1} if self.scenario == "head" else {}
        return self.driver(
            DEPLOY.format(
                host=HOST,
                port=self.ports.serve,
                name=name,
                route=route,
                options=repr({"num_cpus": 1, "resources": resources}),
            )
        )

    def replica_port(self, pid: int) -> int | None:
        """The direct-ingress HTTP port the replica `pid` listens on."""
        low, high = self.ports.direct_ingress
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and low <= conn.laddr.port <= high:
                    return conn.laddr.port
        except psutil.Error:
            pass
        return None

    def stop_all(self) -> list[str]:
        """Stop every process the demo started (found by its tag, its records, its children)."""
        left: list[psutil.Process] = []
        owned = [*self.children, *([self.redis_proc] if self.redis_proc else [])]
        for _ in range(3):  # a raylet may start a worker while it is being stopped
            procs = {p.pid: p for p in still_running(self.started)}
            procs.update((p.pid, p) for p in platform_processes(self.tag))
            for child in owned:
                if child.poll() is None:
                    procs[child.pid] = psutil.Process(child.pid)
            if not procs:
                break
            left = terminate_all(list(procs.values()), grace_s=3)
        for child in owned:
            try:
                child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        return [f"pid {p.pid}" for p in left if p.is_running() and p.status() != "zombie"]

    # --- measuring ---------------------------------------------------------------------------

    @staticmethod
    def request(url: str, timeout: float = 1.0) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status == 200, response.read().decode().strip()
        except (urllib.error.URLError, OSError) as error:
            return False, f"{type(error).__name__}: {getattr(error, 'reason', error)}"

    def probe_loop(self, name: str, interval: float) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            ok, detail = self.request(self.urls[name])
            self.probes[name].append(Probe(started, time.monotonic() - started, ok, detail))
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def nodes(self, timeout: float = 2.0) -> list[str] | None:
        """IDs of the ALIVE nodes as the GCS reports them, or None while it does not answer."""
        from ray._raylet import GcsClient  # after __init__ set the token's environment

        try:
            client = GcsClient(address=self.gcs_address)
            nodes = client.get_all_node_info(timeout=timeout)
        except Exception:  # noqa: BLE001 - whatever the GCS client raises means "not answering"
            return None
        return sorted(node_id.hex() for node_id, info in nodes.items() if info.state == 0)

    def dashboard_alive(self) -> bool:
        ok, _ = self.request(f"http://{HOST}:{self.ports.dashboard}/api/gcs_healthz", 2)
        return ok

    # --- the experiment ---------------------------------------------------------------------

    def run(self, outage: float, interval: float, after: float) -> Result:
        result = Result(self.scenario, self.redis)
        began = time.monotonic()
        self.start()
        ok, body = self.request(self.urls["proxy"], timeout=5)
        if not ok:
            raise RuntimeError(f"the application does not answer: {body}")
        result.replica_before = body
        port = self.replica_port(int(body.rsplit(" ", 1)[1]))
        if port is None:
            raise RuntimeError("the replica listens on no direct-ingress port")
        self.urls["replica"] = f"http://{HOST}:{port}/"
        result.nodes_before = self.nodes() or []
        self.remember()

        probers = [
            threading.Thread(target=self.probe_loop, args=(name, interval), daemon=True)
            for name in self.paths
        ]
        for prober in probers:
            prober.start()
        time.sleep(2)  # a baseline
        killed, relaunched = self.fail_and_restore(outage, result)
        if not result.errors:
            self.check_recovery(result, relaunched, after)
        self._stop.set()
        for prober in probers:
            prober.join(timeout=5)
        for name in self.paths:
            result.paths[name] = figures(self.urls[name], self.probes[name], killed, relaunched)
        result.seconds = round(time.monotonic() - began, 1)
        return result

    def start(self) -> None:
        taken = [port for port in self.ports.fixed() if port_open(port)]
        if taken:
            raise SystemExit(f"ports in use: {taken}; choose another block with --port-base")
        if self.redis:
            self.start_redis()
        self.ray_start_head()
        if self.scenario == "head":
            self.ray_start_worker()
        self.remember()
        deployed = self.deploy("echo", "/")
        if deployed.returncode != 0:
            raise RuntimeError(f"deploy failed: {deployed.stderr[-2000:]}")

    def fail_and_restore(self, outage: float, result: Result) -> tuple[float, float]:
        """Take the GCS (or the whole head) down for `outage` seconds and start it again."""
        if self.scenario == "gcs":
            gcs = self.gcs_process()
            argv, env = gcs.cmdline(), read_environ(gcs.pid)
            killed = time.monotonic()
            gcs.send_signal(signal.SIGKILL)
            time.sleep(outage)
            relaunched = time.monotonic()
            self.children.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        else:
            head = self.head_processes()
            killed = time.monotonic()
            for proc in head:
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass
            psutil.wait_procs(head, timeout=5)
            time.sleep(max(0.0, outage - (time.monotonic() - killed)))
            # `ray start --head` refuses to start where the last head ran while a process on
            # this host still names that GCS (the worker's raylet); a new pod has no such file
            (TEMP_DIR / "ray_current_cluster").unlink(missing_ok=True)
            relaunched = time.monotonic()
            try:
                self.ray_start_head()
            except RuntimeError as error:
                result.errors.append(f"restarting the head: {str(error)[-3000:]}")
        result.outage_s = round(relaunched - killed, 2)
        return killed, relaunched

    def check_recovery(self, result: Result, relaunched: float, after: float) -> None:
        expected = len(result.nodes_before)
        if wait_for(lambda: len(self.nodes() or []) >= expected, 60, None):
            result.gcs_back_after_s = round(time.monotonic() - relaunched, 2)
        else:
            result.errors.append(f"the GCS did not report {expected} nodes alive within 60 s")
        if not wait_for(lambda: self.request(self.urls["proxy"])[0], 45, None):
            result.errors.append("Serve's proxy did not answer within 45 s of the GCS's return")
            return
        self.remember()
        started = time.monotonic()
        second = self.deploy("after", "/after")
        result.new_deployment_s = round(time.monotonic() - started, 2)
        result.new_deployment_ok = (
            second.returncode == 0 and self.request(self.urls["proxy"] + "after", 5)[0]
        )
        if second.returncode != 0:
            result.errors.append(f"deploy after recovery: {second.stderr[-1500:]}")
        time.sleep(after)
        ok, body = self.request(self.urls["proxy"], timeout=5)
        result.replica_after = body if ok else f"(no answer: {body})"
        # this process's GCS client keeps the first cluster's id: it cannot count the nodes of
        # the new, empty cluster an in-memory GCS starts as
        result.nodes_after = (self.nodes() or []) if self.redis else []
        result.dashboard_alive_after = self.dashboard_alive()


DEPLOY = """
import ray
from ray import serve
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
serve.start(http_options={{"host": "{host}", "port": {port}}}, proxy_location="HeadOnly")

@serve.deployment(ray_actor_options={options})
class Echo:
    def __call__(self, request):
        import os
        return f"replica pid {{os.getpid()}}"

serve.run(Echo.bind(), name="{name}", route_prefix="{route}", blocking=False)
"""


def figures(url: str, probes: list[Probe], killed: float, relaunched: float) -> PathFigures:
    """Answered and failed requests before the kill, during the outage and after the relaunch
    (by when each request started: one in flight at the kill counts as `before`)."""
    found = PathFigures(url=url)
    for probe in probes:
        phase = (
            "before"
            if probe.started < killed
            else ("outage" if probe.started < relaunched else "after")
        )
        counts = found.phases.setdefault(phase, {"answered": 0, "failed": 0})
        counts["answered" if probe.ok else "failed"] += 1
    failed = [p for p in probes if not p.ok and p.started + p.seconds >= killed]
    if failed:
        found.first_failure_after_kill_s = round(max(0.0, failed[0].started - killed), 2)
        back = next((p for p in probes if p.ok and p.started > failed[-1].started), None)
        if back is not None:
            found.back_after_relaunch_s = round(back.started - relaunched, 2)
    answered = [p.started + p.seconds for p in probes if p.ok]
    found.longest_gap_s = round(
        max((b - a for a, b in itertools.pairwise(answered)), default=0.0), 2
    )
    found.failures = sorted({p.detail for p in probes if not p.ok})[:5]
    return found


def redis_binary() -> str:
    """Redis's server binary. Debian's redis-tools (scripts/setup.sh) holds it as
    redis-check-rdb, a server when started under the name redis-server; the redis-server
    package would also start a system Redis on 6379, the platform's GCS port."""
    found = shutil.which("redis-server") or shutil.which("redis-check-rdb")
    if found is None:
        raise SystemExit("no Redis server binary: apt-get install -y redis-tools")
    return found


def flags(options: dict[str, object]) -> list[str]:
    return [f"--{name}={value}" for name, value in options.items()]


def run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}"
        )


def read_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {key: value for key, _, value in pairs}


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((HOST, port)) == 0


def wait_for(predicate, timeout: float, what: str | None, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    if what is not None:
        raise RuntimeError(f"timed out waiting for {what}")
    return False


def report(result: Result) -> str:
    storage = "Redis" if result.redis else "none (in-memory GCS)"
    kept = sorted(set(result.nodes_before) & set(result.nodes_after))
    deployed = "ok" if result.new_deployment_ok else "FAILED"
    lines = [
        f"scenario {result.scenario}, external storage: {storage}",
        f"down for {result.outage_s:.1f} s (kill -> relaunch); the GCS reports every node "
        + f"alive {result.gcs_back_after_s} s after the relaunch",
        f"{'path':<8} {'before':>13} {'outage':>13} {'after':>13}  (answered/failed)",
    ]
    for name, path in result.paths.items():
        cells = []
        for phase in ("before", "outage", "after"):
            counts = path.phases.get(phase, {"answered": 0, "failed": 0})
            cells.append(f"{counts['answered']:>6}/{counts['failed']:<6}")
        lines.append(f"{name:<8} {' '.join(cells)}")
    for name, path in result.paths.items():
        lines.append(
            f"{name}: longest gap between answers {path.longest_gap_s} s; first failure "
            f"{path.first_failure_after_kill_s} s after the kill; answering again "
            f"{path.back_after_relaunch_s} s after the relaunch"
        )
        if path.failures:
            lines.append(f"{name} failures: {'; '.join(path.failures)}")
    lines += [
        f"replica before: {result.replica_before}; after: {result.replica_after}",
        f"alive nodes before {len(result.nodes_before)}, after {len(result.nodes_after)}, "
        + f"kept their id: {len(kept)}",
        f"new deployment after the recovery: {deployed} ({result.new_deployment_s} s)",
        f"dashboard answers /api/gcs_healthz after: {result.dashboard_alive_after}",
        f"run took {result.seconds} s",
        *(f"error: {e}" for e in result.errors),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("gcs", "head"), default="gcs")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the GCS stays down")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of requests after")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between requests")
    parser.add_argument("--no-redis", action="store_true", help="in-memory GCS (the control)")
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help="which ways in to send requests to: proxy, replica or both",
    )
    parser.add_argument("--port-base", type=int, default=17000)
    parser.add_argument("--keep-logs", action="store_true", help=f"keep {TEMP_DIR}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths = tuple(name for name in PATHS if name in args.paths.split(","))
    demo = Demo(Ports(args.port_base), not args.no_redis, args.scenario, paths or PATHS)
    result: Result | None = None
    try:
        result = demo.run(args.outage, args.interval, args.after)
    finally:
        left = demo.stop_all()
        if not args.keep_logs:
            for directory in (TEMP_DIR, WORKER_TEMP_DIR):
                shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(demo.work, ignore_errors=True)
        if left:
            print(f"could not stop: {', '.join(left)}", file=sys.stderr)
    print(json.dumps(asdict(result), indent=2) if args.json else report(result))
    return 0 if not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
