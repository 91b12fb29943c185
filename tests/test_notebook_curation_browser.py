"""The curation notebook as a person uses it: JupyterLab in headless Chromium, sliders dragged.

Starts JupyterLab on 127.0.0.1 (free port, random token, no browser) over a copy of
``notebooks/02_curation.ipynb`` with ``METAHUMAN_ROOT`` pointing at the small demo profile,
runs every cell, drags the recent-window slider and the old-sample slider, and checks that the
preview counts and the coverage chart change. A screenshot is kept under ``test-artifacts/``.
Every wait is bounded and the server is always stopped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
SERVER_START_S = 90
RUN_ALL_S = 180
UPDATE_S = 60

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(480),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make system-deps)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {deadline_s} s")


@pytest.fixture
def lab(tmp_path: Path, demo_root: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server over a copy of the notebook; yields (base url, token)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(REPO / "notebooks" / "02_curation.ipynb", notebooks)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, METAHUMAN_ROOT=str(demo_root), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"), IPYTHONDIR=str(tmp_path / "ipython"))
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # containers run tests as root; Jupyter refuses that without the flag
        command.append("--allow-root")
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "lab.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            try:
                _wait_for_server(f"{base}/api/status?token={token}", process, SERVER_START_S)
            except (RuntimeError, TimeoutError) as exc:
                log.flush()
                tail = (tmp_path / "lab.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{exc}; server log:\n{tail}") from exc
            yield base, token
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its kernels (its own process group), waiting a bounded time."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text(timeout=UPDATE_S * 1000)


def _trace_y(page, index: int) -> list[float]:
    return page.evaluate(
        "(i) => Array.from(document.querySelector('.mh-coverage .js-plotly-plot').data[i].y)", index)


def _drag_to(page, slider_class: str, fraction: float) -> None:
    """Drag a slider's handle with the mouse to ``fraction`` of its track, as a person does."""
    handle = page.locator(f".{slider_class} .noUi-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    track = page.locator(f".{slider_class} .noUi-target").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    target = track["x"] + fraction * track["width"]
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x + (target - x) * step / 10, y)
    page.mouse.up()


def _wait_changed(page, selector: str, before: str) -> str:
    page.wait_for_function(
        "([s, b]) => { const e = document.querySelector(s); return e && e.innerText !== b; }",
        arg=[selector, before], timeout=UPDATE_S * 1000)
    return _text(page, selector)


def test_sliders_update_preview_and_chart(lab):
    from playwright.sync_api import sync_playwright

    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UPDATE_S * 1000)
            page.goto(f"{base}/lab/tree/02_curation.ipynb?token={token}")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=SERVER_START_S * 1000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=SERVER_START_S * 1000)
            page.wait_for_function(
                "() => { const w = window.jupyterapp.shell.currentWidget;"
                " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
                " && w.sessionContext.session.kernel.status === 'idle'; }", timeout=SERVER_START_S * 1000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".mh-days .noUi-handle", timeout=RUN_ALL_S * 1000)
            page.wait_for_selector(".mh-coverage .js-plotly-plot", timeout=UPDATE_S * 1000)
            page.wait_for_function(
                "() => document.querySelector('.mh-coverage .js-plotly-plot').data.length === 4")

            recent_before, old_before = _text(page, ".mh-recent-selected"), _text(page, ".mh-old-selected")
            recent_y = _trace_y(page, 1)
            _drag_to(page, "mh-days", 0.5)
            recent_after = _wait_changed(page, ".mh-recent-selected", recent_before)
            page.wait_for_function(
                "(b) => JSON.stringify(Array.from(document.querySelector('.mh-coverage .js-plotly-plot')"
                ".data[1].y)) !== b", arg=str(recent_y).replace(" ", ""), timeout=UPDATE_S * 1000)
            assert int(recent_after.replace(",", "")) != int(recent_before.replace(",", ""))

            old_now = _text(page, ".mh-old-selected")
            old_y = _trace_y(page, 2)
            _drag_to(page, "mh-old", 0.2)
            old_after = _wait_changed(page, ".mh-old-selected", old_now)
            assert int(old_after.replace(",", "")) < int(old_now.replace(",", ""))
            page.wait_for_function(
                "(b) => JSON.stringify(Array.from(document.querySelector('.mh-coverage .js-plotly-plot')"
                ".data[2].y)) !== b", arg=str(old_y).replace(" ", ""), timeout=UPDATE_S * 1000)
            assert _trace_y(page, 2) != old_y and old_before
            page.locator(".mh-coverage").first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "02_curation_sliders.png"), full_page=False)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "02_curation_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
