"""Deploy driver: connects to the running Ray head and runs a rendered Serve config.

Started by the local-mode runtime (and by the compose container's entrypoint) as
`python -m gpucluster.serving.deploy SERVE_CONFIG --address HOST:PORT`, where SERVE_CONFIG is
the file `serve_config` renders (YAML or JSON). It returns once Serve reports every application
running (every model loaded) or exits non-zero with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import serve
from ray.serve.schema import ApplicationStatus

logger = logging.getLogger("gpucluster.deploy")

POLL_S = 0.25


def load_builder(import_path: str) -> Any:
    """The application builder `module:attribute` names."""
    module, _, attribute = import_path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def deploy(serve_config_path: Path, address: str, wait_for_go: bool = False) -> None:
    """Run every application of the Serve config at `serve_config_path` on the cluster.

    The builders are imported first (Ray Serve LLM and vLLM: seconds of imports); with
    `wait_for_go` the driver then waits for a line on stdin before connecting, so that a caller
    can start it while the Ray head is still starting.
    """
    spec = yaml.safe_load(serve_config_path.read_text(encoding="utf-8"))
    builders = [load_builder(application["import_path"]) for application in spec["applications"]]
    if wait_for_go and not sys.stdin.readline():
        raise RuntimeError("stdin closed before the go line: the caller gave up")
    ray.init(address=address, logging_level=logging.WARNING)
    serve.start(http_options=spec["http_options"], proxy_location=spec["proxy_location"])
    for application, builder in zip(spec["applications"], builders, strict=True):
        for model in application["args"].get("models", []):
            logger.info("Loading model %s...", model["id"])
        app = builder(application["args"])
        target = serve.RunTarget(app, application["name"], application["route_prefix"])
        serve.run_many([target], wait_for_applications_running=False)
        wait_running(application["name"])
        logger.info("Application %r running", application["name"])


def wait_running(name: str, poll_s: float = POLL_S) -> None:
    """Return once application `name` runs; RuntimeError with Serve's reason if it failed.

    What `serve.run` does when blocking, polling 4 times as often (it sleeps 1 s): the
    platform's start waits on this.
    """
    while True:
        app = serve.status().applications.get(name)
        if app is None:
            raise RuntimeError(f"Waiting for application {name} to be RUNNING, but it is gone.")
        if app.status == ApplicationStatus.RUNNING:
            return
        if app.status == ApplicationStatus.DEPLOY_FAILED:
            raise RuntimeError(f"Deploying application {name} failed: {app.message}")
        time.sleep(poll_s)


def main(argv: list[str]) -> int:
    """Entry point: `SERVE_CONFIG --address HOST:PORT`."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(prog="python -m gpucluster.serving.deploy")
    parser.add_argument("serve_config", type=Path, help="Serve config rendered by gpucluster")
    parser.add_argument("--address", default="auto", help="Ray head address (default: auto)")
    parser.add_argument(
        "--wait-for-go",
        action="store_true",
        help="load the builders, then wait for a line on stdin before connecting to Ray",
    )
    args = parser.parse_args(argv[1:])
    try:
        deploy(args.serve_config, args.address, args.wait_for_go)
    except Exception as exc:  # noqa: BLE001 - the runtime reads this line from the log
        logger.error("ERROR: deployment failed: %s: %s", type(exc).__name__, exc)
        return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    # The applications live on in Serve. Skip the interpreter's teardown of Ray's driver and
    # the imported engine packages: it took 5 s, on the path of every `up`.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)
