"""The gatekeeper: the edge's key and quota service, a small starlette app run by uvicorn.

nginx asks it about every /v1 request (`auth_request`) and the replicas report to it when each
request ends; the decisions and the accounting are runtime.admission's. Endpoints:

- `GET /auth` (any method is answered alike): reads `Authorization`, `X-Client-Addr` (the client
  address nginx decided on; else the TCP peer), `X-Original-Method`, `X-Original-URI` (send
  nginx's normalised `$uri`), `X-Request-Id`. Answers 204 + `X-Key-Name: <name>` (`-` without a
  valid key while authentication is off); 401 + `X-Deny-Code: missing_api_key|invalid_api_key`;
  403 + `X-Deny-Code: rate_limit_exceeded|quota_exceeded` + `X-Retry-After: <s>`, which nginx
  turns into a 429. Every refusal carries `X-Deny-Message` (ASCII, no `"` or `\\`).
- `POST /settle`: `{"request_id", "key", "model", "path", "status", "prompt_tokens",
  "completion_tokens", "ttft_ms", "duration_ms"}` -> 204 (400 in the OpenAI error shape when
  malformed). Idempotent per request id.
- `GET /metrics`: Prometheus text (observability.key_metrics); scraped as job `gpucluster-edge`.
- `GET /healthz`: 200.

Run: `python -m gpucluster.runtime.gatekeeper [options]`:

  --config FILE | --config-json FILE   the platform config: YAML (env overrides applied, like
                                       every command) or the effective config as JSON
                                       (`Config.model_dump_json()`, see gatekeeper_service);
                                       neither: $GPUCLUSTER_CONFIG or the defaults
  --state-dir DIR        default platform.state_dir: logs/usage.jsonl, keys-last-used.json
  --store FILE           the named key store; default platform.security.keys_file, else
                         <state_dir>/keys.json
  --key-file FILE        raw-key file, repeatable; added to platform.security.api_keys_file
  --env-key-file FILE    the file `up` writes GPUCLUSTER_API_KEYS to (keys named key-<hex>)
  --operator-key-file FILE   the platform's own key (named gpucluster-operator; it alone does
                         not turn authentication on)
  --model ID             a model id for the `model` label, repeatable; default: the config's
  --host HOST            default platform.bind_host
  --port PORT            default platform.ports.gatekeeper (19095)
  --log-level LEVEL      default info
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gpucluster.config import Config, ConfigError, load_config
from gpucluster.config.keys import KeySources, store_path
from gpucluster.runtime.admission import AuthRequest, Gatekeeper, Limits, parse_settlement
from gpucluster.runtime.edge_metrics import CONTENT_TYPE, EdgeMetrics
from gpucluster.runtime.state import StateDir
from gpucluster.runtime.usage_log import LAST_USED_EVERY_S, LastUsed, UsageLog
from gpucluster.serving.errors import ApiError, error_response

_AUTH_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_MAX_HEADER = 256  # request ids and addresses come from outside: kept short


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value[:_MAX_HEADER] if value else None


def build_app(gatekeeper: Gatekeeper, flush_every_s: float = LAST_USED_EVERY_S) -> Starlette:
    """The gatekeeper's HTTP app around `gatekeeper` (one app per call: no module state)."""

    async def auth(request: Request) -> Response:
        peer = request.client.host if request.client else "-"
        verdict = gatekeeper.auth(
            AuthRequest(
                # the key may be long; it is only digested, never kept
                authorization=request.headers.get("authorization"),
                client=_header(request, "x-client-addr") or peer,
                method=_header(request, "x-original-method") or request.method,
                uri=_header(request, "x-original-uri") or "/",
                request_id=_header(request, "x-request-id"),
            )
        )
        return Response(status_code=verdict.status, headers=verdict.headers)

    async def settle(request: Request) -> Response:
        try:
            report = parse_settlement(json.loads(await request.body()))
        except ValueError as exc:
            return error_response(ApiError(400, str(exc), code="invalid_settlement"))
        gatekeeper.settle(report)
        return Response(status_code=204)

    async def metrics(_: Request) -> Response:
        return Response(gatekeeper.metrics.exposition(), media_type=CONTENT_TYPE)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # last use is written from here too, so that a key's final request reaches the file
        # even when no request follows it
        async def flush_periodically() -> None:
            while True:
                await asyncio.sleep(flush_every_s)
                gatekeeper.last_used.flush()

        task = asyncio.create_task(flush_periodically())
        try:
            yield
        finally:
            task.cancel()
            gatekeeper.close()

    routes = [
        Route("/auth", auth, methods=_AUTH_METHODS),
        Route("/settle", settle, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line described in this module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m gpucluster.runtime.gatekeeper")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="platform config file (YAML)")
    source.add_argument("--config-json", type=Path, help="effective platform config (JSON)")
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--key-file", type=Path, action="append", default=[])
    parser.add_argument("--env-key-file", type=Path, action="append", default=[])
    parser.add_argument("--operator-key-file", type=Path, action="append", default=[])
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def read_config(args: argparse.Namespace) -> Config:
    """The configuration the arguments name; ConfigError when it cannot be used."""
    if args.config_json is not None:
        try:
            return Config.model_validate_json(args.config_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.config_json}: {exc}") from None
    return load_config(args.config)


def make_gatekeeper(config: Config, args: argparse.Namespace) -> Gatekeeper:
    """A Gatekeeper wired to the files the arguments and the configuration name."""
    if args.state_dir is not None:
        platform = config.platform.model_copy(update={"state_dir": args.state_dir})
        config = config.model_copy(update={"platform": platform})
    security = config.platform.security
    state = StateDir(config.platform.state_dir)
    key_files = [p for p in [security.api_keys_file, *args.key_file] if p is not None]
    ring = KeySources(
        files=tuple(map(str, key_files)),
        store=str(args.store or store_path(config)),
        env_files=tuple(map(str, args.env_key_file)),
        operator_files=tuple(map(str, args.operator_key_file)),
    ).ring()
    return Gatekeeper(
        ring,
        security,
        args.model or [i for m in config.models for i in (m.id, *m.adapter_ids())],
        Limits.from_config(config),
        UsageLog(state.usage_log),
        LastUsed(state.keys_last_used_file),
        EdgeMetrics(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gatekeeper until SIGTERM/SIGINT; 2 when the configuration cannot be used."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        config = read_config(args)
    except ConfigError as exc:
        print(f"gatekeeper: {exc}", file=sys.stderr)
        return 2
    app = build_app(make_gatekeeper(config, args))
    uvicorn.run(
        app,
        host=args.host or config.platform.bind_host,
        port=args.port or config.platform.ports.gatekeeper,
        log_level=args.log_level.lower(),
        access_log=False,  # the usage log is the record; an access log would repeat it
        proxy_headers=False,  # the client address comes from nginx's X-Client-Addr only
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
