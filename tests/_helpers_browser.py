"""Open a report in headless Chromium (Debian's, driven by Playwright) and see what it drew."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass(frozen=True)
class PageResult:
    plots: int
    drawn_svgs: int
    errors: list[str]
    external_requests: list[str]
    text: str
    visible: str = ""


def open_report(path: Path) -> PageResult:
    """Load ``path`` offline: console errors, failed or external requests, and plotly divs drawn."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    external: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: external.append(req.url)
                    if not req.url.startswith(("file:", "data:", "blob:", "about:")) else None)
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            if page.locator(".plot-container").count():
                page.wait_for_selector("svg.main-svg", timeout=30_000)
            result = PageResult(
                plots=page.locator(".plot-container").count(),
                drawn_svgs=page.locator(".plot-container svg.main-svg").count(),
                errors=errors,
                external_requests=external,
                text=page.content(),
                visible=page.inner_text("body"),
            )
        finally:
            browser.close()
    return result
