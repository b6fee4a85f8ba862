"""The Ray dashboard behind nginx at /dashboard/, in headless Chromium, with operator credentials."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from gpucluster.config.names import llm_deployment_name

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


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
