"""What the operator's documents tell an operator to run, read from the documents themselves.

`extract(path)` returns every fenced shell command, every PromQL expression in a ```promql
block, every configuration snippet in a ```yaml block, every local URL (prose or code) and
every block that shows a command's output, each with where it should run. The live suites
run them (tests/integration/test_operator_guide.py for local mode, the compose and
multi-tenant tests for theirs).

What cannot run on the test machine is marked in the document, next to it, never in a list
kept here:

- before a fence, for the whole block: `<!-- guide: TAG; TAG -->`
- at the end of a command's or query's comment, for that line: `# what it does [TAG]`
- on the line of a prose URL: `<!-- guide: TAG -->`

A tag this module does not know is an error, so a new command is either run or decided.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("docs/operator-guide.md", "docs/runbooks/alerts.md", "README.md")

# Where an item runs: the live local platform unless tagged otherwise.
RUNNERS = {
    "compose": "runs against the compose stack (tests/compose)",
    "multi-tenant": "runs against examples/multi-tenant.yaml (test_multi_tenant)",
}
# Why an item is not run by any test here.
NOT_RUN = {
    "gpu": "needs a GPU host",
    "grafana": "needs Grafana, which only the GPU compose file runs (no Grafana image or binary "
    "can be fetched here)",
    "kubernetes": "needs a Kubernetes cluster",
    "other host": "talks to another host",
    "hub": "downloads from the Hugging Face hub, which this machine cannot reach",
    "root": "changes the host's firewall (root)",
    "restarts": "stops or restarts the platform",
    "minutes": "a load test of several minutes",
    "example": "an example to adapt, not a command to run as written",
    "follows": "follows a log until Ctrl-C",
    "setup": "sets a deployment up; the suite's own fixture does this step",
}
# What an item may do that would otherwise fail it.
ALLOWANCES = {
    "may be empty": "a query that returns nothing until something happens (the comment says what)",
}
OUTPUT_OF = "output of:"  # `<!-- guide: output of: CMD -->`: the block is lines of CMD's output
API_BASE = "api base"  # a URL that is an API's base: `<url>/models` (or `/v1/models`) answers

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
_BLOCK_TAGS = re.compile(r"^<!--\s*guide:\s*(.*?)\s*-->\s*$")
_INLINE_TAGS = re.compile(r"<!--\s*guide:\s*(.*?)\s*-->")
_LINE_TAG = re.compile(r"\s#[^#]*\[([a-z][a-z -]*)\]\s*$|^#[^#]*\[([a-z][a-z -]*)\]\s*$")
_FENCE = re.compile(r"^\s*```\s*([A-Za-z]*)\s*$")  # also indented, in a list item
_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1)(?::\d+)?(?:/[^\s)`'\"<>|\]]*)?")


class GuideError(ValueError):
    """A document's annotation this module cannot read."""


@dataclass(frozen=True)
class Item:
    doc: str
    line: int
    kind: str  # command | promql | config | url | output
    text: str
    tags: frozenset[str] = field(default_factory=frozenset)
    source: str = ""  # for an `output` block: the command whose output it shows
    block: int = 0  # the line of the fence opening its code block (0: prose)

    @property
    def id(self) -> str:
        return f"{Path(self.doc).name}:{self.line}"

    @property
    def runner(self) -> str | None:
        """Where it runs: `local`, a RUNNERS key, or None when it runs nowhere here."""
        if self.tags & NOT_RUN.keys():
            return None
        found = sorted(self.tags & RUNNERS.keys())
        return found[0] if found else "local"

    @property
    def may_be_empty(self) -> bool:
        return "may be empty" in self.tags

    @property
    def api_base(self) -> bool:
        return API_BASE in self.tags

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _tags(text: str, where: str) -> tuple[frozenset[str], str]:
    """The tags of an annotation ('a; b; output of: CMD'), and the output-of command if any."""
    tags: set[str] = set()
    source = ""
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        if part.startswith(OUTPUT_OF):
            source = part.removeprefix(OUTPUT_OF).strip()
            if not source:
                raise GuideError(f"{where}: `{OUTPUT_OF}` names no command")
            continue
        if (
            part not in RUNNERS
            and part not in NOT_RUN
            and part not in ALLOWANCES
            and part != API_BASE
        ):
            known = ", ".join([*RUNNERS, *NOT_RUN, *ALLOWANCES, API_BASE, OUTPUT_OF + " CMD"])
            raise GuideError(f"{where}: unknown guide tag {part!r} (known: {known})")
        tags.add(part)
    return frozenset(tags), source


def _line_tags(line: str, where: str) -> frozenset[str]:
    match = _LINE_TAG.search(line)
    if not match:
        return frozenset()
    return _tags(match.group(1) or match.group(2), where)[0]


def _strip_comment(line: str) -> str:
    """A PromQL line without its trailing `# comment`."""
    return line.split("#", 1)[0].strip()


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Shell lines with backslash continuations joined, numbered by their first line."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, text in lines:
        if pending is not None:
            number, text = pending[0], pending[1] + " " + text.strip()
            pending = None
        if text.rstrip().endswith("\\"):
            pending = (number, text.rstrip()[:-1].rstrip())
            continue
        joined.append((number, text))
    if pending is not None:
        joined.append(pending)
    return joined


def _shell_items(
    doc: str, lines: list[tuple[int, str]], block: frozenset[str], fence: int
) -> list[Item]:
    items = []
    for number, text in _logical_lines(lines):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tags = block | _line_tags(text, f"{doc}:{number}")
        if _URL.fullmatch(stripped):
            items.append(Item(doc, number, "url", stripped, tags, block=fence))
        else:
            items.append(Item(doc, number, "command", stripped, tags, block=fence))
    return items


def _promql_items(doc: str, lines: list[tuple[int, str]], block: frozenset[str]) -> list[Item]:
    items = []
    for number, text in lines:
        query = _strip_comment(text)
        if query:
            items.append(
                Item(doc, number, "promql", query, block | _line_tags(text, f"{doc}:{number}"))
            )
    return items


def _prose_urls(doc: str, number: int, line: str) -> list[Item]:
    """The local URLs of a prose line; an annotation applies to the URL just before it."""
    matches = [
        m for m in _URL.finditer(line) if line[m.end() : m.end() + 2] not in (":{", ":<")
    ]  # http://localhost:{PORT}
    items = []
    for position, match in enumerate(matches):
        end = matches[position + 1].start() if position + 1 < len(matches) else len(line)
        annotation = _INLINE_TAGS.search(line, match.end(), end)
        tags = _tags(annotation.group(1), f"{doc}:{number}")[0] if annotation else frozenset()
        items.append(Item(doc, number, "url", match.group().rstrip(".,:;"), tags))
    return items


def extract(path: str | Path) -> list[Item]:
    """Every item of one document, in document order."""
    path = Path(path)
    doc = (
        str(path.relative_to(ROOT))
        if path.is_absolute() and path.is_relative_to(ROOT)
        else str(path)
    )
    source_lines = path.read_text(encoding="utf-8").splitlines()
    items: list[Item] = []
    index = 0
    while index < len(source_lines):
        line = source_lines[index]
        fence = _FENCE.match(line)
        if not fence:
            if not _BLOCK_TAGS.match(line.strip()):
                items.extend(_prose_urls(doc, index + 1, line))
            index += 1
            continue
        language = fence.group(1).lower()
        fence_line = index + 1
        annotation = _BLOCK_TAGS.match(source_lines[index - 1].strip()) if index else None
        block, output_of = (
            _tags(annotation.group(1), f"{doc}:{index}") if annotation else (frozenset(), "")
        )
        body: list[tuple[int, str]] = []
        index += 1
        while index < len(source_lines) and not source_lines[index].lstrip().startswith("```"):
            body.append((index + 1, source_lines[index]))
            index += 1
        index += 1  # the closing fence
        if output_of:
            text = "\n".join(t for _, t in body if t.strip())
            items.append(Item(doc, body[0][0] if body else index, "output", text, block, output_of))
        elif language in SHELL_LANGUAGES:
            items.extend(_shell_items(doc, body, block, fence_line))
        elif language == "promql":
            items.extend(_promql_items(doc, body, block))
        elif language == "yaml":
            items.append(
                Item(
                    doc,
                    body[0][0] if body else index,
                    "config",
                    "\n".join(t for _, t in body),
                    block,
                )
            )
    return items


def all_items() -> list[Item]:
    return [item for doc in DOCUMENTS for item in extract(ROOT / doc)]


def prelude(item: Item, items: list[Item]) -> list[str]:
    """The `export` and `cd` lines before `item` in its block: the shell state it runs in."""
    return [
        other.text
        for other in items
        if other.doc == item.doc
        and other.block == item.block
        and other.line < item.line
        and other.kind == "command"
        and other.text.split()[0] in ("export", "cd")
    ]


class OperatorShell:
    """A shell set up as an operator's: the repository's files in its working directory, the
    platform's CLI on PATH, its key in `$KEY` and in curl's defaults (the way an operator with
    keys set calls the API with the guide's plain `curl` lines; a command that sends its own
    `Authorization` header runs without them), and the state dir where the guide says it is
    (`~/.local/state/gpucluster`)."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        key: str,
        state_dir: Path | None = None,
        cwd: Path | None = None,
    ):
        home = root / "home"
        (home / ".local" / "state").mkdir(parents=True, exist_ok=True)
        if state_dir is not None:
            (home / ".local" / "state" / "gpucluster").symlink_to(state_dir)
        (home / ".cache").symlink_to(
            Path.home() / ".cache"
        )  # the prepared models, as `up` left them
        self.curl_home = root / "curl"
        self.curl_home.mkdir()
        (self.curl_home / ".curlrc").write_text(f'header = "Authorization: Bearer {key}"\n')
        if cwd is None:
            cwd = root / "work"
            cwd.mkdir()
            for entry in ROOT.iterdir():
                if entry.name != ".git":
                    (cwd / entry.name).symlink_to(entry)
        self.cwd = cwd
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **env,
            "HOME": str(home),
            "KEY": key,
            "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', os.defpath)}",
        }

    def run(self, item: Item, items: list[Item], timeout: float = 300, directory: str = "") -> Run:
        """Run a command item, after the `export` and `cd` lines before it in its block (or in
        `directory` of the repository when its block has no `cd`)."""
        setup = prelude(item, items)
        if directory and not any(line.startswith("cd ") for line in [*setup, item.text]):
            setup = [f"cd {shlex.quote(directory)}", *setup]
        script = "".join(line + "\n" for line in setup) + with_status(item.text)
        own_key = any(
            word.startswith("Authorization:") for word in shlex.split(item.text, comments=True)
        )
        env = self.env if own_key else {**self.env, "CURL_HOME": str(self.curl_home)}
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the command's children too
            stdout, stderr = process.communicate()
            return Run(item.text, [f"still running after {timeout:.0f} s"], stdout, stderr)
        statuses, stderr = split_status(stderr)
        return Run(item.text, judge(item.text, statuses, stdout, stderr), stdout, stderr)


@dataclass(frozen=True)
class Run:
    command: str
    problems: list[str]  # why it did not run as the guide implies; empty when it did
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"$ {self.command}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"


# --- judging a command's run --------------------------------------------------------------

STATUS_MARK = "__guide_pipestatus__"
_FAILURE_SIGNS = (
    "command not found",
    "No such file or directory",
    "jq: error",
    "parse error",
    "curl: (",
    "Traceback (most recent call last)",
)
_ERROR_BODIES = ('{"error"', '"error": {', '"status":"error"', "<title>404", "<title>50")


def with_status(command: str) -> str:
    """The command followed by a line on stderr with each pipeline stage's exit status."""
    return f'{command}\necho "{STATUS_MARK} ${{PIPESTATUS[*]}}" >&2\n'


def stages(command: str) -> list[str]:
    """The first word of each stage of the command's last pipeline."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    words: list[list[str]] = [[]]
    for token in lexer:
        if token == "|":
            words.append([])
        elif token in (";", "&&", "||"):
            words = [[]]
        else:
            words[-1].append(token)
    return [w[0] if w else "" for w in words]


def split_status(stderr: str) -> tuple[list[int], str]:
    """Each stage's exit status, and stderr without the status line."""
    statuses: list[int] = []
    kept = []
    for line in stderr.splitlines():
        if line.startswith(STATUS_MARK):
            statuses = [int(s) for s in line.split()[1:]]
        else:
            kept.append(line)
    return statuses, "\n".join(kept)


def judge(command: str, statuses: list[int], stdout: str, stderr: str) -> list[str]:
    """Why a command's run failed (empty when it ran as the guide implies).

    Every stage must exit 0, except that a `grep` may find nothing (1) and a stage feeding
    `head` may be cut off (SIGPIPE 141, or curl's write error 23).
    """
    problems = []
    names = stages(command)
    if len(statuses) != len(names):
        problems.append(f"expected {len(names)} stage statuses, got {statuses}")
    for position, (name, status) in enumerate(zip(names, statuses, strict=False)):
        next_name = names[position + 1] if position + 1 < len(names) else ""
        if status == 0 or (name == "grep" and status == 1):
            continue
        if next_name == "head" and status in (141, 23):
            continue
        problems.append(f"`{name}` exited {status}")
    for sign in _FAILURE_SIGNS:
        if sign in stderr:
            problems.append(f"stderr says {sign!r}")
    if "curl" in names:
        for sign in _ERROR_BODIES:
            if sign in stdout:
                problems.append(f"the answer is an error ({sign!r})")
    return problems


def output_pattern(line: str) -> re.Pattern[str]:
    """A regex for one line a document shows as output: its timestamp, numbers and
    `<placeholders>` stand for any, `...` and `…` for anything."""
    pattern = re.escape(line.strip())
    pattern = re.sub(r"\\<[^>]*\\>|<[^>]*>", r"\\S+", pattern)
    pattern = pattern.replace(re.escape("..."), ".*").replace(re.escape("…"), ".*")
    pattern = re.sub(r"\d+(?:\\\.\d+)?", r"\\d+(?:\\.\\d+)?", pattern)
    return re.compile(pattern)
