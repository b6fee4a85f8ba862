"""Prefix-aware routing: two replicas of the built-in model, multi-turn chats sharing long prefixes.

For each router (`power_of_two`, Serve's default; `prefix_cache_affinity`, Ray Serve LLM's
PrefixCacheAffinityRouter) in turn: starts the local platform through the CLI
(`gpucluster up --json`, GPUCLUSTER_CONFIG pointing at a config written to a temporary
directory, which also holds the platform's state dir) serving the built-in model on two fixed
replicas (`replicas: {min: 2, max: 2}`, `max_num_seqs` 4, 1 GiB KV cache each,
`enable_prefix_caching: true`) with that router, runs the workload, and stops it
(`gpucluster down --json`) before the next. With `--rounds` > 1 the order alternates.

Workload: `--conversations` chats, each with its own document of `--prefix-words` seeded random
words (560 words are ~730 tokens with the chat template) as the system message, `--turns` turns
each. A turn sends the whole history (document, earlier questions and answers) plus a short new
question, streamed, greedy, `--max-tokens` tokens; the answer joins the history. `--concurrency`
conversations run at once, so turns of different chats interleave at the router. Before it,
`--warmup` short unrelated prompts (sharing no prefix with anything) warm both engines up.

Recorded per run: the prefix-cache hit rate (vLLM's `vllm:prefix_cache_hits` over
`vllm:prefix_cache_queries`, in tokens, read as Ray exports them,
`ray_vllm_prefix_cache_{hits,queries}_total`, from the Ray metrics endpoint that `up --json`
reports, summed over replicas, after minus before the workload), TTFT p50/p90 (time to the first
content chunk), wall time, and requests per replica (`ray_vllm_request_success_total` by
`ReplicaId`).

Both routers go through the ingress deployment (`direct_streaming: false` for the default too),
so the router is the only difference; `--direct-baseline` runs `power_of_two` on the platform's
default direct path instead (nginx's least_conn over the replicas' own ports).

Needs the machine to itself: it refuses to start while anything listens on the platform's ports.

    .venv/bin/python benchmarks/prefix_routing.py --conversations 8 --turns 4 --concurrency 4 \
        --rounds 2 [--json] [--out prefix-routing.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from gpucluster.config import BUILTIN_MODEL_ID, load_config
from gpucluster.config.keys import first_key
from gpucluster.ops.bench.stats import percentile
from gpucluster.ops.openai_wire import CompletionStream, StreamError, describe, error_message
from gpucluster.runtime.processes import held_ports
from gpucluster.runtime.state import StateDir

GPUCLUSTER = [sys.executable, "-m", "gpucluster"]
ROUTERS = ("power_of_two", "prefix_cache_affinity")
BASELINE, PREFIX = ROUTERS
REPLICAS = 2
UP_TIMEOUT_S = 1800
DOWN_TIMEOUT_S = 600
# Variables that would point `up` elsewhere than the private config (tests/integration/conftest).
FOREIGN_ENV = (
    "GPUCLUSTER_STATE_DIR",
    "GPUCLUSTER_API_KEYS",
    "NGINX_HTTP_PORT",
    "RAY_DASHBOARD_PORT",
)

# vLLM's counters as Ray exports them (`vllm:` becomes `ray_vllm_`, counters get `_total`; a
# name without the suffix is accepted too). Each series carries the replica's `ReplicaId` and the
# served `model_name`.
METRICS = {
    "queries": "ray_vllm_prefix_cache_queries",
    "hits": "ray_vllm_prefix_cache_hits",
    "requests": "ray_vllm_request_success",
}
REPLICA_LABEL = "ReplicaId"
METRICS_TIMEOUT_S = 120  # Ray's workers report their metrics every 10 s
METRICS_SETTLE_S = 12

_NOUNS = (
    "amber anchor apple arch arrow autumn badge bakery bamboo banner barley barrel basket beacon "
    "bell bench berry blanket blossom boat bottle branch brass bread breeze brick bridge bronze "
    "brook bucket cabin cable camel candle canvas canyon carpet castle cedar cellar chalk chapel "
    "cherry chimney cider cliff clock cloud clover coast cobble comet copper coral cotton cradle "
    "crane creek crystal cup curtain dagger daisy delta desert dial dome door dove dragon drum "
    "dune eagle ember engine falcon feather fence fern ferry fiddle field flag flame flint forest "
    "fountain fox frost garden garnet gate glacier glass glove granite grape gravel harbor harp "
    "hawk hazel hearth hedge helmet hill hinge honey horizon island ivory jasmine jewel kettle "
    "key kite ladder lagoon lake lamp lantern lark lava lemon lily linen lizard lodge loom maple "
    "marble market meadow melon mill mirror moss mountain needle nest oak oar ocean olive orchard "
    "otter owl paddle palace paper pebble pepper pier pillar pine plank plum pond poppy quarry "
    "quill rail raven reed ribbon ridge river robin rope rose saddle sail salmon sand satchel "
    "scarf shell shore silk silver slate sparrow spindle spring spruce stable star stone storm "
    "stream sugar summit swan tablet tavern thistle thread thunder tide timber torch tower trail "
    "tulip tunnel valley velvet village vine violet wagon walnut wave wheat whistle willow window "
    "winter wolf wool yarn"
)
_VERBS = (
    "keeps carries guards follows crosses hides holds marks meets mends needs paints reaches "
    "shapes shelters shows signals sorts tends trades turns visits warms watches weighs"
)
WORDS, VERBS = _NOUNS.split(), _VERBS.split()


# -- workload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """One chat: its document (the system message, the long shared prefix) and its questions."""

    index: int
    document: str
    questions: tuple[str, ...]

    def messages(self, answers: list[str]) -> list[dict[str, str]]:
        """The request of turn len(answers): the whole history, then the next question."""
        messages = [{"role": "system", "content": self.document}]
        for question, answer in zip(self.questions, answers, strict=False):
            messages += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        messages.append({"role": "user", "content": self.questions[len(answers)]})
        return messages


def sentences(rng: random.Random, words: int) -> str:
    """About `words` words of sentences made of WORDS and VERBS."""
    out: list[str] = []
    count = 0
    while count < words:
        length = rng.randint(8, 14)
        picked = [rng.choice(WORDS) for _ in range(length)]
        picked[2] = rng.choice(VERBS)
        sentence = " ".join(picked)
        out.append(sentence[0].upper() + sentence[1:] + ".")
        count += length
    return " ".join(out)


def make_conversations(
    count: int, turns: int, prefix_words: int, seed: int = 0
) -> list[Conversation]:
    """`count` conversations, each with its own document (distinct from its first words: no two
    share a prefix) and `turns` short questions; the same arguments give the same text."""
    conversations = []
    for index in range(count):
        rng = random.Random(f"prefix-routing:{seed}:{index}")
        text = sentences(rng, prefix_words)
        document = (
            f"{text}\n\nThese are notes number {index}. Answer questions about them in "
            "one short sentence."
        )
        questions = []
        for turn in range(turns):
            first, second = rng.sample(WORDS, 2)
            questions.append(
                f"Question {turn + 1}: what do the notes say about the {first} and the {second}?"
            )
        conversations.append(Conversation(index, document, tuple(questions)))
    return conversations


def warmup_prompts(count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Short prompts sharing no prefix with each other or the conversations' documents."""
    rng = random.Random(f"prefix-routing-warmup:{seed}")
    return [
        [{"role": "user", "content": f"{sentences(rng, 20)} Name one colour."}]
        for _ in range(count)
    ]


# -- client -----------------------------------------------------------------------------------


@dataclass
class Turn:
    """One request of the workload and what came back."""

    conversation: int
    turn: int
    ok: bool = False
    error: str | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    answer: str = ""


async def stream_chat(
    client: httpx.AsyncClient,
    api: str,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    record: Turn,
) -> Turn:
    """Send one streamed, greedy chat completion; fill `record` with its timings and answer."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    stream = CompletionStream()
    text: list[str] = []
    try:
        async with client.stream("POST", f"{api}/chat/completions", json=body) as response:
            if response.status_code != 200:
                record.error = f"{response.status_code}: {error_message(await response.aread())}"
                return record
            async for line in response.aiter_lines():
                delta = stream.feed(line)
                if delta is not None and delta.content:
                    if record.ttft_s is None:
                        record.ttft_s = time.perf_counter() - started
                    text.append(delta.content)
    except (httpx.HTTPError, StreamError) as exc:
        record.error = describe(exc)
        return record
    record.e2e_s = time.perf_counter() - started
    record.answer = "".join(text)
    if stream.usage:
        record.prompt_tokens = stream.usage.get("prompt_tokens")
        record.completion_tokens = stream.usage.get("completion_tokens")
    record.ok = stream.finished
    if not record.ok:
        record.error = "stream ended without [DONE] or usage"
    return record


async def run_workload(
    client: httpx.AsyncClient,
    api: str,
    model: str,
    conversations: list[Conversation],
    concurrency: int,
    max_tokens: int,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[Turn], float]:
    """Every conversation turn by turn, `concurrency` conversations at once; the requests and
    the wall time. A conversation stops at its first failed turn."""
    gate = asyncio.Semaphore(concurrency)
    turns: list[Turn] = []
    finished = 0

    async def chat(conversation: Conversation) -> None:
        nonlocal finished
        async with gate:
            answers: list[str] = []
            for turn in range(len(conversation.questions)):
                record = Turn(conversation.index, turn)
                turns.append(record)
                await stream_chat(
                    client, api, model, conversation.messages(answers), max_tokens, record
                )
                if not record.ok:
                    break
                answers.append(record.answer)
            finished += 1
            mine = [t for t in turns if t.conversation == conversation.index]
            ttfts = [t.ttft_s for t in mine if t.ttft_s is not None]
            ttft = f"{1000 * statistics.median(ttfts):.0f} ms" if ttfts else "-"
            failed = sum(not t.ok for t in mine)
            progress(
                f"  conversation {conversation.index}: {len(answers)}/{len(mine)} turns ok, "
                f"TTFT p50 {ttft}{f', FAILED: {mine[-1].error}' if failed else ''} "
                f"({finished}/{len(conversations)} done)"
            )

    started = time.perf_counter()
    await asyncio.gather(*(chat(c) for c in conversations))
    return turns, time.perf_counter() - started


async def warm_up(client: httpx.AsyncClient, api: str, model: str, count: int, seed: int) -> int:
    """Send the warm-up prompts two at a time; how many succeeded."""
    gate = asyncio.Semaphore(2)

    async def one(i: int, messages: list[dict[str, str]]) -> bool:
        async with gate:
            return (await stream_chat(client, api, model, messages, 8, Turn(-1, i))).ok

    results = await asyncio.gather(*(one(i, m) for i, m in enumerate(warmup_prompts(count, seed))))
    return sum(results)


# -- metrics ----------------------------------------------------------------------------------

_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in Prometheus text format."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            labels_text, _, rest = rest.rpartition("}")
            labels = {k: _unescape(v) for k, v in _LABEL.findall(labels_text)}
        else:
            name, _, rest = line.partition(" ")
            labels = {}
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        yield name.strip(), labels, value


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def per_replica(text: str, model: str) -> dict[str, dict[str, float]]:
    """METRICS of `model` by replica: {ReplicaId: {"queries", "hits", "requests"}}, each summed
    over the other labels (engine, finish reason)."""
    names = {}
    for key, base in METRICS.items():
        names[base] = names[f"{base}_total"] = key
    replicas: dict[str, dict[str, float]] = {}
    for name, labels, value in parse_samples(text):
        key = names.get(name)
        if key is None or labels.get("model_name", model) != model:
            continue
        counts = replicas.setdefault(labels.get(REPLICA_LABEL, ""), dict.fromkeys(METRICS, 0.0))
        counts[key] += value
    return replicas


def difference(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """after - before, by replica (a replica missing before counts from 0)."""
    zero = dict.fromkeys(METRICS, 0.0)
    return {
        replica: {k: v - before.get(replica, zero)[k] for k, v in counts.items()}
        for replica, counts in sorted(after.items())
    }


def totals(replicas: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: sum(c[k] for c in replicas.values()) for k in METRICS}


def hit_rate(counts: dict[str, float]) -> float | None:
    return counts["hits"] / counts["queries"] if counts["queries"] else None


def scrape(url: str, model: str) -> dict[str, dict[str, float]]:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return per_replica(response.text, model)


def wait_for_requests(
    url: str,
    model: str,
    base: dict[str, dict[str, float]],
    requests: int,
    timeout_s: float = METRICS_TIMEOUT_S,
) -> tuple[dict[str, dict[str, float]], bool]:
    """Scrape until the replicas' finished requests since `base` reach `requests` (Ray exports
    each worker's counters every few seconds); the last scrape and whether it got there."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = scrape(url, model)
        if totals(difference(base, now))["requests"] >= requests:
            return now, True
        if time.monotonic() > deadline:
            return now, False
        time.sleep(2)


# -- platform ---------------------------------------------------------------------------------


def platform_config(router: str, state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The config `up` gets for one router: the built-in model on two fixed replicas."""
    direct = router == BASELINE and args.direct_baseline
    return {
        "models": [
            {
                "id": BUILTIN_MODEL_ID,
                "max_num_seqs": args.max_num_seqs,
                "cpu_kvcache_gib": args.kv_cache_gib,
                "replicas": {"min": REPLICAS, "max": REPLICAS},
                "router": router,
                # vLLM's CPU build enables it by default for this model; said here so a run does not
                # depend on that default.
                "engine_kwargs": {"enable_prefix_caching": True},
            }
        ],
        "platform": {"state_dir": str(state_dir), "direct_streaming": direct},
    }


def busy_ports(config_path: Path, wait_s: float = 0) -> list[int]:
    """The platform ports of this config something listens on (after up to `wait_s` for them
    to close: the previous run's processes may take a moment to go)."""
    platform = load_config(config_path, env={}).platform
    deadline = time.monotonic() + wait_s
    while True:
        busy = [held.port for held in held_ports(platform)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(2)


def cli(env: dict[str, str], *args: str, timeout: float, check: bool = True) -> dict[str, Any]:
    """`gpucluster ARGS --json`, its progress (stderr) passed through; its JSON answer (with
    `check`, RuntimeError when it exits non-zero)."""
    result = subprocess.run(
        [*GPUCLUSTER, *args, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        answer = {"ok": False, "error": result.stdout[-2000:]}
    if check and result.returncode != 0:
        raise RuntimeError(f"gpucluster {' '.join(args)} failed ({result.returncode}): {answer}")
    return answer


def run_router(
    router: str,
    round_no: int,
    args: argparse.Namespace,
    conversations: list[Conversation],
    log: Callable[[str], None],
    first: bool = True,
) -> dict[str, Any]:
    """Start the platform with `router`, warm it up, run the workload, read the metrics, stop."""
    tag = f"[{router} round {round_no + 1}]"
    with tempfile.TemporaryDirectory(prefix="prefix-routing-") as tmp:
        root = Path(tmp)
        config_path = root / "platform.yaml"
        config_path.write_text(yaml.safe_dump(platform_config(router, root / "state", args)))
        busy = busy_ports(config_path, wait_s=0 if first else 60)
        if busy:
            raise SystemExit(
                f"ports {busy} are in use: another platform runs on this machine; "
                "stop it first (this benchmark starts its own)"
            )
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env["GPUCLUSTER_CONFIG"] = str(config_path)
        log(f"{tag} gpucluster up (2 replicas, config {config_path})")
        try:
            up = cli(env, "up", timeout=UP_TIMEOUT_S)
            log(f"{tag} up in {up['seconds']:.0f} s")
            result = measure(router, round_no, args, conversations, up, root / "state", tag, log)
            result["up_seconds"] = up["seconds"]
        finally:
            log(f"{tag} gpucluster down")
            down = cli(env, "down", timeout=DOWN_TIMEOUT_S, check=False)
            if not down.get("ok"):
                log(
                    f"{tag} WARNING: down did not finish cleanly: "
                    f"{down.get('leftovers') or down.get('error')}"
                )
    return result


def measure(
    router: str,
    round_no: int,
    args: argparse.Namespace,
    conversations: list[Conversation],
    up: dict[str, Any],
    state_dir: Path,
    tag: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    api, metrics_url = up["endpoints"]["openai_api"], up["endpoints"]["ray_metrics"]
    # No key is needed (a private state dir holds no key store); the platform's own key passes
    # every check anyway, should one be configured.
    key = first_key(StateDir(state_dir).operator_key_file)
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def go() -> tuple[int, dict, list[Turn], float]:
        limits = httpx.Limits(max_connections=2 * args.concurrency)
        async with httpx.AsyncClient(timeout=600, headers=headers, limits=limits) as client:
            warmed = await warm_up(client, api, BUILTIN_MODEL_ID, args.warmup, args.seed)
            log(f"{tag} warm-up: {warmed}/{args.warmup} ok; reading the metrics baseline")
            # `up`'s own probe and the warm-up finished before this: wait until Ray exported them.
            await asyncio.to_thread(wait_for_requests, metrics_url, BUILTIN_MODEL_ID, {}, warmed)
            await asyncio.sleep(METRICS_SETTLE_S)
            before = await asyncio.to_thread(scrape, metrics_url, BUILTIN_MODEL_ID)
            log(
                f"{tag} workload: {len(conversations)} conversations x {args.turns} turns, "
                f"{args.concurrency} at a time"
            )
            turns, wall = await run_workload(
                client, api, BUILTIN_MODEL_ID, conversations, args.concurrency, args.max_tokens, log
            )
            return warmed, before, turns, wall

    warmed, before, turns, wall = asyncio.run(go())
    ok = [t for t in turns if t.ok]
    after, complete = wait_for_requests(metrics_url, BUILTIN_MODEL_ID, before, len(ok))
    if not complete:
        log(
            f"{tag} WARNING: the metrics count fewer finished requests than the {len(ok)} sent "
            f"after {METRICS_TIMEOUT_S} s; figures may be short"
        )
    replicas = difference(before, after)
    counts = totals(replicas)
    result = summarize(router, round_no, args, turns, wall, replicas, counts)
    result.update(warmup_ok=warmed, metrics_complete=complete)
    log(
        f"{tag} hit rate {fmt(result['hit_rate'], '.3f')}, TTFT p50 "
        f"{fmt(result['ttft_ms']['p50'], '.0f')} ms, wall {wall:.1f} s, requests per replica "
        f"{result['requests_per_replica']}"
    )
    return result


# -- report -----------------------------------------------------------------------------------


def ms_summary(values: list[float]) -> dict[str, float | None]:
    ms = [1000 * v for v in values]
    return {"count": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90)}


def summarize(
    router: str,
    round_no: int,
    args: argparse.Namespace,
    turns: list[Turn],
    wall: float,
    replicas: dict[str, dict[str, float]],
    counts: dict[str, float],
) -> dict[str, Any]:
    ok = [t for t in turns if t.ok]
    prompts = [t.prompt_tokens for t in ok if t.prompt_tokens is not None]
    return {
        "router": router,
        "round": round_no,
        "path": "direct" if router == BASELINE and args.direct_baseline else "ingress",
        "requests": len(turns),
        "ok": len(ok),
        "failed": len(turns) - len(ok),
        "errors": sorted({t.error for t in turns if t.error})[:5],
        "wall_s": round(wall, 2),
        "hit_rate": hit_rate(counts),
        "prefix_cache": counts,
        "ttft_ms": ms_summary([t.ttft_s for t in ok if t.ttft_s is not None]),
        # turns 2+: the history (document and earlier turns) was sent before, to some replica
        "ttft_ms_later_turns": ms_summary(
            [t.ttft_s for t in ok if t.ttft_s is not None and t.turn > 0]
        ),
        "e2e_ms": ms_summary([t.e2e_s for t in ok if t.e2e_s is not None]),
        "mean_prompt_tokens": round(statistics.fmean(prompts), 1) if prompts else None,
        "replicas": replicas,
        # a replica that never finished a request has no series: it served 0
        "requests_per_replica": sorted(
            [int(c["requests"]) for c in replicas.values()] + [0] * (REPLICAS - len(replicas)),
            reverse=True,
        ),
        "turns": [{k: v for k, v in asdict(t).items() if k != "answer"} for t in turns],
    }


def mean_of(
    runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float | None]
) -> float | None:
    values = [v for v in map(get, runs) if v is not None]
    return statistics.fmean(values) if values else None


def router_summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per router: hit rate over all its rounds' tokens, the other figures as means of rounds."""
    out = {}
    for router in ROUTERS:
        mine = [r for r in runs if r["router"] == router]
        if not mine:
            continue
        queries = sum(r["prefix_cache"]["queries"] for r in mine)
        hits = sum(r["prefix_cache"]["hits"] for r in mine)
        out[router] = {
            "rounds": len(mine),
            "hit_rate": hits / queries if queries else None,
            "ttft_p50_ms": mean_of(mine, lambda r: r["ttft_ms"]["p50"]),
            "ttft_p90_ms": mean_of(mine, lambda r: r["ttft_ms"]["p90"]),
            "ttft_p50_ms_later_turns": mean_of(mine, lambda r: r["ttft_ms_later_turns"]["p50"]),
            "wall_s": mean_of(mine, lambda r: r["wall_s"]),
            "failed": sum(r["failed"] for r in mine),
            "requests_per_replica": [r["requests_per_replica"] for r in mine],
        }
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """prefix_cache_affinity over power_of_two for each figure."""
    if BASELINE not in summary or PREFIX not in summary:
        return {}
    base, prefix = summary[BASELINE], summary[PREFIX]
    keys = ("hit_rate", "ttft_p50_ms", "ttft_p90_ms", "ttft_p50_ms_later_turns", "wall_s")
    return {k: prefix[k] / base[k] if prefix[k] is not None and base[k] else None for k in keys}


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(summary: dict[str, dict[str, Any]], ratio: dict[str, float | None]) -> str:
    header = (
        f"{'router':<22} {'hit rate':>8} {'TTFT p50':>9} {'TTFT p90':>9} "
        f"{'p50 turns 2+':>12} {'wall s':>7} {'failed':>6}  requests per replica"
    )
    lines = [header]
    for router, s in summary.items():
        spread = ", ".join("/".join(map(str, r)) for r in s["requests_per_replica"])
        lines.append(
            f"{router:<22} {fmt(s['hit_rate'], '.3f'):>8} "
            f"{fmt(s['ttft_p50_ms'], '.0f'):>6} ms {fmt(s['ttft_p90_ms'], '.0f'):>6} ms "
            f"{fmt(s['ttft_p50_ms_later_turns'], '.0f'):>9} ms "
            f"{fmt(s['wall_s'], '.1f'):>7} {s['failed']:>6}  {spread}"
        )
    if ratio:
        lines.append(
            f"{'prefix / default':<22} {fmt(ratio['hit_rate'], '.2f'):>7}x "
            f"{fmt(ratio['ttft_p50_ms'], '.2f'):>8}x {fmt(ratio['ttft_p90_ms'], '.2f'):>8}x "
            f"{fmt(ratio['ttft_p50_ms_later_turns'], '.2f'):>11}x "
            f"{fmt(ratio['wall_s'], '.2f'):>6}x"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.platform(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "arch": platform.machine(),
        "os": os_name,
        "python": platform.python_version(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


@dataclass
class Report:
    command: str
    date: str
    machine: dict[str, Any]
    versions: dict[str, str]
    settings: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)


def order(rounds: int) -> list[tuple[int, str]]:
    """(round, router) in run order: the routers alternate which goes first."""
    return [
        (r, router) for r in range(rounds) for router in (ROUTERS if r % 2 == 0 else ROUTERS[::-1])
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="conversations at once")
    parser.add_argument(
        "--prefix-words",
        type=int,
        default=560,
        help="words of each conversation's document (560: ~730 tokens)",
    )
    parser.add_argument("--max-tokens", type=int, default=24, help="tokens per answer")
    parser.add_argument("--max-num-seqs", type=int, default=4)
    parser.add_argument("--kv-cache-gib", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=4, help="warm-up prompts per platform")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--direct-baseline",
        action="store_true",
        help="power_of_two on the direct path (the platform's default) instead "
        "of through the ingress",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=Path("prefix-routing.json"))
    args = parser.parse_args()

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)

    from gpucluster.ops.bundle import versions

    conversations = make_conversations(args.conversations, args.turns, args.prefix_words, args.seed)
    report = Report(
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        date=time.strftime("%Y-%m-%d %H:%M:%S %z"),
        machine=machine(),
        versions=versions(),
        settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    )
    for round_no, router in order(args.rounds):
        report.runs.append(
            run_router(router, round_no, args, conversations, log, first=not report.runs)
        )
        args.out.write_text(json.dumps(asdict(report), indent=2))  # kept if a later run fails
    summary = router_summary(report.runs)
    ratio = ratios(summary)
    data = {**asdict(report), "summary": summary, "ratio_prefix_over_default": ratio}
    args.out.write_text(json.dumps(data, indent=2))
    if args.json:
        print(
            json.dumps(
                {k: v for k, v in data.items() if k != "runs"}
                | {
                    "runs": [{k: v for k, v in r.items() if k != "turns"} for r in report.runs],
                    "out": str(args.out),
                },
                indent=2,
            )
        )
    else:
        print(table(summary, ratio))
        print(f"\nmachine: {report.machine}\nversions: {report.versions}\nruns: {args.out}")
    failed = sum(r["failed"] for r in report.runs)
    return 1 if failed or not all(r["metrics_complete"] for r in report.runs) else 0


if __name__ == "__main__":
    sys.exit(main())
