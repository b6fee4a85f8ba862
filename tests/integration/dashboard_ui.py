"""Browse the Ray dashboard through the edge as an operator would, recording every call it makes.

The live tests use it to check that every view renders and that the edge refuses none of the
viewing pages' calls. Run against a running platform, it prints those calls: the list nginx's
read-only rule (deploy/nginx/nginx.conf.template, `$dashboard_call_allowed`) is made from.

    .venv/bin/python tests/integration/dashboard_ui.py --password PASSWORD [--base URL]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The views the operator guide names, and a text each shows once its data arrived.
VIEWS = {
    "Overview": ("#/overview", "Cluster status and autoscaler"),
    "Jobs": ("#/jobs", "Job List"),
    "Serve": ("#/serve", "Application status"),
    "Cluster": ("#/cluster", "Node List"),
    "Actors": ("#/actors", "ALIVE"),
    "Metrics": ("#/metrics", "Metrics"),
    "Logs": ("#/logs", "Logs Viewer"),
}
DETAIL_PAGES = 30  # pages linked from the views (a node, an actor, a deployment, a log file)


@dataclass
class Browsing:
    """What a walk through the dashboard saw."""

    texts: dict[str, str] = field(default_factory=dict)  # by view or detail page
    calls: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # (method, path): statuses
    refused: list[str] = field(default_factory=list)  # calls answered 403

    def record(self, response) -> None:
        path = urlsplit(response.url).path
        request = response.request
        self.calls.setdefault((request.method, path), set()).add(response.status)
        if response.status == 403:
            self.refused.append(f"{request.method} {path}")


def launch(playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def show(page: Page, base: str, route: str, wait_for: str | None = None) -> str:
    page.goto(f"{base}/dashboard/{route}", wait_until="networkidle")
    if wait_for:
        page.get_by_text(wait_for).first.wait_for(timeout=30_000)
    else:
        time.sleep(1)
    return page.inner_text("body")


def browse(browser: Browser, base: str, user: str, password: str, screenshots=None) -> Browsing:
    """Open every view, then the detail pages they link to; `screenshots`: a directory."""
    seen = Browsing()
    context = browser.new_context(
        http_credentials={"username": user, "password": password},
        viewport={"width": 1400, "height": 900},
    )
    page = context.new_page()
    page.on("response", seen.record)
    details: list[str] = []
    for view, (route, marker) in VIEWS.items():
        seen.texts[view] = show(page, base, route, marker)
        if screenshots is not None:
            page.screenshot(path=str(screenshots / f"dashboard-{view.lower()}.png"), full_page=True)
        links = page.eval_on_selector_all("a", "links => links.map(a => a.getAttribute('href'))")
        details += [
            link for link in links if link and link.startswith("#/") and link not in details
        ]
    routes = {route for route, _ in VIEWS.values()}
    for route in [link for link in details if link not in routes][:DETAIL_PAGES]:
        seen.texts[route] = show(page, base, route)
    context.close()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:18080", help="the platform's nginx")
    parser.add_argument("--user", default="operator")
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        seen = browse(browser, args.base, args.user, args.password)
        browser.close()
    for (method, path), statuses in sorted(seen.calls.items()):
        print(f"{method:6} {path}  {sorted(statuses)}")
    for call in seen.refused:
        print(f"refused: {call}")


if __name__ == "__main__":
    main()
