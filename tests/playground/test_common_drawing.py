"""Drawings laid out on the server (playground/common/drawing.py): `dot` turns a drawing's DOT into one
line of inline SVG with every label escaped, each DOT is laid out once for all sessions, and without
`dot` (or when it fails) the page hands the DOT to the browser; the Graph page shows the server's SVG."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest
from apptest_helpers import open_page

from playground.common import drawing
from playground.graph.logic import DRAW_LIMIT

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def with_dot(monkeypatch):
    """The server's `dot` (this folder's conftest hides it from the page tests)."""
    monkeypatch.setattr(drawing, "DOT", shutil.which("dot"))
    drawing._laid_out.cache_clear()
    yield
    drawing._laid_out.cache_clear()


@needs_dot
def test_a_drawing_is_one_line_of_svg_with_its_labels_escaped(with_dot):
    hostile = 'a<script>alert(1)</script>\\n\\n" onload="x'  # DOT's \n: a line break inside the label
    svg = drawing.drawing_svg(f'digraph {{ n0 [label="{hostile.replace(chr(34), chr(92) + chr(34))}"]; n0 -> n1 }}')
    assert svg is not None and svg.startswith("<svg") and "\n" not in svg and "\r" not in svg
    root = ET.fromstring(svg)  # well-formed, so the browser reads it as one element
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "a<script>alert(1)</script>" in texts  # shown as text: escaped in the markup
    assert "<script" not in svg and "&lt;script&gt;" in svg
    assert not root.findall(f".//{SVG}script")


@needs_dot
def test_the_same_drawing_is_laid_out_once_for_every_session(with_dot):
    dot = "digraph { x -> y }"
    first = drawing.drawing_svg(dot)
    hits = drawing._laid_out.cache_info().hits
    assert drawing.drawing_svg(dot) is first and drawing._laid_out.cache_info().hits == hits + 1


def test_without_dot_or_when_it_fails_the_browser_gets_the_dot(monkeypatch):
    assert drawing.drawing_svg("digraph { x -> y }") is None  # no dot (this folder's conftest)
    monkeypatch.setattr(drawing, "DOT", "false")  # a program that fails
    drawing._laid_out.cache_clear()
    assert drawing.drawing_svg("digraph { x -> y }") is None
    monkeypatch.setattr(drawing, "DOT", "/nonexistent/dot")  # a path that is gone
    assert drawing.drawing_svg("digraph { x -> y }") is None
    if shutil.which("dot"):  # a failure is not remembered: the same drawing lays out once dot works
        monkeypatch.setattr(drawing, "DOT", shutil.which("dot"))
        assert drawing.drawing_svg("digraph { x -> y }").startswith("<svg")
    drawing._laid_out.cache_clear()


def test_a_drawing_that_takes_too_long_is_stopped(monkeypatch, tmp_path):
    slow = tmp_path / "slow-dot"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(drawing, "DOT", str(slow))
    monkeypatch.setattr(drawing, "LAYOUT_TIMEOUT_S", 0.5)
    drawing._laid_out.cache_clear()
    assert drawing.drawing_svg("digraph { slow }") is None
    drawing._laid_out.cache_clear()


def drawings(at) -> list[str]:
    """The SVG drawings the page sent, as Markdown blocks."""
    return [m.value for m in at.markdown if 'class="graph-drawing"' in m.value]


@needs_dot
def test_the_graph_page_shows_each_section_as_server_svg(with_dot):
    at = open_page("graph")
    shown = drawings(at)
    assert len(shown) == 2 and not at.get("graphviz_chart")  # forward, backward
    assert "mul" in shown[0] and "backward (gradients)" in shown[1]
    for markdown in shown:
        ET.fromstring(markdown)  # one well-formed block: a <div> holding the <svg>


@needs_dot
def test_a_graph_past_the_draw_limit_is_laid_out_by_the_browser(with_dot):
    at = open_page("graph")
    at.text_input(key="graph_declarations").set_value("x: 2x2").run()
    expression = " + ".join(["relu(x)"] * (DRAW_LIMIT // 4))
    at.text_input(key="graph_expression").set_value(expression).run()
    assert not at.exception and not at.error
    draw_all = next(t for t in at.toggle if t.label.startswith("Draw all"))
    draw_all.set_value(True).run()
    assert len(at.get("graphviz_chart")) == 2 and not drawings(at)  # forward and backward, in the browser
