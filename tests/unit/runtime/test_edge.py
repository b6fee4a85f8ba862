"""The nginx config: rendered from deploy/nginx, accepted by the real nginx, credentials private."""

from __future__ import annotations

import subprocess

import pytest

from gpucluster.config import load_config
from gpucluster.runtime.edge import (
    NGINX_BINARY,
    NGINX_TEMPLATE,
    TemplateError,
    ensure_dashboard_password,
    fill_template,
    write_nginx_conf,
)
from gpucluster.runtime.sha512_crypt import verify_password
from gpucluster.runtime.state import StateDir


@pytest.fixture
def state(tmp_path) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.ensure()
    return state


def test_fill_template_replaces_placeholders_and_leaves_nginx_variables():
    assert (
        fill_template("listen ${PORT}; set $host x;", {"PORT": "80"}) == "listen 80; set $host x;"
    )
    with pytest.raises(TemplateError, match="MISSING"):
        fill_template("${MISSING}", {})


def test_rendered_config_passes_nginx_t(state):
    config = load_config(None, env={"NGINX_HTTP_PORT": "28080"})
    conf = write_nginx_conf(config, state, ray_token="t0ken")
    text = conf.read_text()
    assert "${" not in text
    assert "listen 0.0.0.0:28080;" in text
    assert 'X-Ray-Authorization "Bearer t0ken"' in text
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    ensure_dashboard_password(state, "operator")
    result = subprocess.run(
        [
            NGINX_BINARY,
            "-t",
            "-p",
            str(state.nginx_dir),
            "-c",
            str(conf),
            "-e",
            str(state.log("nginx-error")),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_streaming_settings_are_in_the_template():
    template = NGINX_TEMPLATE.read_text()
    v1 = template[template.index("location ~ ^/(v1/") : template.index("location = /dashboard")]
    assert "proxy_buffering off;" in v1
    assert "proxy_http_version 1.1;" in template and 'proxy_set_header Connection "";' in template
    assert "client_max_body_size" in template


def test_dashboard_password_is_created_once_and_stored_hashed(state):
    password = ensure_dashboard_password(state, "operator")
    assert password and len(password) >= 20
    line = state.htpasswd_file.read_text().strip()
    user, hashed = line.split(":", 1)
    assert user == "operator" and password not in line
    assert hashed.startswith("$6$")  # SHA-512-crypt, which nginx checks with crypt(3)
    assert verify_password(password, hashed)
    assert ensure_dashboard_password(state, "operator") is None  # shown once only


def test_only_trusted_proxies_name_the_client():
    from gpucluster.config.schema import SecurityConfig
    from gpucluster.runtime.edge import real_ip_lines

    assert "set_real_ip_from" not in real_ip_lines(SecurityConfig())
    lines = real_ip_lines(
        SecurityConfig(trusted_proxies=["10.0.0.0/8"], real_ip_header="X-Real-IP")
    )
    assert lines.split("\n") == [
        "    set_real_ip_from 10.0.0.0/8;",
        "    real_ip_header X-Real-IP;",
        "    real_ip_recursive on;",
    ]


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """A real nginx from the template with the default config (nothing behind it)."""
    from edge_instance import extra_edge

    from gpucluster.runtime.edge import nginx_values

    root = tmp_path_factory.mktemp("edge")
    state = StateDir(root / "state")
    state.ensure()
    config_file = root / "platform.yaml"
    config_file.write_text("{}\n")
    values = nginx_values(load_config(config_file, env={}), state, ray_token="t0ken")
    state.nginx_dir.mkdir(parents=True, exist_ok=True)
    (root / "upstreams").write_text("server 127.0.0.1:9;\n")
    values["SERVE_UPSTREAMS_FILE"] = str(root / "upstreams")
    with extra_edge(values, root / "nginx") as base:
        yield base


@pytest.mark.parametrize("path", ["/v1/models", "/health", "/dashboard/", "/nowhere"])
@pytest.mark.parametrize(
    "headers",
    [
        "Authorization: Bearer k1\r\nAuthorization: Bearer k1\r\n",
        "Host: b\r\n",  # a second Host
        f"X-Padding: {'x' * 20_000}\r\n",  # over large_client_header_buffers: nginx's 494
    ],
    ids=["duplicate Authorization", "duplicate Host", "header too large"],
)
def test_nginx_refuses_a_malformed_request_in_the_openai_error_shape(edge, path, headers):
    """Sent as raw bytes: HTTP clients refuse to write such requests themselves."""
    import json
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(edge)
    request = f"GET {path} HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 "), answer[:300]
    assert "Content-Type: application/json" in head
    assert json.loads(body)["error"]["code"] == "bad_request"
