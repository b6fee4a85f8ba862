"""What the edge's key and quota checks cost each request, judged by vLLM's own client.

Needs the local platform up (`gpucluster up`) with a named key (`gpucluster keys create bench`;
pass it with --key). Starts a second nginx beside the platform's, from the platform's own
rendered nginx.conf with only the gatekeeper's `auth_request` removed, on --port; then runs
vLLM's benchmark client (random 128 in / 64 out, ignore_eos) against both, interleaved. Both
reach the same replica, whose own key check and usage report run either way: the difference is
the edge's check (nginx's subrequest and the gatekeeper's decision).

    .venv/bin/python benchmarks/key_checks.py --key gpc-... --concurrency 1,8 --rounds 3
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from vllm_client import Target, interleaved, report

from gpucluster.config import load_config
from gpucluster.models import prepare_model
from gpucluster.runtime.edge import NGINX_BINARY
from gpucluster.runtime.state import StateDir


def unchecked_nginx(conf: Path, port: int, workdir: Path) -> Path:
    """The platform's nginx.conf without the gatekeeper's check, listening on `port`."""
    text = conf.read_text(encoding="utf-8")
    # Only the check itself goes; auth_request_set stays, defining its (then empty) variables.
    text = "\n".join(
        line for line in text.splitlines() if not line.strip().startswith("auth_request ")
    )
    text = re.sub(r"listen [^;]+;", f"listen 127.0.0.1:{port};", text, count=1)
    text = re.sub(r"^pid [^;]+;", f"pid {workdir}/nginx.pid;", text, flags=re.MULTILINE)
    text = re.sub(r"access_log [^;]+;", "access_log off;", text)
    out = workdir / "nginx.conf"
    out.write_text(text, encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="a key `gpucluster keys create` printed")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("key-checks.json"))
    args = parser.parse_args()
    config = load_config(None)
    state = StateDir(config.platform.state_dir)
    model = config.models[0]
    weights = prepare_model(model.source, config.platform.model_cache_dir)
    checked = Target("checked", f"http://127.0.0.1:{config.platform.ports.nginx_http}", args.key)
    with tempfile.TemporaryDirectory() as tmp:
        conf = unchecked_nginx(state.nginx_dir / "nginx.conf", args.port, Path(tmp))
        nginx = subprocess.Popen(
            [NGINX_BINARY, "-p", str(state.nginx_dir), "-c", str(conf), "-g", "daemon off;"]
        )
        try:
            unchecked = Target("unchecked", f"http://127.0.0.1:{args.port}", args.key)
            runs = interleaved(
                [unchecked, checked],
                model.id,
                weights,
                [int(c) for c in args.concurrency.split(",")],
                args.rounds,
                128,
                64,
            )
        finally:
            nginx.terminate()
            nginx.wait(timeout=30)
    report(runs, "unchecked", "checked", args.out)


if __name__ == "__main__":
    main()
