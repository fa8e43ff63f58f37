"""Open a page in headless Debian Chromium through Playwright, for tests that check what
a person would see. Never downloads a browser: it drives /usr/bin/chromium (or
$MEDLAKE_CHROMIUM)."""
import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("MEDLAKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def available() -> bool:
    return Path(CHROMIUM).exists()


def open_page(url_or_path, screenshot=None) -> str:
    """Load a URL or a local file, optionally save a screenshot, return the page's HTML
    as rendered (after scripts ran)."""
    from playwright.sync_api import sync_playwright

    url = str(url_or_path)
    if "://" not in url:
        url = Path(url).resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(url, wait_until="load")
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
            return page.content()
        finally:
            browser.close()
