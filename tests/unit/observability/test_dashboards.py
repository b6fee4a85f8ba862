"""Dashboards as code: the committed JSON is what the code builds, and every query is sound."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from gpucluster.observability.catalogue import EDGE_METRICS, GUIDE_METRICS, edge_series
from gpucluster.observability.dashboards import (
    dashboards,
    panel_queries,
    render_dashboards,
    write_dashboards,
)
from gpucluster.observability.tenant_panels import tokens_per_hour_by_key

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
UIDS = {"rayServeDashboard", "rayServeDeploymentDashboard", "gpuclusterLLM"}

# Names Ray 2.60 exports as they are, which the dashboards may read besides the guide's names.
RAW_METRICS = {
    "ray_serve_autoscaling_target_replicas",
    "ray_serve_autoscaling_desired_replicas",
    "ray_serve_num_ongoing_http_requests",
    "ray_serve_num_http_requests_total",
    "ray_serve_http_request_latency_ms_bucket",
    "ray_vllm_num_preemptions_total",
    "ray_vllm_e2e_request_latency_seconds_bucket",
    "ray_vllm_request_success_total",
    "ray_node_cpu_utilization",
    "ray_node_mem_used",
    "ray_node_mem_total",
    # exported by the LLM autoscaling policy from the Serve controller (serving.autoscaling)
    "ray_gpucluster_autoscaling_desired_replicas",
    "ray_gpucluster_autoscaling_signal",
}
# The gatekeeper's metrics (job gpucluster-edge) are catalogued with their labels.
ALLOWED_METRICS = {metric.name for metric in GUIDE_METRICS} | RAW_METRICS | set(edge_series())
# Exported only after their first event: a bare query would show "No data" until then.
LAZY_METRICS = {"ray_vllm_num_preemptions_total"} | {
    series for metric in EDGE_METRICS if metric.lazy for series in metric.series
}

FUNCTIONS = {
    "abs",
    "avg",
    "changes",
    "clamp_min",
    "count",
    "histogram_quantile",
    "increase",
    "max",
    "min",
    "rate",
    "sum",
    "topk",
    "vector",
}
KEYWORDS = {"and", "or", "unless", "bool", "group_left", "group_right", "offset"}


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects; AssertionError on a function outside FUNCTIONS."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", "", text)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("("):
            assert word in FUNCTIONS, f"unexpected function {word} in {expr!r}"
        elif word not in KEYWORDS:
            names.add(word)
    return names


def balanced(expr: str) -> bool:
    """Whether (), [] and {} nest properly outside string literals."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _strip_strings(expr):
        if char in "([{":
            stack.append(char)
        elif char in closing and (not stack or stack.pop() != closing[char]):
            return False
    return not stack


def _panels(board: dict) -> list[dict]:
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def _targets() -> list[tuple[str, dict, dict]]:
    return [
        (board["uid"], panel, target)
        for board in dashboards().values()
        for panel in _panels(board)
        for target in panel["targets"]
    ]


def test_committed_dashboards_are_what_the_code_builds() -> None:
    committed = {
        path.name: path.read_text(encoding="utf-8") for path in DASHBOARDS_DIR.glob("*.json")
    }
    rendered = render_dashboards()
    hint = "regenerate with: python -m gpucluster.observability.generate"
    assert set(committed) == set(rendered), hint
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} is stale; {hint}"


def test_write_dashboards_writes_the_rendered_files(tmp_path: Path) -> None:
    written = write_dashboards(tmp_path / "new")
    rendered = render_dashboards()
    assert sorted(path.name for path in written) == sorted(rendered)
    for path in written:
        assert path.read_text(encoding="utf-8") == rendered[path.name]
        assert path.read_text(encoding="utf-8").endswith("}\n")


def test_the_three_dashboards_and_the_guides_uid() -> None:
    boards = {board["uid"]: board for board in dashboards().values()}
    assert set(boards) == UIDS
    assert boards["rayServeDashboard"]["title"] == "Ray Serve Dashboard"  # the guide's URL
    assert boards["rayServeDeploymentDashboard"]["title"] == "Ray Serve Deployment Dashboard"
    assert boards["gpuclusterLLM"]["title"] == "LLM Dashboard"
    for board in boards.values():
        assert board["schemaVersion"] == 39
        titles = [panel["title"] for panel in _panels(board)]
        assert len(set(titles)) == len(titles), f"{board['uid']}: panel titles repeat"


def test_every_panel_has_the_datasource_and_a_query() -> None:
    for board in dashboards().values():
        for panel in _panels(board):
            where = f"{board['uid']}: {panel['title']}"
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, where
                assert target["expr"].strip(), where
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), where
        for variable in board["templating"]["list"]:
            assert variable["datasource"] == DATASOURCE


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    for board in dashboards().values():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), board["uid"]
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & area, f"{board['uid']}: {panel['title']} overlaps another panel"
            cells |= area


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x=~"b"}[5m]))) / 1e-9 or vector(0)'
    assert metric_names(expr) == {"a_bucket"}
    assert metric_names("avg(vllm:gpu_cache_usage_perc) * 100") == {"vllm:gpu_cache_usage_perc"}
    assert balanced('sum(rate(x{route!~"/-/(.*"}[5m]))')
    assert not balanced("sum(rate(x[5m])")


@pytest.mark.parametrize("uid, title, expr", panel_queries())
def test_query_is_balanced_and_uses_known_metrics(uid: str, title: str, expr: str) -> None:
    assert balanced(expr), f"{uid}: {title}: {expr}"
    assert "$" not in expr, "template variables must be substituted"
    names = metric_names(expr)
    assert names, f"{uid}: {title} selects no metric"
    assert names <= ALLOWED_METRICS, f"{uid}: {title}: unknown {names - ALLOWED_METRICS}"
    if names & LAZY_METRICS:
        assert expr.endswith("or vector(0)"), f"{uid}: {title}: lazy counter without a 0"


def test_queries_parse_as_promql(tmp_path: Path, promtool: str) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_uid, _title, expr) in enumerate(panel_queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_panel_queries_cover_every_target() -> None:
    queries = panel_queries()
    targets = _targets()
    assert len(queries) == len(targets)
    for (uid, title, expr), (target_uid, panel, target) in zip(queries, targets):
        assert (uid, title) == (target_uid, panel["title"])
        assert expr == target["expr"].replace("$application", ".+").replace("$deployment", ".+")


def test_deployment_dashboard_filters_by_its_variables() -> None:
    board = dashboards()["ray-serve-deployment.json"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert set(variables) == {"application", "deployment"}
    for variable in variables.values():
        assert variable["definition"].startswith("label_values(ray_serve_num_deployment_replicas")
        assert variable["includeAll"] and variable["allValue"] == ".+"
    for panel in _panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            assert 'application=~"$application"' in expr, panel["title"]
            # Every use of a variable is a regex match, so "All" (.+) keeps the query valid.
            assert len(re.findall(r"\$\w+", expr)) == len(re.findall(r'=~"\$\w+"', expr))
            if "errors" not in expr:  # the 5xx counter has no deployment label
                assert 'deployment=~"$deployment"' in expr, panel["title"]


def test_guide_panels_are_there() -> None:
    exprs = {uid: [expr for u, _t, expr in panel_queries() if u == uid] for uid in UIDS}
    assert "avg(vllm:gpu_cache_usage_perc) * 100" in exprs["gpuclusterLLM"]  # guide's example
    serve = " ".join(exprs["rayServeDashboard"])
    for name in (
        "ray_serve_num_router_requests_total",
        "ray_serve_num_router_requests_errors_total",
        "serve_deployment_processing_latency_ms",
        "ray_serve_num_deployment_replicas",
        "ray_serve_autoscaling_target_replicas",
        "ray_serve_deployment_replica_starts_total",
        "ray_serve_deployment_replica_failures_total",
    ):
        assert name in serve, name
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, application, deployment) " in serve


def test_datasource_provisioning_matches_the_dashboards() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = config["datasources"]
    assert (source["type"], source["uid"]) == (DATASOURCE["type"], DATASOURCE["uid"])
    assert source["url"] == "http://gpu-cluster-prometheus:19090"
    assert source["isDefault"] is True


def test_dashboard_provisioning_loads_the_dashboards_path() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning/dashboards/gpu-cluster.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "gpu-cluster"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_llm_dashboard_has_a_tenants_row_of_per_key_panels() -> None:
    board = dashboards()["llm.json"]
    titles = [panel["title"] for panel in board["panels"]]
    tenants = board["panels"][titles.index("Tenants") + 1 :]
    assert [panel["type"] for panel in tenants] == ["timeseries"] * 6  # the row ends the board
    edge = set(edge_series())
    for panel in tenants:
        (target,) = panel["targets"]
        assert metric_names(target["expr"]) <= edge, panel["title"]
        assert re.search(r"by \((le, )?key\b|by \(reason\)", target["expr"]), panel["title"]
    by_title = {panel["title"]: panel["targets"][0]["expr"] for panel in tenants}
    tokens = by_title["Tokens per hour by key"]
    for counter in ("gpucluster_key_prompt_tokens_total", "gpucluster_key_completion_tokens_total"):
        assert f"increase({counter}[1h])" in tokens
    assert by_title["Request duration p95 by key"] == (
        "histogram_quantile(0.95, sum by (le, key) "
        "(rate(gpucluster_key_request_duration_seconds_bucket[5m])))"
    )
    assert "gpucluster_key_quota_refusals_total" in by_title["Quota refusals/s by key"]


def test_tokens_per_hour_adds_both_counters_and_keeps_a_key_with_only_one(
    tmp_path: Path, promtool: str
) -> None:
    # team-a: 60 prompt + 30 completion tokens a minute; team-b (embeddings): 10 prompt only
    series = {
        'gpucluster_key_prompt_tokens_total{key="team-a", model="m"}': "0+60x120",
        'gpucluster_key_completion_tokens_total{key="team-a", model="m"}': "0+30x120",
        'gpucluster_key_prompt_tokens_total{key="team-b", model="e"}': "0+10x120",
    }
    test = {
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": v} for name, v in series.items()],
                "promql_expr_test": [
                    {
                        "expr": tokens_per_hour_by_key(),
                        "eval_time": "90m",
                        "exp_samples": [
                            {"labels": '{key="team-a"}', "value": 5400},
                            {"labels": '{key="team-b"}', "value": 600},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "tokens_test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
