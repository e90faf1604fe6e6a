"""Benchmark: how long a page of the app takes to show its drawing in Chromium, from navigation until the
drawing is visible: the Graph page's SVG (laid out by `dot` on the server) and the Generate page's first heatmap,
beside the Home page's title (the floor: Streamlit's own page load). Three kinds of visit (`--visit`):

- `first`: each load in a fresh browser context, so a new Streamlit session and an empty browser cache: a
  learner opening the app for the first time (every script chunk fetched and compiled);
- `return`: each load in a new tab of one browser context per side that has loaded the app before: a new
  session, but the browser's cache holds Streamlit's files (served with a one-year lifetime), as for a
  learner who comes back or opens a second tab;
- `switch`: a tab already showing the Home page clicks the page's link in the sidebar: no page load at
  all, the way a learner moves between pages (timed from the click).

Times are the browser's own clock (`performance.now()`): from the navigation's start, or the click, until the
frame that shows the drawing is on the screen (see WATCH). Each line also gives when Playwright's `wait_for`
returned, on this script's clock: its polling, 500 ms apart after the first 270 ms, added up to half a
second to the figures recorded before 2026-12-07's afternoon (docs/app.md, Page speed).

With `--ref REV` a second server runs that git revision (archived to a temporary folder) and the two
sides alternate load by load, so both see the same machine load; the ratio is ours / ref.

    .venv/bin/python bench/bench_pages.py [--repeats 7] [--visit first,return,switch] [--ref HEAD~1]
        [--pages graph,generate] [--ref-without httptools,uvloop,orjson]

`--ref-without` runs the reference server without some installed packages (stand-ins that fail to import
come first on its path): `--ref HEAD --ref-without httptools,uvloop,orjson` times what Streamlit's
`performance` extra brings.

`time_page` is the reusable part: a load benchmark can call it while other sessions train.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# page url path -> what "drawn" means there (a CSS selector that becomes visible)
PAGES = {
    "home": '[data-testid="stMain"] h1',  # the floor: Streamlit's own load and a first script run, no chart
    "graph": '.graph-drawing svg text, [data-testid="stGraphVizChart"] svg text',  # the SVG has its labels
    "generate": ".svg-chart svg.heatmap, .js-plotly-plot .hm",  # the first heatmap (SVG; Plotly before)
}
START_S = 90  # importing torch on a shared machine can be slow
VIEWPORT = {"width": 1400, "height": 1000}
VISITS = ("first", "return", "switch")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, log: Path, hidden: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`streamlit run playground/Home.py` of the tree at `root` (its packages first on the path, after
    `hidden`'s, see `hide`); returns the process and its URL once healthy."""
    port = _free_port()
    path = [str(hidden)] if hidden else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*path, str(root)]))  # before this checkout's install
    command = [sys.executable, "-m", "streamlit", "run", "playground/Home.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the server at {root} did not start; see {log}")


# Run in the page: from a start (the navigation's, or a click's) until the first element matching the
# selector is visible (a box with a size, not hidden: Playwright's "visible") and painted, on the browser's
# own clock: checked before each frame, read at the start of the next one (the frame that showed it is on
# the screen). Timing Playwright's wait instead would add its polling: `wait_for` looks 0, 20, 50, 100 and
# 100 ms apart, then every 500 ms, so a drawing shown at 1.25 s is seen at ~1.35 or ~1.85 s.
WATCH = """([selector, onClick]) => {
  const visible = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility === "visible";
  };
  const watch = (start) => {
    const frame = () => {
      const el = document.querySelector(selector);
      if (el && visible(el)) requestAnimationFrame(() => { window.__shownAfterMs = performance.now() - start; });
      else requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  };
  if (onClick) document.addEventListener("click", () => watch(performance.now()), {capture: true, once: true});
  else watch(0);  // performance.now() counts from the navigation's start
}"""


class Shown(NamedTuple):
    seconds: float  # the browser's clock: from the navigation's start (or the click) to the frame showing it
    waited: float  # this script's clock until Playwright's wait_for returned (its polling included)


def _shown(tab, selector: str, start: float, timeout_s: float) -> Shown:
    tab.locator(selector).first.wait_for(state="visible", timeout=timeout_s * 1000)
    waited = time.perf_counter() - start
    shown_ms = tab.wait_for_function("() => window.__shownAfterMs", polling="raf", timeout=timeout_s * 1000)
    return Shown(shown_ms.json_value() / 1000, waited)


def time_page(browser, url: str, page: str, selector: str, timeout_s: float = 60, context=None) -> Shown:
    """How long `url/page` takes to show `selector` (see `Shown`): in a new browser context (a first visit),
    or in a new tab of `context` (a return visit: its cache is kept)."""
    own = context is None
    if own:
        context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    try:
        tab.add_init_script(f"({WATCH})({json.dumps([selector, False])})")  # runs as the document starts
        start = time.perf_counter()
        tab.goto(f"{url}/{'' if page == 'home' else page}", wait_until="commit")  # Home, the default page, is /
        return _shown(tab, selector, start, timeout_s)
    finally:
        tab.close()
        if own:
            context.close()


def time_switch(context, url: str, page: str, selector: str, timeout_s: float = 60) -> Shown:
    """How long, from clicking `page`'s sidebar link in a tab that shows the Home page, until `selector` is
    visible (see `Shown`): moving between pages within one session (no page load)."""
    tab = context.new_page()
    try:
        tab.goto(f"{url}/", wait_until="commit")
        tab.locator(PAGES["home"]).first.wait_for(state="visible", timeout=timeout_s * 1000)
        link = tab.locator(f'[data-testid="stSidebarNavLink"][href$="/{page}"]').first
        link.wait_for(state="visible", timeout=timeout_s * 1000)
        tab.evaluate(WATCH, [selector, True])
        start = time.perf_counter()
        link.click()
        return _shown(tab, selector, start, timeout_s)
    finally:
        tab.close()


def time_visit(browser, kept, url: str, page: str, visit: str, timeout_s: float = 60) -> Shown:
    """One timed visit of `page` (see the module's docstring): `kept` is the browser context that return and
    switch visits reuse."""
    if visit == "switch":
        return time_switch(kept, url, page, PAGES[page], timeout_s)
    return time_page(browser, url, page, PAGES[page], timeout_s, context=kept if visit == "return" else None)


def visit_pairs(visits: list[str], pages: list[str]) -> list[tuple[str, str]]:
    """The (visit, page) pairs to time, visits first: every pair except a switch to Home, where a switch
    starts."""
    return [(v, p) for v in visits for p in pages if not (v == "switch" and p == "home")]


def hide(packages: list[str], into: Path) -> Path:
    """A folder of stand-ins that fail to import as if `packages` were not installed (ModuleNotFoundError,
    which uvicorn, Streamlit and Plotly take as "not there"): put first on a server's path."""
    into.mkdir()
    for name in packages:
        (into / f"{name}.py").write_text(f"raise ModuleNotFoundError({name!r} + ' hidden by bench_pages')\n")
    return into


def archive(rev: str, into: Path) -> Path:
    """The files of git revision `rev` under `into` (git archive: the working tree is not touched)."""
    tar = into / "ref.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(tar), rev], cwd=ROOT, check=True)
    with tarfile.open(tar) as t:
        t.extractall(into / "ref", filter="data")
    return into / "ref"


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def waited(shown: list[Shown]) -> str:
    return f"median {statistics.median(t.waited for t in shown):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed loads per page, visit and side (default 7)")
    parser.add_argument("--ref", help="a git revision to compare with (served side by side, alternated)")
    parser.add_argument("--pages", default=",".join(PAGES), help=f"comma-separated, of {', '.join(PAGES)}")
    parser.add_argument(
        "--ref-without",
        default="",
        help="comma-separated installed packages the --ref server runs without, e.g. httptools,uvloop,orjson",
    )
    parser.add_argument("--visit", default="first", help=f"comma-separated, of {', '.join(VISITS)} (default first)")
    args = parser.parse_args()
    if args.ref_without and not args.ref:
        parser.error("--ref-without needs --ref (HEAD compares this checkout with and without the packages)")
    pages, visits = args.pages.split(","), args.visit.split(",")
    timed = visit_pairs(visits, pages)
    for name, given, known in (("--pages", pages, PAGES), ("--visit", visits, VISITS)):
        if unknown := [x for x in given if x not in known]:
            parser.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        roots = {"ours": ROOT}
        if args.ref:
            roots["ref"] = archive(args.ref, Path(tmp))
        hidden = {"ref": hide(args.ref_without.split(","), Path(tmp) / "hidden")} if args.ref_without else {}
        servers = {
            side: start_server(root, Path(tmp) / f"{side}.log", hidden.get(side)) for side, root in roots.items()
        }
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        kept = {side: browser.new_context(viewport=VIEWPORT) for side in servers}  # return and switch visits
        try:
            times: dict[tuple[str, str, str], list[Shown]] = {}
            for repeat in range(args.repeats + 1):  # round 0 warms each server and the kept contexts' caches
                for visit, page in timed:
                    for side in servers if repeat % 2 else reversed(list(servers)):  # alternate who goes first
                        shown = time_visit(browser, kept[side], servers[side][1], page, visit)
                        if repeat:
                            times.setdefault((visit, page, side), []).append(shown)
            print(f"time until the drawing shows, the browser's clock ({args.repeats} loads each after 1 warm-up);")
            print("  waited: until Playwright's wait_for returned (this script's clock, its polling included)")
            for visit, page in timed:
                ours = times[visit, page, "ours"]
                line = f"{visit:<7}{page:<9} ours {spread([t.seconds for t in ours])}; waited {waited(ours)}"
                if args.ref:
                    ref = times[visit, page, "ref"]
                    ratios = [a.seconds / b.seconds for a, b in zip(ours, ref)]
                    line += f"\n{'':<16} ref {args.ref} {spread([t.seconds for t in ref])}; waited {waited(ref)}"
                    line += f"\n{'':<16} ours / ref: median {statistics.median(ratios):.2f} "
                    line += f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
                print(line)
        finally:
            browser.close()
            for server, _ in servers.values():
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:  # a loaded machine: do not leave it running
                    server.kill()


if __name__ == "__main__":
    main()
