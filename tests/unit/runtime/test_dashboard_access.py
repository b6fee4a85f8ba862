"""/dashboard/ through the real nginx, with a stand-in dashboard that records what reaches it.

The viewing calls below are those the dashboard UI made when every view was browsed in headless
Chromium (tests/integration/dashboard_ui.py, Ray 2.60); the live test checks the real UI again.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from edge_instance import extra_edge

from gpucluster.config import load_config
from gpucluster.runtime.dashboard_logins import add_user, remove_user, reset_password
from gpucluster.runtime.edge import ensure_dashboard_password, nginx_values
from gpucluster.runtime.state import StateDir

NODE = "6dfcf6879f66a70caf06451ccdf91c2eb32c7005cabdc149411f6297"
ACTOR = "cadd78de2d877e6d0b5883d701000000"
VIEWING_CALLS = [
    ("GET", "/dashboard/"),
    ("GET", "/dashboard/static/js/main.84605326.js"),
    ("GET", "/dashboard/static/media/roboto-latin-400.176f8f5bd5f02b3abfcf.woff2"),
    ("GET", "/dashboard/timezone"),
    ("GET", "/dashboard/events"),
    ("GET", "/dashboard/nodes?view=summary"),
    ("GET", f"/dashboard/nodes/{NODE}"),
    ("GET", "/dashboard/logical/actors"),
    ("GET", f"/dashboard/logical/actors/{ACTOR}"),
    ("GET", "/dashboard/api/authentication_mode"),
    ("GET", "/dashboard/api/cluster_status"),
    ("GET", "/dashboard/api/grafana_health"),
    ("GET", "/dashboard/api/prometheus_health"),
    ("GET", "/dashboard/api/profiling_enabled"),
    ("GET", "/dashboard/api/jobs/"),
    ("GET", "/dashboard/api/jobs/01000000"),
    ("GET", "/dashboard/api/data/datasets/01000000"),
    ("GET", "/dashboard/api/serve/applications/"),
    ("GET", "/dashboard/api/v0/cluster_metadata"),
    ("GET", f"/dashboard/api/v0/logs?node_id={NODE}"),
    ("GET", f"/dashboard/api/v0/logs/file?node_id={NODE}&filename=dashboard.log&lines=-1"),
    ("GET", "/dashboard/api/v0/tasks?detail=1"),
    ("GET", "/dashboard/api/v0/tasks/summarize"),
    ("HEAD", "/dashboard/api/v0/platform_events"),
]
# What the viewing pages never call: commands (jobs, Serve deploys, uploads), profilers that
# attach to workers, and everything else Ray's dashboard serves.
OTHER_CALLS = [
    ("POST", "/dashboard/api/jobs/"),
    ("POST", "/dashboard/api/jobs/raysubmit_x/stop"),
    ("DELETE", "/dashboard/api/jobs/raysubmit_x"),
    ("PUT", "/dashboard/api/serve/applications/"),
    ("DELETE", "/dashboard/api/serve/applications/"),
    ("PUT", "/dashboard/api/packages/gcs/_ray_pkg_x.zip"),
    ("GET", "/dashboard/api/packages/gcs/_ray_pkg_x.zip"),
    ("POST", "/dashboard/api/authenticate"),
    ("GET", "/dashboard/worker/traceback?pid=1"),
    ("GET", "/dashboard/worker/cpu_profile?pid=1"),
    ("GET", "/dashboard/task/cpu_profile?task_id=x"),
    ("GET", "/dashboard/memory_profile?pid=1"),
    ("GET", "/dashboard/api/prometheus/sd"),
    ("GET", "/dashboard/api/v0/logs/stream?node_id=x"),
    ("GET", "/dashboard/static/../worker/traceback"),
    ("GET", "/dashboard/api/jobs/x/../../../worker/traceback"),
    ("GET", "/dashboard/api/jobs/x%2F..%2F..%2F..%2Fworker%2Ftraceback"),
    ("POST", "/dashboard/nodes"),
    ("PATCH", "/dashboard/api/v0/tasks"),
]


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 to anything and remembers it (method, path)."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        Recorder.seen.append((self.command, self.path))
        body = b'{"dashboard": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def dashboard():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    # a short poll interval: shutdown() returns at once instead of after up to 0.5 s
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def edge_values(tmp_path, dashboard_port: int, *, write: bool) -> tuple[dict[str, str], str]:
    """The template's values for a platform with `dashboard_write: write` in front of the
    stand-in dashboard, and the operator's password."""
    state = StateDir(tmp_path / "state")
    state.ensure()
    config_file = tmp_path / "platform.yaml"
    config_file.write_text(f"platform:\n  security:\n    dashboard_write: {str(write).lower()}\n")
    values = nginx_values(load_config(config_file, env={}), state, ray_token="t0ken")
    values["DASHBOARD_UPSTREAM"] = f"127.0.0.1:{dashboard_port}"
    (state.nginx_dir).mkdir(parents=True, exist_ok=True)
    Path(values["SERVE_UPSTREAMS_FILE"]).write_text("server 127.0.0.1:9;\n")
    return values, ensure_dashboard_password(state, "operator")


@pytest.fixture(scope="module")
def read_only_edge(tmp_path_factory, dashboard):
    root = tmp_path_factory.mktemp("read-only")
    values, password = edge_values(root, dashboard, write=False)
    with extra_edge(values, root / "nginx") as base:
        yield base, password


def send(base: str, method: str, path: str, auth) -> httpx.Response:
    # Paths go out as written (httpx would resolve the dot segments itself).
    with httpx.Client(base_url=base, auth=auth, timeout=10) as client:
        request = client.build_request(method, "/", content=b"{}" if method != "GET" else None)
        request.url = request.url.copy_with(raw_path=path.encode())
        return client.send(request)


@pytest.mark.parametrize(("method", "path"), VIEWING_CALLS)
def test_the_viewing_pages_calls_reach_the_dashboard(read_only_edge, method, path):
    base, password = read_only_edge
    Recorder.seen.clear()
    response = send(base, method, path, ("operator", password))
    assert response.status_code == 200, response.text
    assert Recorder.seen == [(method, path.removeprefix("/dashboard"))]


@pytest.mark.parametrize(("method", "path"), OTHER_CALLS)
def test_every_other_call_gets_403_in_the_error_shape_and_never_reaches_it(
    read_only_edge, method, path
):
    base, password = read_only_edge
    Recorder.seen.clear()
    response = send(base, method, path, ("operator", password))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "dashboard_read_only"
    assert "dashboard_write" in error["message"] and method in error["message"]
    assert Recorder.seen == []


@pytest.mark.parametrize(("method", "path"), [VIEWING_CALLS[0], OTHER_CALLS[0]])
def test_without_the_password_nothing_reaches_it(read_only_edge, method, path):
    base, _ = read_only_edge
    Recorder.seen.clear()
    assert send(base, method, path, None).status_code == 401
    assert send(base, method, path, ("operator", "wrong")).status_code == 401
    assert Recorder.seen == []


def test_dashboard_write_lets_every_call_through_after_the_password(tmp_path, dashboard):
    values, password = edge_values(tmp_path, dashboard, write=True)
    with extra_edge(values, tmp_path / "nginx") as base:
        Recorder.seen.clear()
        for method, path in OTHER_CALLS[:6]:
            response = send(base, method, path, ("operator", password))
            assert response.status_code == 200, (method, path, response.text)
        assert [call[0] for call in Recorder.seen] == [call[0] for call in OTHER_CALLS[:6]]
        Recorder.seen.clear()
        assert send(base, "POST", "/dashboard/api/jobs/", None).status_code == 401
        assert Recorder.seen == []


def test_the_error_body_is_json():
    # The 403 body is a literal in the template: it must parse once nginx fills $request_method.
    from gpucluster.assets import NGINX_TEMPLATE

    template = NGINX_TEMPLATE.read_text()
    block = template[template.index("location @dashboard_read_only") :]
    body = block[block.index("return 403 '") + len("return 403 '") : block.index("\\n';")]
    assert json.loads(body.replace("$request_method", "POST"))["error"]["type"]


def test_each_login_gets_through_and_a_removed_one_gets_401(tmp_path, dashboard):
    # logins added and removed while nginx runs: it reads the file on each request
    values, operator = edge_values(tmp_path, dashboard, write=False)
    logins = Path(values["NGINX_HTPASSWD_FILE"])
    alice, bob = add_user(logins, "alice"), add_user(logins, "bob")
    with extra_edge(values, tmp_path / "nginx") as base:
        for auth in (("operator", operator), ("alice", alice), ("bob", bob)):
            assert send(base, "GET", "/dashboard/", auth).status_code == 200, auth[0]
        assert send(base, "GET", "/dashboard/", ("alice", bob)).status_code == 401
        remove_user(logins, "bob")
        assert send(base, "GET", "/dashboard/", ("bob", bob)).status_code == 401
        assert send(base, "GET", "/dashboard/", ("alice", alice)).status_code == 200
        alice_again = reset_password(logins, "alice")
        assert send(base, "GET", "/dashboard/", ("alice", alice)).status_code == 401
        assert send(base, "GET", "/dashboard/", ("alice", alice_again)).status_code == 200
        assert send(base, "GET", "/dashboard/", ("operator", operator)).status_code == 200
        # the last login gone: an empty file, and nobody in (401, not nginx's 500)
        remove_user(logins, "alice")
        remove_user(logins, "operator")
        Recorder.seen.clear()
        assert send(base, "GET", "/dashboard/", ("operator", operator)).status_code == 401
        assert Recorder.seen == []
