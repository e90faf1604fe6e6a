"""For every test here: drawings go to `st.graphviz_chart`, as on a server without Graphviz's `dot`.
The page tests then read each drawing's DOT (what a graph holds) from the chart; the server layout,
which turns that DOT into inline SVG, is tested on its own in test_common_drawing.py and in the browser."""

from __future__ import annotations

import pytest

from playground.common import drawing


@pytest.fixture(autouse=True)
def drawings_as_dot(monkeypatch):
    monkeypatch.setattr(drawing, "DOT", None)
