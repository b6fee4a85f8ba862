"""Deploy driver: connects to the running Ray head and runs the Serve application.

Started by the local-mode runtime as `python -m gpucluster.serving.deploy SPEC.json`, where the
spec holds the validated configuration and the prepared weights of each model. It returns once
Serve reports the application running (every model loaded) or exits non-zero with the reason.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import ray
from ray import serve

from gpucluster.config import Config
from gpucluster.serving.app import APP_NAME, build_app

logger = logging.getLogger("gpucluster.deploy")


def deploy(spec_path: Path) -> None:
    """Deploy the application described by the spec file at `spec_path`."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    config = Config.model_validate(spec["config"])
    platform = config.platform
    ray.init(address=spec["ray_address"], logging_level=logging.WARNING)
    serve.start(
        http_options={"host": platform.bind_host, "port": platform.ports.serve_http},
    )
    for model in config.models:
        logger.info("Loading model %s...", model.id)
    app = build_app(config, spec["weights"], spec.get("api_key_files", []))
    serve.run(app, name=APP_NAME, route_prefix="/")
    logger.info("Application %r running", APP_NAME)


def main(argv: list[str]) -> int:
    """Entry point; argv[1] is the spec file."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if len(argv) != 2:
        print("usage: python -m gpucluster.serving.deploy SPEC.json", file=sys.stderr)
        return 2
    try:
        deploy(Path(argv[1]))
    except Exception as exc:  # noqa: BLE001 - the runtime reads this line from the log
        logger.error("ERROR: deployment failed: %s: %s", type(exc).__name__, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
