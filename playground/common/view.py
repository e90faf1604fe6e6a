"""The Streamlit side of `common/state.py`, shared by every page's view: widgets whose values survive a
trip to another page, and objects kept for this browser session; and graphs drawn at their natural size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from playground.common import drawing, state

T = TypeVar("T")


def _remember(key: str) -> None:
    state.remember(st.session_state, key)


def persistent(key: str, default: Any) -> dict[str, Any]:
    """Keyword arguments for a widget whose value survives page switches: `st.slider(..., **persistent(k, 3))`."""
    return {"key": state.restore(st.session_state, key, default), "on_change": _remember, "args": (key,)}


def preset(key: str, value: Any) -> None:
    """Set a persistent widget's value before its page is shown (a one-click example)."""
    state.preset(st.session_state, key, value)


def kept(key: str, make: Callable[[], T]) -> T:
    """The object this browser session keeps under `key`, made on first use."""
    return state.kept(st.session_state, key, make)


# Streamlit shrinks a graph's SVG to the column's width (`max-width: 100%`): a graph twice as wide as a
# 1,024 px window's column had 6 px labels. Drawn at its own size (10 pt labels read as 13 px), a wide
# graph scrolls sideways inside its box instead.
_NATURAL_SIZE = """<style>
[data-testid="stGraphVizChart"] { overflow-x: auto; }
[data-testid="stGraphVizChart"] svg { max-width: none; }
</style>"""


def graph_chart(dot: str, on_server: bool = True) -> None:
    """A Graphviz drawing at its natural size, scrolling sideways when wider than the page. Laid out on
    the server (drawing.py: no layout engine to load in the browser) unless `on_server` is False or this
    server has no `dot`; then the browser lays it out, with a fullscreen button."""
    svg = drawing.drawing_svg(dot) if on_server else None
    if svg is not None:  # Graphviz's own markup: every label in it is escaped
        st.markdown(f'<div class="graph-drawing" style="overflow-x: auto">{svg}</div>', unsafe_allow_html=True)
        return
    st.html(_NATURAL_SIZE)  # a style alone takes no room on the page
    st.graphviz_chart(dot)


def svg_chart(markup: str) -> None:
    """A chart drawn on the server as SVG (playground/common/svg.py: one line, its text escaped), at its
    natural size, scrolling sideways when wider than the page. No chart library is loaded in the browser."""
    st.markdown(f'<div class="svg-chart" style="overflow-x: auto">{markup}</div>', unsafe_allow_html=True)
