"""Workloads: synthetic prompts, JSONL prompt files (errors name the line), Poisson arrivals."""

from __future__ import annotations

import json
import random
import statistics
from itertools import islice

import pytest

from gpucluster.ops.bench.workload import (
    WORDS,
    Workload,
    WorkloadError,
    load_prompts,
    poisson_intervals,
    synthetic_prompt,
)


def test_poisson_intervals_are_seeded_with_mean_one_over_rate():
    first = list(islice(poisson_intervals(4.0, random.Random(7)), 20_000))
    again = list(islice(poisson_intervals(4.0, random.Random(7)), 20_000))
    other = list(islice(poisson_intervals(4.0, random.Random(8)), 20_000))
    assert first == again
    assert first != other
    assert statistics.fmean(first) == pytest.approx(0.25, rel=0.03)
    assert statistics.stdev(first) == pytest.approx(0.25, rel=0.05)  # exponential: sd = mean
    assert all(gap >= 0 for gap in first)


def test_a_rate_must_be_positive():
    with pytest.raises(WorkloadError, match="above 0"):
        next(poisson_intervals(0, random.Random(0)))


def test_synthetic_prompts_have_the_wanted_number_of_words_from_the_list():
    text = synthetic_prompt(200, random.Random(1))
    words = text.split()
    assert len(words) == 200
    assert set(words) <= set(WORDS)


def test_synthetic_workload_is_deterministic_per_index_and_varies_across_indices():
    a, b = (
        Workload(input_tokens=50, output_tokens=9, seed=3),
        Workload(input_tokens=50, output_tokens=9, seed=3),
    )
    assert a.request(5) == b.request(5)
    assert a.request(5) != a.request(6)
    assert a.request(0) != Workload(input_tokens=50, seed=4).request(0)
    assert a.request(0).max_tokens == 9
    assert a.request(0).messages[0]["role"] == "user"


def write(tmp_path, *lines):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prompts_file_with_prompts_messages_and_max_tokens(tmp_path):
    path = write(
        tmp_path,
        json.dumps({"prompt": "Hello"}),
        "",
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ],
                "max_tokens": 5,
            }
        ),
    )
    items = load_prompts(path)
    assert items[0].messages == [{"role": "user", "content": "Hello"}]
    assert items[0].max_tokens is None
    assert items[1].messages[0]["role"] == "system"
    assert items[1].max_tokens == 5
    workload = Workload(items, output_tokens=32)
    assert [workload.request(i).max_tokens for i in range(4)] == [32, 5, 32, 5]  # cycles


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"prompt": "a"', "not valid JSON"),
        ('["a"]', 'expected an object with "prompt" or "messages"'),
        ('{"prompt": "a", "messages": []}', 'exactly one of "prompt" or "messages"'),
        ('{"max_tokens": 3}', 'exactly one of "prompt" or "messages"'),
        ('{"prompt": ""}', '"prompt" must be a non-empty string'),
        ('{"prompt": "a", "max_tokens": 0}', '"max_tokens" must be a positive integer'),
        ('{"prompt": "a", "max_tokens": "5"}', '"max_tokens" must be a positive integer'),
        ('{"messages": []}', '"messages" must be a non-empty list'),
        ('{"messages": [{"content": "hi"}]}', 'messages[0] needs "role" and "content"'),
        ('{"prompt": "a", "temperature": 0}', "unknown key(s) temperature"),
    ],
)
def test_a_bad_line_is_named_with_the_reason(tmp_path, bad_line, message):
    path = write(tmp_path, '{"prompt": "fine"}', "", bad_line)
    with pytest.raises(WorkloadError) as caught:
        load_prompts(path)
    assert f"{path}:3:" in str(caught.value)
    assert message in str(caught.value)


def test_an_empty_or_missing_prompts_file(tmp_path):
    with pytest.raises(WorkloadError, match="no prompts"):
        load_prompts(write(tmp_path, "", "  "))
    with pytest.raises(WorkloadError, match="cannot read prompts file"):
        load_prompts(tmp_path / "missing.jsonl")
