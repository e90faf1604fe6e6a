"""The page-speed benchmarks' clock (bench/bench_pages.py): a page load or a click is timed in the browser,
from the navigation's start (or the click) to the frame that shows the element, not by when Playwright's
wait, which polls every 500 ms after its first 270 ms, happens to see it.

The page here is served by Playwright's routing (no server): it hides its elements, reveals each later,
and writes the moment of the reveal, on its own clock, to its local storage, which the test reads.
"""

from __future__ import annotations

import time

import pytest

from bench.bench_pages import VIEWPORT, WATCH, _shown, time_page

pytestmark = pytest.mark.browser

SITE = "http://bench.test"
# Present from the start but hidden (not visible), then shown a moment later; the reveal's time in ms
# (performance.now(): since the navigation's start, or since the click) is stored under the element's id.
PAGE = """<!doctype html><body>
<p id="late" style="visibility: hidden">late</p>
<button id="go" style="width: 80px; height: 30px">go</button>
<p id="after-click" style="display: none">after the click</p>
<script>
  const reveal = (id, since) => {
    localStorage.setItem(id, performance.now() - since);
    document.getElementById(id).style.cssText = "";
  };
  setTimeout(() => reveal("late", 0), 1000);
  document.getElementById("go").addEventListener("click", () => {
    const clicked = performance.now();
    setTimeout(() => reveal("after-click", clicked), 400);
  });
</script>
</body>"""
SLACK_S = 0.2  # a few frames on a loaded machine; Playwright's polling, 500 ms apart by then, adds more


def serve(context) -> None:
    """Serve PAGE at SITE in `context`."""
    context.route(f"{SITE}/**", lambda route: route.fulfill(body=PAGE, content_type="text/html"))


def revealed(context, element: str) -> float:
    """Seconds until the page revealed `element`, from its local storage (kept after its tab closed)."""
    (origin,) = context.storage_state()["origins"]
    return float({item["name"]: item["value"] for item in origin["localStorage"]}[element]) / 1000


def test_a_load_is_timed_to_the_frame_that_shows_the_element(browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        serve(context)
        shown = time_page(browser, SITE, "home", "#late", timeout_s=30, context=context)
        reveal = revealed(context, "late")
        # not while the element was there but hidden, and not when Playwright's wait came round to it
        assert reveal <= shown.seconds <= reveal + SLACK_S, (reveal, shown)
        assert shown.seconds <= shown.waited + 0.05  # this script's clock started before the navigation did
    finally:
        context.close()


def test_a_click_is_timed_from_the_click_to_the_frame_that_shows_the_element(browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        serve(context)
        tab = context.new_page()
        tab.goto(SITE)
        tab.locator("#late").wait_for(state="visible")
        tab.evaluate(WATCH, ["#after-click", True])  # as bench_pages.time_switch does
        start = time.perf_counter()
        tab.click("#go")
        shown = _shown(tab, "#after-click", start, timeout_s=30)
        reveal = revealed(context, "after-click")
        assert reveal <= shown.seconds <= reveal + SLACK_S, (reveal, shown)
    finally:
        context.close()
