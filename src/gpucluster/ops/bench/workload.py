"""What the benchmark sends and when: synthetic or file prompts, and Poisson arrivals.

Synthetic prompts are words drawn from a fixed list of common English words, each of which is
one token after a space in GPT-2-style BPE vocabularies (checked on SmolLM2's tokenizer: 148
of 148 words, and N words encode to exactly N tokens). Other tokenizers (SentencePiece, Llama 3,
Qwen) split the same text a little differently, and the chat template adds its own tokens (30
for SmolLM2, whose template adds a system prompt), so the prompt length is approximate: the
report shows the prompt tokens the server counted (`usage.prompt_tokens`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpucluster.errors import InputError

WORDS = (
    "about", "after", "again", "against", "all", "also", "an", "and", "another", "any", "are",
    "as", "at", "back", "be", "because", "been", "before", "being", "between", "both", "but",
    "by", "came", "can", "come", "could", "day", "did", "do", "down", "each", "even", "first",
    "for", "from", "get", "go", "good", "great", "had", "has", "have", "he", "her", "here", "his",
    "how", "if", "in", "into", "is", "it", "its", "just", "know", "last", "life", "like",
    "little", "long", "made", "make", "man", "many", "may", "me", "men", "might", "more", "most",
    "much", "must", "my", "never", "new", "no", "not", "now", "of", "off", "old", "on", "one",
    "only", "or", "other", "our", "out", "over", "own", "people", "right", "said", "same", "see",
    "she", "should", "since", "so", "some", "state", "still", "such", "take", "than", "that",
    "the", "their", "them", "then", "there", "these", "they", "this", "those", "three", "through",
    "time", "to", "too", "two", "under", "up", "us", "used", "very", "was", "water", "way", "we",
    "well", "were", "what", "when", "where", "which", "while", "who", "will", "with", "work",
    "world", "would", "year", "years", "you", "your",
)  # fmt: skip


class WorkloadError(InputError, ValueError):
    """A prompts file or workload setting that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class BenchRequest:
    """One chat request of the workload."""

    messages: list[dict[str, Any]]
    max_tokens: int | None


class Workload:
    """The requests of a run, by index: the same index gives the same request on every run."""

    def __init__(
        self,
        items: list[BenchRequest] | None = None,
        *,
        input_tokens: int = 128,
        output_tokens: int = 64,
        seed: int = 0,
    ) -> None:
        if items is not None and not items:
            raise WorkloadError("the workload has no requests")
        self.items = items
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.seed = seed

    def request(self, index: int) -> BenchRequest:
        """Request `index`: a file's prompts in order (cycling), or a fresh synthetic prompt."""
        if self.items is not None:
            item = self.items[index % len(self.items)]
            return BenchRequest(item.messages, item.max_tokens or self.output_tokens)
        # Distinct words per request keep prefix caching from turning prefill into a cache hit.
        rng = random.Random(self.seed * 1_000_003 + index)
        text = synthetic_prompt(self.input_tokens, rng)
        return BenchRequest([{"role": "user", "content": text}], self.output_tokens)

    def describe(self) -> dict[str, Any]:
        if self.items is not None:
            return {
                "kind": "file",
                "prompts": len(self.items),
                "default_max_tokens": self.output_tokens,
            }
        return {
            "kind": "synthetic",
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "seed": self.seed,
        }


def synthetic_prompt(tokens: int, rng: random.Random) -> str:
    """About `tokens` tokens of text: that many words from WORDS (see the module docstring)."""
    return " ".join(rng.choice(WORDS) for _ in range(max(1, tokens)))


def poisson_intervals(rate: float, rng: random.Random) -> Iterator[float]:
    """Gaps between arrivals of a Poisson process of `rate` per second (mean gap 1/rate)."""
    if rate <= 0:
        raise WorkloadError(f"a request rate must be above 0, not {rate:g}")
    while True:
        yield rng.expovariate(rate)


def load_prompts(path: Path) -> list[BenchRequest]:
    """Requests from a JSONL file: each line {"prompt": str} or {"messages": [...]}, optional
    "max_tokens"; blank lines skipped. A bad line raises WorkloadError naming file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"cannot read prompts file {path}: {exc}") from None
    items = [
        _parse_line(path, number, line) for number, line in enumerate(lines, 1) if line.strip()
    ]
    if not items:
        raise WorkloadError(f"{path}: no prompts (expected one JSON object per line)")
    return items


def _parse_line(path: Path, number: int, line: str) -> BenchRequest:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise WorkloadError(f'{where}: expected an object with "prompt" or "messages"')
    if ("prompt" in data) == ("messages" in data):
        raise WorkloadError(f'{where}: give exactly one of "prompt" or "messages"')
    unknown = sorted(set(data) - {"prompt", "messages", "max_tokens"})
    if unknown:
        raise WorkloadError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: prompt, messages, max_tokens)"
        )
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise WorkloadError(f'{where}: "max_tokens" must be a positive integer, not {max_tokens!r}')
    if "prompt" in data:
        prompt = data["prompt"]
        if not isinstance(prompt, str) or not prompt:
            raise WorkloadError(f'{where}: "prompt" must be a non-empty string')
        return BenchRequest([{"role": "user", "content": prompt}], max_tokens)
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        raise WorkloadError(f'{where}: "messages" must be a non-empty list')
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise WorkloadError(f'{where}: messages[{index}] needs "role" and "content"')
    return BenchRequest(messages, max_tokens)
