"""Headless Chromium for tests that look at pages: Debian's /usr/bin/chromium driven by
Playwright's bundled driver. Nothing is downloaded (never `playwright install`)."""
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MEDLAKE_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# Test artifacts (gitignored); CI can keep them.
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"


@contextmanager
def page(width: int = 1600, height: int = 1000) -> Iterator["playwright.sync_api.Page"]:
    """A fresh browser page; the browser is closed afterwards."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium "
                    "(apt-get install -y chromium; .ci/run does) or set MEDLAKE_CHROMIUM.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def screenshot(pg, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    pg.screenshot(path=str(path))
    return path


def open_page(url_or_path, screenshot: Path | None = None) -> str:
    """Load a URL or a local file (e.g. a generated HTML report), optionally save a
    full-page screenshot, and return the HTML as rendered (after scripts ran)."""
    url = str(url_or_path)
    if "://" not in url:
        url = Path(url).resolve().as_uri()
    with page() as pg:
        pg.goto(url, wait_until="load")
        if screenshot:
            pg.screenshot(path=str(screenshot), full_page=True)
        return pg.content()
