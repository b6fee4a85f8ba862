"""The reader of the operator's documents (tests/integration/guide_commands.py): what it
extracts, how it reads the annotations, and how it judges a command's run."""

from __future__ import annotations

import pytest
from guide_commands import GuideError, Item, all_items, extract, judge, output_pattern, prelude

DOC = """# Title

Prometheus at <http://localhost:19090/classic/alerts>, Grafana `http://localhost:13000` <!-- guide: compose -->,
the dashboard at `http://localhost:{RAY_DASHBOARD_PORT}`.

```bash
# a comment, not a command
gpucluster status            # one screen
nvidia-smi                   # GPU hosts [gpu]
export A=1 \\
       B=2
echo "$A$B"
http://localhost:18080/health
```

<!-- guide: compose -->
```bash
docker logs ray-serve
docker logs -f ray-serve     # [follows]
```

```promql
# a comment line
rate(x_total[5m])            # per second
sum(y_total)                 # none until y [may be empty]
```

```yaml
platform: {}
```

<!-- guide: output of: gpucluster logs serve -->
```
INFO 2026-11-27 00:55:10,123 llm_X <replica> -- Loading model m...
```

```json
{"not": "extracted"}
```

- in a list item:

  ```bash
  gpucluster keys list
  ```
"""


@pytest.fixture
def items(tmp_path) -> list[Item]:
    path = tmp_path / "doc.md"
    path.write_text(DOC)
    return extract(path)


def test_each_kind_is_extracted_with_its_tags(items):
    found = [(i.kind, i.text, sorted(i.tags)) for i in items]
    assert found == [
        ("url", "http://localhost:19090/classic/alerts", []),
        ("url", "http://localhost:13000", ["compose"]),
        ("command", "gpucluster status            # one screen", []),
        ("command", "nvidia-smi                   # GPU hosts [gpu]", ["gpu"]),
        ("command", "export A=1 B=2", []),
        ("command", 'echo "$A$B"', []),
        ("url", "http://localhost:18080/health", []),
        ("command", "docker logs ray-serve", ["compose"]),
        ("command", "docker logs -f ray-serve     # [follows]", ["compose", "follows"]),
        ("promql", "rate(x_total[5m])", []),
        ("promql", "sum(y_total)", ["may be empty"]),
        ("config", "platform: {}", []),
        ("output", "INFO 2026-11-27 00:55:10,123 llm_X <replica> -- Loading model m...", []),
        ("command", "gpucluster keys list", []),
    ]
    output = items[-2]
    assert output.source == "gpucluster logs serve"


def test_where_each_item_runs(items):
    runners = {i.text.split()[0] if i.kind == "command" else i.text: i.runner for i in items}
    assert runners["gpucluster"] == "local"
    assert runners["nvidia-smi"] is None
    assert runners["http://localhost:13000"] == "compose"
    by_text = {i.text: i for i in items}
    assert by_text["docker logs ray-serve"].runner == "compose"
    assert by_text["docker logs -f ray-serve     # [follows]"].runner is None
    assert by_text["sum(y_total)"].may_be_empty


def test_a_command_runs_after_the_exports_of_its_block(items):
    echo = next(i for i in items if i.text.startswith("echo"))
    assert prelude(echo, items) == ["export A=1 B=2"]
    docker = next(i for i in items if i.text == "docker logs ray-serve")
    assert prelude(docker, items) == []


@pytest.mark.parametrize(
    "annotation",
    [
        "<!-- guide: gpus -->\n```bash\nnvidia-smi\n```\n",
        "```bash\nnvidia-smi   # [gpus]\n```\n",
        "see `http://localhost:1` <!-- guide: elsewhere -->\n",
        "<!-- guide: output of: -->\n```\nx\n```\n",
    ],
)
def test_an_unknown_tag_is_an_error_naming_the_line(tmp_path, annotation):
    path = tmp_path / "doc.md"
    path.write_text("intro\n\n" + annotation)
    with pytest.raises(GuideError, match=r"doc\.md:\d+"):
        extract(path)


def test_the_documents_read_cleanly_and_most_of_them_runs_here():
    items = all_items()
    local = [i for i in items if i.runner == "local"]
    assert {i.kind for i in local} == {"command", "promql", "url", "config", "output"}
    assert len(local) > 2 * len([i for i in items if i.runner is None])


@pytest.mark.parametrize(
    ("command", "statuses", "stdout", "stderr", "expected"),
    [
        ("gpucluster health", [0], "", "", []),
        ("gpucluster health", [1], "", "", ["`gpucluster` exited 1"]),
        ("gpucluster logs serve | grep -i error", [0, 1], "", "", []),
        ("gpucluster logs serve | grep -i error", [2, 1], "", "", ["`gpucluster` exited 2"]),
        ("curl -s http://x/metrics | head", [23, 0], "", "", []),
        (
            "curl -s http://x/v1/models",
            [0],
            '{"error": {"code": 401}}',
            "",
            ["the answer is an error ('{\"error\"')", "the answer is an error ('\"error\": {')"],
        ),
        (
            "curl -s http://x | jq .a",
            [0, 5],
            "",
            "jq: error (at <stdin>:0)",
            ["`jq` exited 5", "stderr says 'jq: error'"],
        ),
        ("cd x && gpucluster status", [0], "", "", []),
        ("gpucluster x", [], "", "", ["expected 1 stage statuses, got []"]),
    ],
)
def test_judging_a_run(command, statuses, stdout, stderr, expected):
    assert judge(command, statuses, stdout, stderr) == expected


def test_a_shown_line_matches_the_real_one_whatever_its_time_numbers_and_ids():
    shown = (
        "INFO 2026-11-27 00:55:52,456 llm_PlatformLLMServer:smollm2-135m-instruct <replica> -- "
        "Model loaded successfully (smollm2-135m-instruct, 42.3 s)"
    )
    real = (
        "INFO 2026-11-30 15:09:14,418 llm_PlatformLLMServer:smollm2-135m-instruct xab5vzpt -- "
        "Model loaded successfully (smollm2-135m-instruct, 27.0 s)"
    )
    assert output_pattern(shown).search(real)
    assert not output_pattern(shown).search(
        real.replace("llm_PlatformLLMServer", "llm PlatformLLMServer")
    )
    assert output_pattern("Loading model m...").search("Loading model m, from /cache")
