"""Tests of what the pages share (playground/common/): widget state kept across pages (over a plain dict,
as the views use st.session_state), user text shown literally, and the chart helpers (thinning, 1-2-5
log ticks, pandas imported before any chart is drawn)."""

from __future__ import annotations

import math

from apptest_helpers import PAGES

from playground.common import charts, state
from playground.common.markdown import literal, shown


def test_a_widget_value_survives_its_page_being_hidden() -> None:
    saved: dict = {}
    assert state.restore(saved, "k", 3) == "k" and saved == {"k": 3, "saved_k": 3}  # the default at first
    saved["k"] = 7  # the user changes the widget
    state.remember(saved, "k")
    del saved["k"]  # Streamlit forgets a hidden page's widget
    state.restore(saved, "k", 3)
    assert saved["k"] == 7
    state.preset(saved, "k", 9)  # a one-click example, before the page is shown
    assert state.restore(saved, "k", 3) == "k" and saved["k"] == 9


def test_an_object_is_kept_per_session_and_made_once() -> None:
    made = []
    session: dict = {}
    first = state.kept(session, "model", lambda: made.append(1) or object())
    assert state.kept(session, "model", object) is first and made == [1]
    assert state.kept({}, "model", object) is not first  # another browser session: its own


def test_user_text_is_shown_literally() -> None:
    assert literal(":material/error: $x$ [a](b) *b* #") == "\\:material\\/error\\: \\$x\\$ \\[a\\]\\(b\\) \\*b\\* \\#"
    assert literal("a_b:c") == r"a\_b\:c" and shown(literal("**BOLD** [x](y)")) == "**BOLD** [x](y)"


def test_log_ticks_and_thinning() -> None:
    assert charts.log_ticks([0.0, math.nan]) == []
    assert charts.log_ticks([0.3, 2.0]) == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    assert charts.thin([1, 2], [3, 4]) == ([1, 2], [3, 4])
    xs, ys = charts.thin(range(5000), range(5000))
    assert len(xs) <= charts.MAX_POINTS + 1 and xs[-1] == ys[-1] == 4999


RACE = """
import threading
import playground.common.charts  # the router imports it when the app starts, before any session draws
from playground.train import figures

errors = []

def draw():
    for i in range(2000):  # while the import runs (a few draws more, to be sure)
        if i > 20 and not importer.is_alive():
            return
        try:
            figures.loss_figure([1, 2, 3], [1.0, 0.5, 0.25])
        except AttributeError as err:
            errors.append(str(err))
            return

importer = threading.Thread(target=lambda: __import__("pandas"))  # another session's st.dataframe
importer.start()
draw()
importer.join()
print("errors:", errors)
"""


def test_a_chart_drawn_while_another_thread_imports_pandas_does_not_fail() -> None:
    """The issue's race: plotly looks pandas up in sys.modules without importing it, so a chart drawn
    while another session's thread is still importing pandas found it half-initialized. common/charts.py
    imports pandas itself, so drawing waits for the import to finish. A fresh interpreter each time."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", RACE], cwd=root, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "errors: []" in out.stdout, out.stdout


def test_only_the_views_and_the_router_use_streamlit_and_no_logic_imports_a_view() -> None:
    """Each page's logic (and figures) runs without Streamlit; `view.py` files and Home.py draw."""
    import ast
    from pathlib import Path

    app = Path(__file__).resolve().parents[2] / "playground"
    drawing, importing_views = [], []
    for path in sorted(app.rglob("*.py")):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
        name = path.relative_to(app).as_posix()
        if name != "Home.py" and path.name != "view.py" and any(m.split(".")[0] == "streamlit" for m in modules):
            drawing.append(name)
        if any(m.endswith(".view") and m != "playground.common.view" for m in modules):
            importing_views.append(name)
    assert not drawing, f"Streamlit outside the views: {drawing}"
    assert not importing_views, f"modules importing a page's view: {importing_views}"
    assert {p.parent.name for p in app.glob("*/view.py")} == {"common", *PAGES}
