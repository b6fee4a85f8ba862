"""Where the CPU goes while the platform serves: CPU seconds per component during one bench run.

Needs a platform started with `gpucluster up`. Samples the CPU time of every platform process
(nginx, Serve's HTTP proxy, the ingress replica, the LLM replica, the vLLM engine's
processes, Ray's daemons, monitoring) and of the bench client before and after `gpucluster bench` at each
concurrency, and prints each component's share and CPU milliseconds per output token.

    .venv/bin/python benchmarks/cpu_profile.py --concurrency 1,8,32 --requests 32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import psutil

from gpucluster.config import load_config
from gpucluster.runtime.processes import platform_processes
from gpucluster.runtime.state import StateDir

# First match wins: (component, substring of the process's command line or name).
ROLES = (
    ("vLLM engine (EngineCore + Worker)", "VLLM::"),
    ("LLM replica", "ServeReplica:llm:PlatformLLMServer"),
    ("ingress replica", "ServeReplica:llm:OpenAiIngress"),
    ("Serve HTTP proxy", "ProxyActor"),
    ("Serve controller", "ServeController"),
    ("nginx", "nginx"),
    ("Prometheus, Alertmanager", "prometheus"),
    ("Ray daemons (GCS, raylet, dashboard, agents)", ""),
)


def role(proc: psutil.Process) -> str:
    try:
        text = " ".join(proc.cmdline()) + " " + proc.name()
    except psutil.Error:
        return "gone"
    for name, needle in ROLES:
        if needle and needle in text:
            return name
    if "alertmanager" in text:
        return "Prometheus, Alertmanager"
    return ROLES[-1][0]


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, tuple[str, float]]:
    out = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
            out[proc.pid] = (role(proc), times.user + times.system)
        except psutil.Error:
            continue
    return out


def profile(concurrency: int, args, tag: str) -> dict:
    before = cpu_seconds(platform_processes(tag))
    bench = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpucluster",
            "bench",
            "--json",
            "--concurrency",
            str(concurrency),
            "-n",
            str(args.requests),
            "--input-tokens",
            str(args.input_tokens),
            "--output-tokens",
            str(args.output_tokens),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    client = psutil.Process(bench.pid)
    client_cpu = 0.0
    while bench.poll() is None:
        try:
            times = client.cpu_times()
            client_cpu = times.user + times.system
        except psutil.Error:
            pass
        try:
            bench.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    (run,) = json.loads(bench.stdout.read())["runs"]
    after = cpu_seconds(platform_processes(tag))
    used: dict[str, float] = {"bench client": client_cpu}
    for pid, (name, seconds) in after.items():
        used[name] = used.get(name, 0.0) + seconds - before.get(pid, (name, 0.0))[1]
    return {
        "concurrency": concurrency,
        "output_tokens": run["output_tokens"],
        "duration_s": run["duration_s"],
        "output_throughput": run["output_throughput"],
        "cpu_s": used,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("cpu-profile.json"))
    args = parser.parse_args()
    tag = StateDir(load_config().platform.state_dir).tag
    results = [profile(int(c), args, tag) for c in args.concurrency.split(",")]
    args.out.write_text(json.dumps(results, indent=2))
    for result in results:
        total = sum(result["cpu_s"].values())
        wall = result["duration_s"]
        print(
            f"\nconcurrency {result['concurrency']}: {result['output_throughput']:.1f} tok/s, "
            f"{wall:.1f} s, CPU {total:.1f} s of {2 * wall:.1f} s on 2 cores"
        )
        for name, seconds in sorted(result["cpu_s"].items(), key=lambda kv: -kv[1]):
            per_token_ms = 1000 * seconds / max(1, result["output_tokens"])
            print(
                f"  {name:<46} {seconds:7.2f} s  {100 * seconds / total:5.1f}%  "
                f"{per_token_ms:6.2f} ms/token"
            )
    print(f"\nreport: {args.out}")


if __name__ == "__main__":
    main()
