"""The operator's documents run as written: every fenced shell command, PromQL query, config
snippet, local URL and shown output of docs/operator-guide.md, docs/runbooks/alerts.md and
the README, against the live platform (tests/integration/guide_commands.py reads them).

Items tagged for another runner run there (the compose suite, the multi-tenant example);
items tagged as not runnable here say why in the document.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest
import yaml
from guide_commands import Item, OperatorShell, all_items, output_pattern
from probes import eventually, query, serve_traffic_until_scraped

from gpucluster.config.loader import load_config

ITEMS = all_items()
LOCAL = [item for item in ITEMS if item.runner == "local"]
PROMQL_WAIT_S = (
    90  # traffic reaches a rate()-based recording rule within a scrape and an evaluation
)


def by_kind(kind: str) -> list[Item]:
    return [item for item in LOCAL if item.kind == kind]


def ids(items: list[Item]) -> list[str]:
    return [item.id for item in items]


@pytest.fixture(scope="module")
def shell(live, tmp_path_factory) -> OperatorShell:
    return OperatorShell(
        tmp_path_factory.mktemp("operator"), live.env, live.api_key, state_dir=live.state_dir
    )


@pytest.fixture(scope="module")
def traffic(live, openai_client) -> None:
    """The guide's queries and log lines describe a platform that has served requests."""
    serve_traffic_until_scraped(live, openai_client, live.model)


@pytest.mark.parametrize("item", by_kind("command"), ids=ids(by_kind("command")))
def test_command_runs_as_written(item, shell, traffic):
    run = shell.run(item, ITEMS)
    assert not run.problems, f"{item}\n{run.problems}\n{run}"


@pytest.mark.parametrize("item", by_kind("promql"), ids=ids(by_kind("promql")))
def test_query_parses_and_returns_data(item, live, traffic):
    if item.may_be_empty:
        query(live, item.text)  # it must still parse
        return
    assert eventually(lambda: query(live, item.text), PROMQL_WAIT_S), (
        f"{item}: no data after traffic; tag it `[may be empty]` with the reason if that is right"
    )


@pytest.mark.parametrize("item", by_kind("url"), ids=ids(by_kind("url")))
def test_url_answers(item, live):
    auth = (live.dashboard_user, live.dashboard_password) if "/dashboard" in item.text else None
    if item.api_base:
        url = item.text.rstrip("/") + (
            "/models" if item.text.rstrip("/").endswith("/v1") else "/v1/models"
        )
        response = httpx.get(url, headers=live.headers, timeout=30)
        assert response.status_code == 200, f"{item}: {url} answered {response.status_code}"
        return
    response = httpx.get(
        item.text, headers=live.headers, auth=auth, timeout=30, follow_redirects=True
    )
    assert response.status_code != 404 and response.status_code < 500, (
        f"{item}: {response.status_code} {response.text[:300]}"
    )


@pytest.mark.parametrize("item", by_kind("config"), ids=ids(by_kind("config")))
def test_config_snippet_loads(item):
    assert isinstance(yaml.safe_load(item.text), dict), item
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "platform.yaml"
        path.write_text(item.text)
        load_config(path, env={})  # a ConfigError names the key and the reason


@pytest.mark.parametrize("item", by_kind("output"), ids=ids(by_kind("output")))
def test_shown_output_appears(item, shell, traffic):
    source = Item(item.doc, item.line, "command", item.source)
    run = shell.run(source, [])
    assert not run.problems, f"{item.source}: {run.problems}\n{run}"
    printed = run.stdout.splitlines()
    for line in item.text.splitlines():
        pattern = output_pattern(line)
        assert any(pattern.search(out) for out in printed), (
            f"{item.doc}:{item.line}: no line of `{item.source}` looks like\n  {line}\n"
            f"(pattern {pattern.pattern})\n{run}"
        )
