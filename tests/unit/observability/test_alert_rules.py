"""The alert rules: promtool accepts and tests them, each alert is documented and guarded.

Checks, from outside: `promtool check rules` and `promtool test rules` pass; every alert
carries severity, summary, description and a runbook_url whose anchor is a heading of
docs/runbooks/alerts.md; the promtool tests exercise every alert on both sides of its `for`
boundary; every metric an alert reads has an absent() companion alert, but for the
gatekeeper's counters that exist only after their first event.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest
import yaml

from gpucluster.observability.catalogue import (
    EDGE_METRICS,
    GUIDE_METRICS,
    edge_series,
    exported_sources,
)

ROOT = Path(__file__).resolve().parents[3]
ALERTS = Path("deploy/prometheus/rules/alerts.yml")
ALERT_TESTS = Path("deploy/prometheus/tests/alerts_test.yml")
RUNBOOK = Path("docs/runbooks/alerts.md")
SEVERITIES = {"critical", "warning"}
ABSENT_FOR_S = 600

# Words of PromQL that look like metric names: functions, aggregations, operators.
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


# Parsed once: every parametrized case reads them (read only).
@cache
def alert_rules() -> list[dict]:
    data = yaml.safe_load((ROOT / ALERTS).read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


@cache
def alert_tests() -> dict:
    return yaml.safe_load((ROOT / ALERT_TESTS).read_text())


def seconds(duration: str | None) -> int:
    """A Prometheus duration (`5m`, `2m45s`, `1h`; none: 0) in seconds."""
    if not duration:
        return 0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)([smhdw])", str(duration))
    assert "".join(n + u for n, u in parts) == str(duration), f"unparsed duration {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def is_absent_alert(rule: dict) -> bool:
    return "absent(" in rule["expr"]


def normalized(text: str) -> str:
    return re.sub(r"\s+", "", text)


def selectors(expr: str) -> set[str]:
    """The series selectors (`name{matchers}`) an expression reads, whitespace removed."""
    text = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", text):
        name, matchers, call = match.groups()
        if (call and not matchers) or name.lower() in PROMQL_WORDS:
            continue  # a function or an aggregation, or a keyword
        if match.start() > 0 and re.match(r"[0-9.]", text[match.start() - 1]):
            continue  # the exponent or unit of a number
        found.add(normalized(name + (matchers or "")))
    return found


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    anchors = set()
    fenced = False
    for line in (ROOT / RUNBOOK).read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match and not fenced:
            anchors.add(github_anchor(match.group(1)))
    return anchors


# ------------------------------------------------------------------------------- promtool


def test_promtool_check_rules_accepts_the_alert_rules(promtool):
    result = run_promtool(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass(promtool):
    result = run_promtool(promtool, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# ------------------------------------------------------------------------------- annotations


def test_alerts_exist_and_names_are_unique():
    names = [rule["alert"] for rule in alert_rules()]
    assert names, f"no alerting rule in {ALERTS}"
    assert len(names) == len(set(names)), names
    assert {
        "KVCacheSaturation",
        "RequestsWaiting",
        "HighProcessingLatency",
        "RayTargetDown",
        "ReplicaFailures",
        "HighTimeToFirstToken",
        "KeyQuotaExhausted",
    } <= set(names)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_summary_description_and_runbook(rule):
    name = rule["alert"]
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: labels.severity"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: annotations.{key} is missing"
    assert annotations["runbook_url"] == f"{RUNBOOK.as_posix()}#{name.lower()}"


def test_every_runbook_url_anchor_is_a_heading_of_the_runbook():
    anchors = runbook_anchors()
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert (ROOT / path).is_file(), f"{rule['alert']}: {path} does not exist"
        assert anchor in anchors, f"{rule['alert']}: no heading with anchor #{anchor} in {path}"


def test_the_runbook_links_within_itself_resolve():
    anchors = runbook_anchors()
    links = re.findall(r"\]\(#([^)]+)\)", (ROOT / RUNBOOK).read_text())
    assert links
    assert not [link for link in links if link not in anchors]


# ------------------------------------------------------------------------------- tests


def evaluations() -> dict[str, list[tuple[int, int, bool]]]:
    """alertname -> (test group index, eval time s, fires?) of every promtool test case."""
    cases: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
    for index, group in enumerate(alert_tests()["tests"]):
        for case in group.get("alert_rule_test", []):
            cases[case["alertname"]].append(
                (index, seconds(case["eval_time"]), bool(case.get("exp_alerts")))
            )
    return cases


def test_promtool_tests_only_name_existing_alerts():
    # promtool passes `exp_alerts: []` for an alert that does not exist: a typo would hide.
    assert set(evaluations()) <= {rule["alert"] for rule in alert_rules()}


def test_promtool_tests_load_the_alert_rules():
    assert "../rules/alerts.yml" in alert_tests()["rule_files"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_is_tested_on_both_sides_of_its_for_boundary(rule):
    name = rule["alert"]
    cases = evaluations().get(name, [])
    hold = seconds(rule.get("for"))
    interval = seconds(alert_tests().get("evaluation_interval", "1m"))
    assert any(fires for _, _, fires in cases), f"{name}: no test case where it fires"
    assert any(not fires for _, _, fires in cases), f"{name}: no test case where it stays quiet"
    if hold:
        assert any(t < hold and not fires for _, t, fires in cases), (
            f"{name}: no test case before its `for` ({rule['for']}) without the alert"
        )
        assert any(t >= hold and fires for _, t, fires in cases), (
            f"{name}: no test case at or after its `for` ({rule['for']}) with the alert"
        )
    # The boundary itself: quiet at one evaluation, firing at the next, in one test group.
    quiet = {(group, t) for group, t, fires in cases if not fires}
    firing = {(group, t) for group, t, fires in cases if fires}
    assert any(
        (group, t - step) in quiet for group, t in firing for step in range(1, interval + 1)
    ), f"{name}: no quiet case one evaluation interval ({interval} s) before a firing case"


# ------------------------------------------------------------------------------- absent()


# Counters with no series until their first event (a key's first quota refusal): absent() is
# their normal state, so a companion would fire on every platform whose keys stay in quota.
LAZY_SERIES = {series for metric in EDGE_METRICS if metric.lazy for series in metric.series}


def test_every_metric_an_alert_reads_has_an_absent_companion():
    companions = [rule for rule in alert_rules() if is_absent_alert(rule)]
    absent_args = {
        normalized(arg)
        for rule in companions
        for arg in re.findall(r"absent\(([^()]*)\)", rule["expr"])
    }
    missing = {
        f"{rule['alert']}: {selector}"
        for rule in alert_rules()
        if not is_absent_alert(rule)
        for selector in selectors(rule["expr"])
        if selector not in absent_args and metric_name(selector) not in LAZY_SERIES
    }
    assert not missing, f"metrics without an absent() companion alert: {sorted(missing)}"


@pytest.mark.parametrize(
    "rule", [r for r in alert_rules() if is_absent_alert(r)], ids=lambda rule: rule["alert"]
)
def test_absent_companions_wait_10m_warn_and_name_their_metric(rule):
    metric = rule["labels"].get("metric")
    assert metric, f"{rule['alert']}: labels.metric names the missing metric"
    assert f"absent({metric})" in normalized(rule["expr"])
    assert metric in rule["annotations"]["summary"]
    assert rule["labels"]["severity"] == "warning"
    assert seconds(rule.get("for")) == ABSENT_FOR_S


def test_alerts_read_only_guide_names_or_catalogued_exported_names():
    # Exported names the rules rely on are in the catalogue, whose tests catch a rename.
    known = {m.name for m in GUIDE_METRICS} | set(exported_sources()) | set(edge_series()) | {"up"}
    used = {metric_name(s) for rule in alert_rules() for s in selectors(rule["expr"])}
    assert used <= known, sorted(used - known)


def test_selector_extraction_reads_the_guide_expressions():
    assert selectors("avg(vllm:gpu_cache_usage_perc) > 0.8") == {"vllm:gpu_cache_usage_perc"}
    assert selectors('up{job="ray"} == 0') == {'up{job="ray"}'}
    assert selectors(
        "histogram_quantile(0.95, sum by (le, application, deployment) "
        "(serve_deployment_processing_latency_ms)) > 5000"
    ) == {"serve_deployment_processing_latency_ms"}
    assert selectors("rate(ray_serve_deployment_replica_failures_total[5m]) > 0") == {
        "ray_serve_deployment_replica_failures_total"
    }
    assert selectors('absent(x) and on() (sum(rate(y{a=~"b.+"}[5m])) > 1e3)') == {
        "x",
        'y{a=~"b.+"}',
    }
