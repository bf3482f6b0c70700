"""Headless Chromium (Debian's `chromium`) through Playwright: log in through Airflow's own login form and
find a plugin page inside Airflow's frame, as a user would."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def login(browser: Any, url: str, user: str, password: str, **context: Any) -> Any:
    """A new page (`context`: viewport, color_scheme …) logged in to the Airflow at `url`."""
    page = browser.new_context(viewport={"width": 1500, "height": 900}, **context).new_page()
    page.goto(f"{url}/auth/login/")
    page.fill("input[name=username]", user)
    page.fill("input[type=password]", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/", timeout=60_000)
    return page


def plugin_frame(page: Any, selector: str, tries: int = 120) -> Any:
    """The frame (Airflow shows plugin pages in an iframe) once it holds `selector`. Playwright's own wait:
    it keeps processing the page's events meanwhile."""
    for _ in range(tries):
        page.wait_for_timeout(500)
        frame = next((f for f in page.frames[1:] if f.query_selector(selector)), None)
        if frame is not None:
            return frame
    raise AssertionError(f"no frame with {selector}: {[f.url for f in page.frames]}")
