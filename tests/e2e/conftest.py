"""Shared fixtures for the end-to-end browser tests (marker `browser`): the app served by a real
`streamlit run` on a free localhost port, and a headless Debian chromium driven by playwright.

A test asks for `app` and gets an `App`: `app.open("graph")` loads a page and waits until Streamlit
is idle, `app.page` is the playwright page, `app.screenshot("name")` saves `test-output/name.png`.
Without /usr/bin/chromium the tests skip, unless PLAYGROUND_REQUIRE_BROWSER=1 (CI) makes them fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 90  # the machine is shared: starting streamlit and importing torch can be slow


def _require_browser() -> None:
    """Skip (or, in CI, fail) when the browser or playwright is missing."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -r requirements.txt)"
    if missing:
        if os.environ.get("PLAYGROUND_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PLAYGROUND_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """`streamlit run playground/Home.py` on a free port; yields its base URL, stops it afterwards."""
    _require_browser()
    port = _free_port()
    OUTPUT.mkdir(exist_ok=True)
    log = open(OUTPUT / "streamlit-server.log", "w")  # noqa: SIM115  (closed below)
    command = [sys.executable, "-m", "streamlit", "run", "playground/Home.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the streamlit server did not start; see {OUTPUT / 'streamlit-server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# Every chart's title, as a JavaScript expression: Plotly's from its own layout, an SVG chart's from its <title>
_TITLES = """[...document.querySelectorAll('.js-plotly-plot, .svg-chart > svg')].map(chart => chart.layout
    ? chart.layout.title.text.replace(/<[^>]*>/g, '') : chart.querySelector('title').textContent)"""


@dataclass
class App:
    """A browser page on the running app, with the few steps every page test needs."""

    page: object  # playwright.sync_api.Page
    url: str

    def open(self, path: str = "") -> None:
        """Load a page ("" is Home; "graph", "train", "generate"), wait for its title and its run."""
        self.page.goto(f"{self.url}/{path}")
        self.page.wait_for_selector('[data-testid="stMain"] h1', timeout=60_000)
        self.wait_idle()

    def drawings(self):
        """The page's Graphviz drawings' <svg>s: inline, laid out by the server's `dot`, or laid out by the
        browser where the server has none (playground/common/drawing.py)."""
        return self.page.locator('.graph-drawing svg, [data-testid="stGraphVizChart"] svg')

    def chart_titles(self) -> list[str]:
        """Every chart's title in page order: Plotly's (read from its own layout) and the server's SVG charts'
        (playground/common/svg.py, their <title>)."""
        return self.page.evaluate(f"() => {_TITLES}")

    def wait_for_charts(self, *prefixes: str, timeout_s: float = 60) -> list[str]:
        """Wait until for each prefix some chart's title starts with it, then return every title; fail
        naming the titles shown. A page draws its charts one after another, the last maybe after the text a
        test waited for (a stressed CI run read the Generate page between two of its heatmaps)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout  # imported when the browser runs

        try:
            self.page.wait_for_function(
                f"(prefixes) => {{ const titles = {_TITLES}; "
                "return prefixes.every(p => titles.some(t => t.startsWith(p))) }",
                arg=list(prefixes), timeout=timeout_s * 1000,
            )  # fmt: skip
        except PlaywrightTimeout:
            raise AssertionError(f"no chart titled {prefixes} after {timeout_s} s: {self.chart_titles()}") from None
        return self.chart_titles()

    def wait_idle(self, timeout_s: float = 60) -> None:
        """Wait until Streamlit has finished running the script: its 'running' status widget has
        stayed away for a moment (it shows up a little after a rerun starts)."""
        running = self.page.locator('[data-testid="stStatusWidget"]')
        deadline, quiet_since = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            if running.count():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.6:
                return
            self.page.wait_for_timeout(100)
        raise TimeoutError(f"the app was still running after {timeout_s} s")

    def screenshot(self, name: str, whole: bool = True, max_height: int = 4000) -> Path:
        """Save `test-output/<name>.png`. Streamlit scrolls inside its main area, so a full-page
        screenshot needs the viewport grown to that area's height (`whole`), then set back."""
        path = OUTPUT / f"{name}.png"
        size = self.page.viewport_size
        if whole:
            height = self.page.evaluate(
                """() => { const main = document.querySelector('[data-testid="stMain"]');
                           return main ? main.scrollHeight : document.body.scrollHeight; }"""
            )
            self.page.set_viewport_size(
                {"width": size["width"], "height": min(max(height, size["height"]), max_height)}
            )
            self.page.wait_for_timeout(500)  # let charts re-lay out at the new size
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(size)
        return path


@pytest.fixture(scope="session")
def browser(app_url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def app(browser, app_url: str) -> Iterator[App]:
    """A fresh browser page (its own Streamlit session) on the running app."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield App(page, app_url)
    context.close()
