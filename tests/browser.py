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
