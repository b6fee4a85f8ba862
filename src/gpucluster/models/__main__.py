"""`python -m gpucluster.models SOURCE [--cache-dir DIR] [--json]`: prepare one model.

Prints what vLLM should get as `model` on stdout (progress goes to stderr). Exit status: 0
prepared, 1 preparation failed, 2 unusable source or arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpucluster.models import (
    ModelPrepareError,
    ModelSourceError,
    prepare_model,
    read_model_info,
    resolve_source,
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m gpucluster.models",
        description="Prepare a model source for serving and print what vLLM gets as `model`.",
    )
    parser.add_argument(
        "source", help="builtin:smollm2-135m-instruct, a Hugging Face id org/name, or a local dir"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="where prepared models are kept (default: platform.model_cache_dir of the config)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(f"[models] {message}", file=sys.stderr, flush=True)

    try:
        cache_dir = args.cache_dir or _configured_cache_dir()
        model = prepare_model(args.source, cache_dir, progress)
        kind = resolve_source(args.source).kind
        info = read_model_info(model) if kind != "hf" else None
    except ModelSourceError as exc:
        return _fail(str(exc), 2, args.json)
    except ModelPrepareError as exc:
        return _fail(str(exc), 1, args.json)
    if args.json:
        print(json.dumps({"ok": True, "source": args.source, "kind": kind, "model": model,
                          "info": info}))
    else:
        print(model)
    return 0


def _configured_cache_dir() -> Path:
    from gpucluster.config import ConfigError, load_config

    try:
        return load_config().platform.model_cache_dir
    except ConfigError as exc:
        raise ModelSourceError(f"{exc}\n(or pass --cache-dir)") from None


def _fail(message: str, status: int, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
