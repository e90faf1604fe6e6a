"""Shared by the AppTest page tests: the app's entry point, a page opened headlessly, and the Plotly
figures a page sent to the browser, by title."""

from __future__ import annotations

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
HOME = str(ROOT / "playground" / "Home.py")
PAGES = ["home", "graph", "tokenizer", "attention", "train", "systems", "generate"]  # each is `<page>/view.py`


def open_page(page: str, timeout: float = 90) -> AppTest:
    """The app opened on a page (by its folder: "train" is train/view.py); Home is where it starts.
    `timeout`: seconds per run, for a shared machine."""
    at = AppTest.from_file(HOME, default_timeout=timeout).run()
    if page != "home":
        at.switch_page(f"{page}/view.py").run()
    return at


def figures(at: AppTest) -> dict[str, dict]:
    """Every plotly chart on the page, by its title, as the figure JSON sent to the browser."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


WAIT_S = 120.0  # the longest a test waits for a training worker (a shared, busy machine)


def wait_for(session, condition, what: str) -> None:
    """Apply what a TrainingSession's worker sends until `condition()` holds."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_S} s"
        session.advance(wait_s=0.2)
