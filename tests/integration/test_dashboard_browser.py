"""The Ray dashboard behind nginx at /dashboard/, in headless Chromium, with operator credentials:
every view renders, and the edge lets through what those views call and nothing else."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
from dashboard_ui import VIEWS, browse, launch
from edge_instance import extra_edge
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright
from probes import eventually

from gpucluster.config import load_config
from gpucluster.config.names import llm_deployment_name
from gpucluster.runtime.edge import nginx_values
from gpucluster.runtime.state import RAY_SESSION_LOGS, StateDir


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def operator(live) -> tuple[str, str]:
    return live.dashboard_user, live.dashboard_password


def ray_api(live, path: str, method: str = "GET") -> httpx.Response:
    """Ray's dashboard API on loopback, with Ray's token: what really happened behind nginx."""
    token = StateDir(live.state_dir).ray_token_file.read_text().strip()
    return httpx.request(
        method,
        f"{live.endpoints['ray_dashboard']}{path}",
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    )


def submitted_entrypoints(live) -> list[str]:
    response = ray_api(live, "/api/jobs/")
    assert response.status_code == 200, response.text
    return [job["entrypoint"] for job in response.json()]


def test_dashboard_needs_credentials(live):
    assert httpx.get(f"{live.base}/dashboard/", timeout=30).status_code == 401
    wrong = httpx.get(f"{live.base}/dashboard/", auth=(live.dashboard_user, "wrong"), timeout=30)
    assert wrong.status_code == 401


def test_dashboard_page_refuses_the_browser_without_credentials(live, browser):
    context = browser.new_context()
    assert context.request.get(f"{live.base}/dashboard/").status == 401
    page = context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        page.goto(f"{live.base}/dashboard/")  # headless Chromium gives up on a 401 challenge
    context.close()


def test_serve_view_lists_the_deployments_through_the_prefix(live, browser, artifacts):
    context = browser.new_context(
        http_credentials={"username": live.dashboard_user, "password": live.dashboard_password},
        viewport={"width": 1400, "height": 900},
    )
    page = context.new_page()
    page.goto(f"{live.base}/dashboard/#/serve", wait_until="networkidle")
    page.get_by_text(llm_deployment_name(live.model)).first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "dashboard-serve.png"), full_page=True)
    body = page.inner_text("body")
    assert "RUNNING" in body and "HEALTHY" in body
    context.close()


def test_every_view_the_guide_names_renders_and_the_edge_refuses_none_of_its_calls(
    live, browser, artifacts
):
    seen = browse(browser, live.base, *operator(live), screenshots=artifacts)
    assert set(VIEWS) <= set(seen.texts)
    assert llm_deployment_name(live.model) in seen.texts["Serve"]
    assert "RUNNING" in seen.texts["Serve"]
    assert len(seen.texts) > len(VIEWS), "no detail page (node, actor, deployment) was linked"
    assert seen.refused == []
    # the walk did reach the dashboard's API through the edge
    assert seen.calls[("GET", "/dashboard/api/serve/applications/")] == {200}
    assert seen.calls[("GET", "/dashboard/api/jobs/")] == {200}


def test_job_submission_through_the_edge_gets_403_and_creates_no_job(live, tmp_path):
    proof = tmp_path / "job-ran"
    entrypoint = f"touch {proof}"
    for path in ("/dashboard/api/jobs/", "/dashboard/api/jobs"):
        response = httpx.post(
            f"{live.base}{path}", json={"entrypoint": entrypoint}, auth=operator(live), timeout=30
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "dashboard_read_only"
    deploy = httpx.put(
        f"{live.base}/dashboard/api/serve/applications/",
        json={"applications": []},
        auth=operator(live),
        timeout=30,
    )
    assert deploy.status_code == 403  # a Serve deploy would replace the running application
    time.sleep(3)
    assert not proof.exists()
    assert entrypoint not in submitted_entrypoints(live)


def test_nothing_reaches_the_dashboard_without_the_password(live):
    """Ray's dashboard logs every request it serves: the log shows which calls got through."""
    marker = {
        name: f"probe{secrets.token_hex(6)}"
        for name in ("anonymous", "wrong", "refused", "allowed")
    }
    assert (
        httpx.get(f"{live.base}/dashboard/api/jobs/{marker['anonymous']}", timeout=30).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{live.base}/dashboard/api/jobs/{marker['wrong']}/stop",
            auth=(live.dashboard_user, "wrong"),
            timeout=30,
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{live.base}/dashboard/api/jobs/{marker['refused']}/stop",
            auth=operator(live),
            timeout=30,
        ).status_code
        == 403
    )
    # an allowed call (a job that does not exist: Ray's own 404) does reach it
    assert (
        httpx.get(
            f"{live.base}/dashboard/api/jobs/{marker['allowed']}", auth=operator(live), timeout=30
        ).status_code
        == 404
    )
    log = RAY_SESSION_LOGS / "dashboard.log"

    def logged() -> set[str]:
        text = log.read_text(errors="replace")
        return {name for name, value in marker.items() if value in text}

    assert eventually(lambda: "allowed" in logged(), timeout_s=20, interval_s=1), log
    assert logged() == {"allowed"}


def test_dashboard_write_lets_a_job_through(live, tmp_path):
    """The opt-in, rendered from the same template by the same code as the platform's edge, as
    an extra nginx in front of the same dashboard."""
    config = load_config(None, env=live.env)
    security = config.platform.security.model_copy(update={"dashboard_write": True})
    config = config.model_copy(
        update={"platform": config.platform.model_copy(update={"security": security})}
    )
    state = StateDir(live.state_dir)
    values = nginx_values(config, state, state.ray_token_file.read_text().strip())
    proof = tmp_path / "job-ran"
    with extra_edge(values, tmp_path / "edge") as base:
        response = httpx.post(
            f"{base}/dashboard/api/jobs/",
            json={"entrypoint": f"echo written > {proof}"},
            auth=operator(live),
            timeout=60,
        )
        assert response.status_code == 200, response.text
        job = response.json()["submission_id"]

    def finished() -> str | None:
        status = ray_api(live, f"/api/jobs/{job}").json()["status"]
        return status if status in ("SUCCEEDED", "FAILED", "STOPPED") else None

    try:
        assert eventually(finished, timeout_s=180, interval_s=2) == "SUCCEEDED"
        assert proof.read_text() == "written\n"
    finally:
        ray_api(live, f"/api/jobs/{job}", method="DELETE")
