"""Shared by the AppTest page tests: the app's entry point, a page opened headlessly, and the Plotly
figures and SVG charts a page sent to the browser, by title."""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    """Every plotly chart on the page, by its title, as the figure JSON sent to the browser, its numpy
    arrays (sent as base64: `{"dtype": "f8", "bdata": ...}`) read back into lists as plotly.js reads them."""
    specs = [json.loads(chart.proto.spec, object_hook=_typed_array) for chart in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def _typed_array(obj: dict):
    if set(obj) == {"dtype", "bdata"}:
        return np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"])).tolist()
    return obj


SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class SvgChart:
    """A chart the page drew on the server as SVG (playground/common/svg.py), read back from its markup."""

    root: ET.Element
    title: str
    x: list[str]  # the column labels shown (rotated), in order
    y: list[str]  # the row labels shown, top to bottom
    cells: dict[tuple[int, int], str]  # (row, column) of each drawn cell or bar -> its hover text
    marks: list[tuple[int, int]]  # (row, column) under each × mark
    width: int
    height: int
    grid: tuple[int, int]  # (rows, columns) of a heatmap, drawn cells or not

    def marked(self) -> list[str]:
        """The hover text of the cell under each × mark, top row first."""
        return [self.cells[mark] for mark in sorted(self.marks)]


def svg_charts(at: AppTest) -> dict[str, SvgChart]:
    """Every SVG chart on the page, by its title."""
    charts = {}
    for block in (m.value for m in at.markdown if 'class="svg-chart"' in m.value):
        root = ET.fromstring(block).find(f"{SVG}svg")
        rects = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None and r.get("class") != "floor"]
        texts = [t for t in root.iter(f"{SVG}text") if t.get("class") != "mark"]
        rotated = [t.text for t in texts if "rotate(-60" in (t.get("transform") or "")]
        rows = [t.text for t in texts if t.get("text-anchor") == "end" and t.get("transform") is None]
        if root.get("class") == "bars":  # one bar a row, top to bottom
            rects.sort(key=lambda r: float(r.get("y")))
            cells = {(i, 0): r.find(f"{SVG}title").text for i, r in enumerate(rects)}
            width = height = 1.0
        else:  # cells of one size, from the grid's corner
            width, height = (float(rects[0].get(a)) for a in ("width", "height")) if rects else (1.0, 1.0)
            cells = {
                (round(float(r.get("y")) / height), round(float(r.get("x")) / width)): r.find(f"{SVG}title").text
                for r in rects
            }
        marks = [
            (int(float(m.get("y")) // height), int(float(m.get("x")) // width))
            for m in root.iter(f"{SVG}text")
            if m.get("class") == "mark"
        ]
        floor = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "floor"]  # the whole grid, when drawn
        if floor:
            grid = (round(float(floor[0].get("height")) / height), round(float(floor[0].get("width")) / width))
        else:
            grid = (max((i for i, _ in cells), default=-1) + 1, max((j for _, j in cells), default=-1) + 1)
        title, size = root.find(f"{SVG}title").text, (int(root.get("width")), int(root.get("height")))
        charts[title] = SvgChart(root, title, rotated, rows, cells, marks, *size, grid)
    return charts


WAIT_S = 120.0  # the longest a test waits for a training worker (a shared, busy machine)


def wait_for(session, condition, what: str) -> None:
    """Apply what a TrainingSession's worker sends until `condition()` holds."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_S} s"
        session.advance(wait_s=0.2)
