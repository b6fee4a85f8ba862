"""`gpucluster chat` against a fake OpenAI server on a real socket: -p, --json, piped sessions,
Ctrl-C, errors and exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpucluster.cli.main import app

STATS = re.compile(r"^TTFT \d+ ms · (~?\d+) tokens · ([\d.]+|-) tok/s$", re.MULTILINE)
SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.fixture
def fake(make_fake):
    return make_fake(default_tokens=3)


@pytest.fixture
def served(fake, serve_fake):
    return serve_fake(fake)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GPUCLUSTER_CONFIG", raising=False)
    monkeypatch.delenv("GPUCLUSTER_API_KEYS", raising=False)
    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(app, ["chat", *args], input=input)


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_prompt_prints_the_answer_and_stats_on_stderr(run, served, fake):
    result = run("-p", "hello", "--url", served.url)
    assert result.exit_code == 0, result.output
    assert result.stdout == " t0 t1 t2\n"
    assert STATS.fullmatch(result.stderr.strip()).group(1) == "3"
    assert fake.bodies[0]["model"] == "fake-model"  # the first served model
    assert fake.bodies[0]["messages"] == [{"role": "user", "content": "hello"}]


def test_prompt_json_is_one_object(run, served):
    result = run("fake-model", "-p", "hello", "--url", served.url, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {
        "ok",
        "model",
        "text",
        "ttft_ms",
        "completion_tokens",
        "tokens_per_s",
        "total_s",
        "finish_reason",
        "prompt_tokens",
    }
    assert (data["ok"], data["model"], data["text"]) == (True, "fake-model", " t0 t1 t2")
    assert data["completion_tokens"] == 3 and data["finish_reason"] == "length"
    assert 0 <= data["ttft_ms"] <= data["total_s"] * 1000 + 1  # (rounded to 0.1 ms and 1 ms)


def test_options_reach_the_request(run, served, fake):
    args = ("--system", "Be brief.", "--max-tokens", "2", "--temperature", "0.5")
    result = run("-p", "hi", "--url", served.url, *args)
    assert result.exit_code == 0, result.output
    body = fake.bodies[0]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["max_tokens"], body["temperature"]) == (2, 0.5)
    assert result.stdout == " t0 t1\n"


def test_a_refused_prompt_exits_1_with_the_message(run, make_fake, serve_fake):
    served = serve_fake(make_fake(api_key="right"))
    result = run("fake-model", "-p", "hi", "--url", served.url, "--api-key", "wrong", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": "HTTP 401: Invalid API key; pass --api-key or set GPUCLUSTER_API_KEYS",
        "next": None,  # the message says it
    }
    result = run("-p", "hi", "--url", served.url)  # no key: refused while listing models
    assert result.exit_code == 1
    assert "pass --api-key" in result.stderr


def test_an_unknown_model_lists_the_served_ones(run, served):
    result = run("gpt-9", "-p", "hi", "--url", served.url, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"].endswith("served models: fake-model")


def test_a_platform_that_is_not_running_is_named(run, unused_port):
    url = f"http://127.0.0.1:{unused_port}/v1"
    result = run("-p", "hi", "--url", url, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error.startswith(f"the platform is not running at {url} (")
    assert error.endswith("start it with `gpucluster up`")


def test_without_url_the_platforms_endpoint_and_key_are_used(
    run, make_fake, serve_fake, monkeypatch
):
    served = serve_fake(make_fake(api_key="env-key", default_tokens=3))
    monkeypatch.setenv("NGINX_HTTP_PORT", served.url.split(":")[2].split("/")[0])
    monkeypatch.setenv("GPUCLUSTER_API_KEYS", "env-key")
    result = run("-p", "hi", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["text"] == " t0 t1 t2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-tokens", "0"], "--max-tokens"),
        (["--temperature", "-1"], "--temperature"),
    ],
)
def test_bad_options_exit_2(run, args, message):
    result = run("-p", "hi", *args)
    assert result.exit_code == 2 and message in result.output


def test_a_bad_url_exits_2(run):
    result = run("-p", "hi", "--url", "localhost:8000", "--json")
    assert result.exit_code == 2
    assert "--url: 'localhost:8000' is not an http(s) URL" in json.loads(result.stdout)["error"]


def test_a_piped_session_keeps_the_conversation_until_reset(run, served, fake):
    lines = "My name is Ada.\n\nWhat is my name?\n/reset\nHi\n"
    result = run("--url", served.url, input=lines)
    assert result.exit_code == 0, result.output
    assert result.stdout == " t0 t1 t2\n" * 3
    assert len(STATS.findall(result.stderr)) == 3
    assert "new conversation" in result.stderr
    assert [m["content"] for m in fake.bodies[1]["messages"]] == [
        "My name is Ada.",
        " t0 t1 t2",
        "What is my name?",
    ]
    assert fake.bodies[2]["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_session_goes_on_after_a_failed_turn_and_exits_1(run, make_fake, serve_fake):
    fake = make_fake(fail_every=2, default_tokens=1)
    served = serve_fake(fake)
    result = run("--url", served.url, input="one\ntwo\nthree\n/exit\nnever sent\n")
    assert result.exit_code == 1
    assert "error: HTTP 500: engine failed (request 2)" in result.stderr
    assert len(fake.bodies) == 3
    assert [m["content"] for m in fake.bodies[2]["messages"]] == ["one", " t0", "three"]


def test_a_json_session_prints_one_object_per_turn(run, served):
    result = run("--url", served.url, "--json", input="one\n/nope\ntwo\n")
    assert result.exit_code == 0, result.output
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["ok"], r["text"]) for r in replies] == [(True, " t0 t1 t2")] * 2
    # the second prompt carries the first exchange (the fake counts words as tokens)
    assert replies[1]["prompt_tokens"] == 1 + 3 + 1
    assert "unknown command /nope" in result.stderr


def test_ctrl_c_stops_a_reply_and_keeps_the_session(make_fake, serve_fake, tmp_path):
    fake = make_fake(default_tokens=200)
    served = serve_fake(fake, delay_s=0.05)  # a reply of 10 s: Ctrl-C comes well before its end
    env = {**os.environ, "PYTHONPATH": str(SRC), "GPUCLUSTER_STATE_DIR": str(tmp_path)}
    # As from a terminal: a runner started in the background (`make test &`) has SIGINT
    # ignored, which a child inherits, and Python then installs no KeyboardInterrupt handler. A
    # handled signal is reset to its default in the child.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    chat = subprocess.Popen(
        [sys.executable, "-m", "gpucluster", "chat", "--url", served.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    signal.signal(signal.SIGINT, inherited)
    try:
        chat.stdin.write(b"first\n")
        chat.stdin.flush()
        seen = b""
        deadline = time.monotonic() + 30
        while b" t1" not in seen and time.monotonic() < deadline:
            seen += os.read(chat.stdout.fileno(), 100)
        chat.send_signal(signal.SIGINT)
        fake.default_tokens = 2
        stdout, stderr = chat.communicate(b"second\n", timeout=30)
    finally:
        chat.kill()
    assert chat.returncode == 0, stderr.decode()
    assert b"reply stopped" in stderr
    assert (seen + stdout).decode().endswith(" t0 t1\n")  # the second reply, complete
    assert len(STATS.findall(stderr.decode())) == 1
    assert fake.bodies[1]["messages"] == [{"role": "user", "content": "second"}]
    deadline = time.monotonic() + 5  # the server notices at its next write
    while not served.aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.aborted == 1  # the first stream was closed, not read to its end
