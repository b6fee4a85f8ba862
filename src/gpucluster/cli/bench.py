"""`gpucluster bench`: streaming load against an OpenAI-compatible endpoint (ours by default).

Registered by the main app with `app.command("bench")(bench)`. Exit codes: 0 every request of
every run succeeded, 1 some failed (or the endpoint could not be benchmarked), 2 usage error.
docs/bench.md explains the options and every number.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from gpucluster.cli.bench_report import print_report
from gpucluster.cli.common import (
    ApiKeyOption,
    ConfigOption,
    JsonOption,
    UrlOption,
    api_endpoint,
    base_url_or_exit,
    emit,
    err,
    fail,
)
from gpucluster.ops.bench.chart import METRICS, ChartError, check_chart_support, write_chart
from gpucluster.ops.bench.report import build_report
from gpucluster.ops.bench.runner import (
    BenchError,
    Endpoint,
    Runner,
    RunResult,
    RunSpec,
    open_client,
    run_sweep,
)
from gpucluster.ops.bench.stats import RequestRecord, Slo
from gpucluster.ops.bench.workload import Workload, load_prompts

DEFAULT_REQUESTS = 50
# Connections for rate mode, where in-flight requests are not bounded by a concurrency.
RATE_MODE_CONNECTIONS = 1024


def bench(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model to ask. Default: the first one GET /v1/models lists.",
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            help="Requests in flight, or a sweep: 1,8,32. Default: 1.",
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            help="Poisson arrivals in requests/s, or a sweep: 1,2,4 (instead of --concurrency).",
        ),
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option(
            "--requests",
            "-n",
            min=1,
            help=f"Requests per run. Default: {DEFAULT_REQUESTS}, or unlimited with --duration.",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            min=0.001,
            help="Seconds per run: no new request starts after it.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of prompts and arrival times.")] = 0,
    input_tokens: Annotated[
        int,
        typer.Option(
            "--input-tokens",
            min=1,
            help="Synthetic prompt length in tokens (approximate).",
        ),
    ] = 128,
    output_tokens: Annotated[
        int,
        typer.Option(
            "--output-tokens",
            min=1,
            help="max_tokens per request (a prompts file line may override).",
        ),
    ] = 64,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            dir_okay=False,
            help='JSONL file: one {"prompt": ...} or {"messages": [...]} per line, '
            'optional "max_tokens".',
        ),
    ] = None,
    ignore_eos: Annotated[
        bool,
        typer.Option(
            "--ignore-eos/--no-ignore-eos",
            help="Send vLLM's ignore_eos so every answer is exactly max_tokens long.",
        ),
    ] = True,
    slo_ttft_ms: Annotated[
        float | None, typer.Option("--slo-ttft-ms", min=0, help="Goodput SLO: TTFT at most this.")
    ] = None,
    slo_tpot_ms: Annotated[
        float | None, typer.Option("--slo-tpot-ms", min=0, help="Goodput SLO: TPOT at most this.")
    ] = None,
    slo_e2e_ms: Annotated[
        float | None,
        typer.Option("--slo-e2e-ms", min=0, help="Goodput SLO: end-to-end at most this."),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="A second base URL (B) to run the same workload against, interleaved.",
        ),
    ] = None,
    compare_api_key: Annotated[
        str | None, typer.Option("--compare-api-key", help="Bearer key for --compare.")
    ] = None,
    compare_model: Annotated[
        str | None,
        typer.Option(
            "--compare-model",
            help="Model for --compare. Default: the first it lists.",
        ),
    ] = None,
    warmup: Annotated[
        int,
        typer.Option(
            "--warmup",
            min=0,
            help="Short requests per endpoint before measuring (not counted).",
        ),
    ] = 1,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds a request may wait for bytes.")
    ] = 600,
    chart: Annotated[
        Path | None,
        typer.Option(
            "--chart",
            dir_okay=False,
            help="Write a throughput-vs-latency PNG here.",
        ),
    ] = None,
    chart_metric: Annotated[
        str,
        typer.Option(
            "--chart-metric",
            help=f"Latency on the chart's y axis: {', '.join(METRICS)}.",
        ),
    ] = "ttft",
    details: Annotated[
        bool,
        typer.Option(
            "--details",
            help="With --json: add every request's timings to each run.",
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load an OpenAI-compatible endpoint with streamed chat requests; report TTFT, TPOT, ITL,
    latency percentiles, throughput and goodput per concurrency or rate."""
    specs = _specs(concurrency, rate, requests, duration, seed, as_json)
    workload = _workload(prompts, input_tokens, output_tokens, seed)
    if chart is not None:
        _check_chart(chart, chart_metric, as_json)
    if compare is None and (compare_api_key or compare_model):
        fail("--compare-api-key and --compare-model need --compare URL", 2, as_json)
    endpoints = [_endpoint_a(url, api_key, model, config, as_json)]
    if compare is not None:
        endpoints.append(
            Endpoint(
                "B", base_url_or_exit(compare, "--compare", as_json), compare_api_key, compare_model
            )
        )
    slo = Slo(slo_ttft_ms, slo_tpot_ms, slo_e2e_ms)
    if specs[0].mode == "concurrency":
        connections = int(max(s.value for s in specs)) + 8
    else:
        connections = RATE_MODE_CONNECTIONS
    endpoints, results = asyncio.run(  # BenchError: exit 1
        _measure(endpoints, specs, workload, warmup, ignore_eos, connections, timeout)
    )
    report = build_report(results, endpoints, workload, slo, ignore_eos=ignore_eos, details=details)
    if chart is not None:
        try:
            report["chart"] = str(write_chart(report, chart, chart_metric))
        except ChartError as exc:
            err.print(f"[yellow]warning:[/] no chart: {exc}", highlight=False)
    if as_json:
        emit(report)
    else:
        print_report(report)
    if not report["ok"]:
        raise typer.Exit(1)


def _specs(
    concurrency: str | None,
    rate: str | None,
    requests: int | None,
    duration: float | None,
    seed: int,
    as_json: bool,
) -> list[RunSpec]:
    if concurrency is not None and rate is not None:
        fail("give --concurrency or --rate, not both", 2, as_json)
    if requests is None and duration is None:
        requests = DEFAULT_REQUESTS
    if rate is not None:
        values = _numbers(rate, "--rate", float, as_json)
        return [RunSpec("rate", v, requests, duration, seed) for v in values]
    values = _numbers(concurrency or "1", "--concurrency", int, as_json)
    return [RunSpec("concurrency", v, requests, duration, seed) for v in values]


def _numbers(text: str, option: str, kind: type, as_json: bool) -> list[Any]:
    """`1,8,32` as numbers above zero, or exit 2 naming the bad item."""
    values = []
    for item in text.split(","):
        try:
            value = kind(item.strip())
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            noun = "whole numbers" if kind is int else "numbers"
            fail(
                f"{option}: {item.strip()!r} is not valid; give {noun} above 0, e.g. "
                f"{'1,8,32' if kind is int else '0.5,1,2'}",
                2,
                as_json,
            )
        values.append(value)
    return values


def _workload(prompts: Path | None, input_tokens: int, output_tokens: int, seed: int) -> Workload:
    items = load_prompts(prompts) if prompts is not None else None  # WorkloadError: exit 2
    return Workload(items, input_tokens=input_tokens, output_tokens=output_tokens, seed=seed)


def _check_chart(chart: Path, metric: str, as_json: bool) -> None:
    if chart.suffix.lower() != ".png":
        fail(f"--chart: {chart} should end in .png", 2, as_json)
    if metric not in METRICS:
        fail(f"--chart-metric: {metric!r}; choose one of {', '.join(METRICS)}", 2, as_json)
    check_chart_support()  # ChartError: exit 2


def _endpoint_a(
    url: str | None, api_key: str | None, model: str | None, config: Path | None, as_json: bool
) -> Endpoint:
    return Endpoint("A", *api_endpoint(url, api_key, config, as_json), model)


async def _measure(
    endpoints: list[Endpoint],
    specs: list[RunSpec],
    workload: Workload,
    warmup: int,
    ignore_eos: bool,
    connections: int,
    timeout: float,
) -> tuple[list[Endpoint], list[RunResult]]:
    """Resolve models, warm up, then run the sweep with a progress bar on stderr."""
    async with open_client(connections, timeout) as client:
        runner = Runner(client, ignore_eos=ignore_eos)
        endpoints = [
            e if e.model else replace(e, model=await runner.first_model(e)) for e in endpoints
        ]
        for endpoint in endpoints:
            failure = await runner.warmup(endpoint, workload, warmup)
            if failure is not None:
                raise BenchError(_warmup_message(endpoint, failure, ignore_eos))
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=err,
        )

        def on_start(endpoint: Endpoint, spec: RunSpec):
            name = f"{endpoint.name} {spec.label}" if len(endpoints) > 1 else spec.label
            task = progress.add_task(name, total=spec.requests, failed=0)
            failed = 0

            def done(record: RequestRecord) -> None:
                nonlocal failed
                failed += not record.ok
                progress.update(task, advance=1, failed=failed)

            return done

        with progress:
            results = await run_sweep(runner, endpoints, specs, workload, on_start=on_start)
    return endpoints, results


def _warmup_message(endpoint: Endpoint, record: RequestRecord, ignore_eos: bool) -> str:
    message = (
        f"warm-up request to {endpoint.name} ({endpoint.base_url}, model "
        f"{endpoint.model}) failed: {record.error}"
    )
    if ignore_eos and (record.error_kind or "").startswith("HTTP 4"):
        message += "; if this server refuses ignore_eos, pass --no-ignore-eos"
    return message
