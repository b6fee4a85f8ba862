"""Usage totals from generated usage logs: windows, rotation, grouping, refusals, torn lines."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from gpucluster.ops.usage import (
    UsageError,
    log_files,
    parse_entry,
    parse_since,
    read_usage,
    usage_report,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@pytest.fixture
def log(tmp_path):
    return tmp_path / "logs" / "usage.jsonl"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("24h", 86400), ("7d", 604800), ("90s", 90), ("2w", 1209600), (" 1h ", 3600)],
)
def test_since_takes_a_number_and_a_unit(text, seconds):
    assert parse_since(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "1.5h", "-1h", "24 h", "1y", "1h30m"])
def test_a_bad_since_says_what_to_write(text):
    with pytest.raises(UsageError, match=r"e\.g\. 30m, 24h or 7d"):
        parse_since(text)


def test_a_bad_grouping_names_the_choices(log):
    with pytest.raises(UsageError, match="key, model"):
        usage_report(log, "24h", "team", now=NOW)


def test_rotated_files_are_read_oldest_first_and_foreign_files_ignored(log, write_usage):
    for name in (
        "usage.jsonl",
        "usage.jsonl.1",
        "usage.jsonl.2",
        "usage.jsonl.10",
        "usage.jsonl.bak",
        "usage.jsonl.1.gz",
        "other.jsonl.3",
    ):
        write_usage(log.parent / name, [])
    assert [p.name for p in log_files(log)] == [
        "usage.jsonl.10",
        "usage.jsonl.2",
        "usage.jsonl.1",
        "usage.jsonl",
    ]


def test_rotated_files_without_the_current_one(log, write_usage):
    write_usage(log.parent / "usage.jsonl.1", [])
    assert [p.name for p in log_files(log)] == ["usage.jsonl.1"]
    assert log_files(log.parent / "missing.jsonl") == []


def test_totals_span_the_current_and_the_rotated_files(log, write_usage, make_usage_record):
    write_usage(log.parent / "usage.jsonl.2", [make_usage_record(ago(hours=5))])
    write_usage(log.parent / "usage.jsonl.1", [make_usage_record(ago(hours=3), key="team-b")] * 2)
    write_usage(log, [make_usage_record(ago(minutes=1))])
    report = usage_report(log, "24h", "key", now=NOW)
    assert [(r.name, r.requests, r.total_tokens) for r in report.rows] == [
        ("team-a", 2, 60),
        ("team-b", 2, 60),
    ]
    assert (report.total.requests, report.total.prompt_tokens, report.total.completion_tokens) == (
        4,
        40,
        80,
    )
    assert [p.name for p in report.files] == ["usage.jsonl.2", "usage.jsonl.1", "usage.jsonl"]


def test_the_window_includes_its_first_instant_and_excludes_what_came_before(
    log, write_usage, make_usage_record
):
    write_usage(
        log,
        [
            make_usage_record(ago(hours=1, seconds=1), key="before"),
            make_usage_record(ago(hours=1), key="at-start"),
            make_usage_record(ago(minutes=59, seconds=59), key="inside"),
            make_usage_record(
                NOW + timedelta(seconds=2), key="clock-ahead"
            ),  # another host's clock
        ],
    )
    report = usage_report(log, "1h", "key", now=NOW)
    assert sorted(r.name for r in report.rows) == ["at-start", "clock-ahead", "inside"]
    assert report.as_dict()["from"] == "2025-06-01T11:00:00Z"
    assert report.as_dict()["to"] == "2025-06-01T12:00:00Z"


def test_files_last_written_before_the_window_are_not_read(log, write_usage, make_usage_record):
    old = write_usage(log.parent / "usage.jsonl.1", [make_usage_record(ago(days=3))], tail="junk\n")
    os.utime(old, (ago(days=3).timestamp(), ago(days=3).timestamp()))
    write_usage(log, [make_usage_record(ago(minutes=5))])
    report = usage_report(log, "1d", "key", now=NOW)
    assert [p.name for p in report.files] == ["usage.jsonl"]
    assert report.total.requests == 1 and report.unreadable_lines == 0
    # a longer window reads it again
    week = usage_report(log, "7d", "key", now=NOW)
    assert week.total.requests == 2 and week.unreadable_lines == 1


def test_a_torn_last_line_is_skipped_quietly_and_other_junk_is_counted(
    log, write_usage, make_usage_record
):
    torn = '{"time": "2025-06-01T11:59:59Z", "key": "team-a", "prompt_tok'
    write_usage(log, [make_usage_record(ago(minutes=2))], tail="not json\n[1, 2]\n\n" + torn)
    report = usage_report(log, "24h", "key", now=NOW)
    assert report.total.requests == 1
    assert report.unreadable_lines == 2  # "not json" and the list; the blank line is not a record


def test_refusals_are_requests_by_code_not_errors_and_carry_no_latency(
    log, write_usage, make_usage_record
):
    when = ago(minutes=3)
    write_usage(
        log,
        [
            make_usage_record(when, duration_ms=100.0, ttft_ms=10.0),
            make_usage_record(
                when,
                status=500,
                prompt_tokens=0,
                completion_tokens=0,
                duration_ms=300.0,
                ttft_ms=None,
            ),
            make_usage_record(
                when,
                status=400,
                prompt_tokens=None,
                completion_tokens=None,
                duration_ms=5.0,
                ttft_ms=None,
            ),
            *[
                make_usage_record(
                    when,
                    status=429,
                    refused="quota_exceeded",
                    prompt_tokens=0,
                    completion_tokens=0,
                    ttft_ms=None,
                    duration_ms=0.2,
                )
            ]
            * 2,
            make_usage_record(
                when,
                key="-",
                model="-",
                status=401,
                refused="invalid_api_key",
                prompt_tokens=0,
                completion_tokens=0,
                ttft_ms=None,
                duration_ms=0.1,
            ),
        ],
    )
    report = usage_report(log, "1h", "key", now=NOW)
    rows = {row.name: row.as_dict() for row in report.rows}
    assert rows["team-a"] == {
        "name": "team-a",
        "requests": 5,
        "refused": 2,
        "refused_by_code": {"quota_exceeded": 2},
        "errors": 2,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "duration_ms_p50": 100.0,
        "duration_ms_p95": 280.0,
        "ttft_ms_p50": 10.0,
    }
    assert rows["-"]["refused_by_code"] == {"invalid_api_key": 1}
    assert rows["-"]["duration_ms_p50"] is None and rows["-"]["ttft_ms_p50"] is None
    total = report.total.as_dict()
    assert (total["requests"], total["refused"], total["errors"]) == (6, 3, 2)
    assert total["refused_by_code"] == {"invalid_api_key": 1, "quota_exceeded": 2}


def test_percentiles_interpolate_between_ranks(log, write_usage, make_usage_record):
    write_usage(
        log,
        [
            make_usage_record(ago(minutes=1), duration_ms=float(ms), ttft_ms=ms / 4)
            for ms in range(0, 102, 2)  # 0, 2, ..., 100
        ],
    )
    total = usage_report(log, "1h", "key", now=NOW).total.as_dict()
    assert (total["duration_ms_p50"], total["duration_ms_p95"], total["ttft_ms_p50"]) == (
        50.0,
        95.0,
        12.5,
    )


def test_grouping_by_model_most_tokens_first(log, write_usage, make_usage_record):
    when = ago(minutes=1)
    write_usage(
        log,
        [
            make_usage_record(when, model="small", prompt_tokens=1, completion_tokens=1),
            make_usage_record(when, model="big", key="team-b", prompt_tokens=500),
            make_usage_record(
                when, model="small", key="team-b", prompt_tokens=1, completion_tokens=1
            ),
            make_usage_record(when, model=None, status=429, refused="rate_limit_exceeded"),
        ],
    )
    report = usage_report(log, "1h", "model", now=NOW)
    assert [(r.name, r.requests, r.total_tokens) for r in report.rows] == [
        ("big", 1, 520),
        ("small", 2, 4),
        ("-", 1, 0),
    ]
    assert report.as_dict()["by"] == "model"


def test_times_with_offsets_or_without_a_zone_are_compared_in_utc(
    log, write_usage, make_usage_record
):
    inside = make_usage_record(ago(minutes=10), key="offset")
    inside["time"] = "2025-06-01T13:50:00+02:00"  # 11:50 UTC
    outside = make_usage_record(ago(minutes=10), key="naive-old")
    outside["time"] = "2025-06-01T10:50:00"  # naive: UTC, before the window
    write_usage(log, [inside, outside])
    assert [r.name for r in usage_report(log, "1h", "key", now=NOW).rows] == ["offset"]


def test_a_missing_or_empty_log_gives_an_empty_report(log, write_usage):
    missing = usage_report(log, "24h", "key", now=NOW)
    assert missing.empty and missing.files == [] and missing.total.requests == 0
    write_usage(log, [])
    empty = usage_report(log, "24h", "key", now=NOW)
    assert empty.empty and empty.as_dict()["total"]["duration_ms_p50"] is None


def test_lines_that_are_not_usage_records(make_usage_record):
    assert parse_entry("{}") is None  # no time
    assert parse_entry('{"time": 17}') is None
    assert parse_entry('"text"') is None
    record = parse_entry('{"time": "2025-06-01T11:00:00Z", "status": "200", "prompt_tokens": true}')
    assert record is not None and record.status is None and record.prompt_tokens == 0
    assert (record.key, record.model) == ("-", "-")


def test_an_unreadable_file_raises(log, write_usage, make_usage_record):
    write_usage(log, [make_usage_record(ago(minutes=1))])
    (log.parent / "usage.jsonl.1").mkdir()  # cannot be opened as a file, even by root
    with pytest.raises(OSError):
        read_usage(log, ago(hours=1))
