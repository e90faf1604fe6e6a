"""The app run headlessly with Streamlit's AppTest: every page renders without an exception, and the
Graph page draws `x1 * x2 + x1`, shows a bad or hostile input as an error (not an exception), fills the
input from an example, differentiates again, and keeps its input across page switches.
"""

from __future__ import annotations

import re
import shutil

import pytest
from apptest_helpers import PAGES, ROOT, open_page
from streamlit.testing.v1 import AppTest

from playground.graph.logic import EXAMPLES


def error_text(at: AppTest) -> str:
    """The first error as the reader sees it (the page escapes Markdown)."""
    return re.sub(r"\\(.)", r"\1", at.error[0].value)


def graph_dots(at: AppTest) -> list[str]:
    """The page's drawings: one per section (forward, backward, second order)."""
    return [chart.proto.spec for chart in at.get("graphviz_chart")]


def graph_dot(at: AppTest) -> str:
    """Every drawing's DOT together."""
    return "\n".join(graph_dots(at))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page):
    at = open_page(page)
    assert not at.exception
    assert at.title


def test_home_explains_each_page_and_its_example_opens_the_graph_page():
    at = open_page(PAGES[0])
    text = " ".join(m.value for m in at.markdown)
    assert "forward graph" in text and "Train" in " ".join(s.value for s in at.subheader)
    at.button(key="home_graph_example").click().run()
    assert not at.exception
    assert at.text_input(key="graph_expression").value == EXAMPLES["attention head"][0]
    assert "softmax" in graph_dot(at)


def test_graph_page_draws_x1_times_x2_plus_x1():
    at = open_page("graph")
    assert at.text_input(key="graph_expression").value == "x1 * x2 + x1"
    dot = graph_dot(at)
    for expected in ['"x1\\nf64[] = ', '"x2\\nf64[] = ', "t0 = mul\\n(x1*x2)", "t1 = add\\n((x1*x2)+x1)"]:
        assert expected in dot
    assert 'label="backward (gradients)"' in dot and "∂out/∂x1" in dot and "∂out/∂x2" in dot
    at.session_state["graph_text_open"] = True  # open the text form
    at.run()
    assert "t0: f64[] = mul(x1, x2)" in at.code[0].value
    check = at.table[1].value  # values table, then the gradient check
    assert list(check["compared"]) == ["out", "∂out/∂x1", "∂out/∂x2"] and all(check[""] == "✓")


def test_a_bad_expression_shows_an_error_and_the_page_keeps_running():
    at = open_page("graph")
    at.text_input(key="graph_expression").set_value("relu(x @ W) + foo(x)").run()
    assert not at.exception
    assert "unknown function 'foo'" in error_text(at)
    assert not at.get("graphviz_chart")
    at.text_input(key="graph_declarations").set_value("x: 2x3, W: 2x4").run()
    at.text_input(key="graph_expression").set_value("relu(x @ W)").run()
    assert "matmul cannot take inputs of shapes [2, 3] and [2, 4]" in error_text(at)
    at.text_input(key="graph_declarations").set_value("x: 2x3, W: 3x4").run()
    assert not at.error and not at.exception and "relu" in graph_dot(at)


def test_hostile_inputs_show_an_error_quickly_and_the_page_keeps_running():
    at = open_page("graph")
    at.text_input(key="graph_declarations").set_value("x: 1000x1000").run()
    at.text_input(key="graph_expression").set_value("gelu(" * 190 + "x" + ")" * 190).run()  # 19 GB before
    assert not at.exception and "tensor elements in all" in error_text(at)
    at.text_input(key="graph_expression").set_value("@".join(["x"] * 30)).run()  # 7.8 s before
    assert not at.exception and "multiply-adds" in error_text(at)
    at.text_input(key="graph_declarations").set_value("x: 2x²").run()  # a ValueError from int() before
    assert not at.exception and "cannot read the shape" in error_text(at)


def test_an_example_button_fills_the_input():
    at = open_page("graph")
    at.button(key="example_layernorm").click().run()
    assert at.text_input(key="graph_expression").value == EXAMPLES["layernorm"][0]
    assert at.text_input(key="graph_declarations").value == EXAMPLES["layernorm"][1]
    assert "t0 = layernorm" in graph_dot(at)


def test_differentiate_again_adds_the_second_order_graph():
    at = open_page("graph")
    at.selectbox[0].set_value("∂out/∂x1").run()
    forward, backward, second = graph_dots(at)  # each section its own drawing, laid out apart
    assert "cluster_0" in forward and "cluster_1" in backward and "cluster_2" in second
    assert "∂²out/∂x1∂x2" in second and "∂²out/∂x1∂x2" not in forward + backward
    assert "∂²out/∂x1∂x1" in list(at.table[1].value["compared"])


def test_the_input_survives_a_trip_to_another_page():
    at = open_page("graph")
    at.text_input(key="graph_expression").set_value("exp(x1) * 3").run()
    at.switch_page("train/view.py").run()
    at.switch_page("graph/view.py").run()
    assert at.text_input(key="graph_expression").value == "exp(x1) * 3"


def test_a_big_graph_draws_the_forward_part_until_asked():
    at = open_page("graph")
    at.text_input(key="graph_declarations").set_value("x: 4x4, W: 4x4, y: 4x4").run()
    at.text_input(key="graph_expression").set_value(" + ".join(["relu(x @ W) * y"] * 12)).run()
    assert not at.exception
    assert "Showing the forward graph only" in at.info[0].value
    assert len(graph_dots(at)) == 1 and "cluster_1" not in graph_dot(at)
    at.toggle[1].set_value(True).run()  # the first toggle is "Evaluate"
    assert not at.info and len(graph_dots(at)) == 2 and "cluster_1" in graph_dots(at)[1]


def test_exports_dot_and_svg_only_where_the_dot_program_exists(monkeypatch):
    at = open_page("graph")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download DOT"]
    has_dot = shutil.which("dot") is not None
    assert any(b.label == "Make SVG" for b in at.button) == has_dot
    if has_dot:  # the SVG is made on request (bounded, timed), then offered for download
        next(b for b in at.button if b.label == "Make SVG").click().run()
        assert not at.exception
        assert [b.proto.label for b in at.get("download_button")] == ["Download DOT", "Download SVG"]
    monkeypatch.setattr(shutil, "which", lambda name: None)  # AppTest runs the page in this process
    at.run()
    assert [b.proto.label for b in at.get("download_button")] == ["Download DOT"]
    assert any("needs the Graphviz `dot` program" in c.value for c in at.caption)


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
def test_a_graph_too_big_for_svg_says_so_instead_of_offering_it():
    at = open_page("graph")
    at.text_input(key="graph_declarations").set_value("x: 4x4, W: 4x4, y: 4x4").run()
    at.text_input(key="graph_expression").set_value(" + ".join(["relu(x @ W) * y"] * 60)).run()
    assert not at.exception and not any(b.label == "Make SVG" for b in at.button)
    assert any("SVG export is limited to 1,000 nodes" in c.value.replace("\\", "") for c in at.caption)


def test_errors_show_literally_with_the_argument_and_its_caret():
    at = open_page("graph")
    at.text_input(key="graph_expression").set_value("__import__('os')").run()
    assert not at.exception
    assert "\\_\\_import\\_\\_" in at.error[0].value  # escaped: Markdown would show a bold `import`
    assert at.code[0].value == "__import__('os')\n^"

    at.text_input(key="graph_declarations").set_value("x: 2x3").run()
    at.text_input(key="graph_expression").set_value("softmax(x, dim=5)").run()
    message = error_text(at)
    assert "softmax: dim=5 is out of range for an input of shape [2, 3]" in message
    assert at.code[0].value == "softmax(x, dim=5)\n" + " " * 15 + "^"

    at.text_input(key="graph_declarations").set_value("x: 2y3").run()  # the declarations are at fault
    assert "cannot read the shape" in error_text(at)
    assert at.code[0].value == "x: 2y3"


def test_the_text_form_and_the_generated_code_are_made_when_opened_and_wrap():
    at = open_page("graph")
    assert not at.expander[0].proto.expanded and not at.code  # collapsed, and nothing made for it
    at.session_state["graph_text_open"] = True  # the learner opens it
    at.run()
    text, code = at.code[0].value, at.code[1].value
    assert at.code[0].proto.wrap_lines and at.code[1].proto.wrap_lines  # never cut off in a narrow window
    assert "t0: f64[] = mul(x1, x2)" in text
    assert code.startswith("def graph(x1, x2):") and "t0 = mul(x1, x2)" in code
    at.text_input(key="graph_declarations").set_value("x: 4x4, W: 4x4, y: 4x4").run()
    at.text_input(key="graph_expression").set_value(" + ".join(["relu(x @ W) * y"] * 30)).run()
    assert not at.exception and at.code[0].value.count("\n") > 400  # it stays open, with every node


def test_the_project_config_turns_off_usage_statistics_the_deploy_button_and_the_per_run_work() -> None:
    """Issue 18, finding 12: Streamlit started from the project's root reads .streamlit/config.toml. Issue 21:
    nothing the server does after every script run that measured slower pages while others trained."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["toolbarMode"] == "minimal"  # no Deploy button, no developer options
    assert config["runner"]["postScriptGC"] is False  # a full gc.collect holding the GIL, ~120 ms with torch
    assert config["server"]["fileWatcherType"] == "none"  # a walk of sys.modules on the event loop


def test_the_server_serves_with_uvloop_and_httptools() -> None:
    """Issue 21: a first visit fetches ~120 script files through the browser's 6 connections. Streamlit's
    server (uvicorn) picks httptools and uvloop when installed (requirements.txt: streamlit[performance]);
    on the pure-Python parser and loop each file took ~50 ms to arrive and the Graph page's drawing showed
    1.2x later (docs/app.md, Page speed). Uvicorn's own choice, as Streamlit leaves it to uvicorn."""
    import importlib.util

    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = uvicorn.Config(app=None)
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    assert importlib.util.find_spec("uvloop") is not None  # streamlit.web.bootstrap runs its loop on it


def test_with_evaluate_off_the_caption_does_not_say_evaluated() -> None:
    """Issue 18, finding 12."""
    at = open_page("graph")
    assert any("built, evaluated and laid out" in c.value for c in at.caption)
    at.toggle[0].set_value(False).run()  # the first toggle is "Evaluate"
    assert not at.exception
    captions = [c.value for c in at.caption if " nodes · " in c.value]
    assert captions and "not evaluated" in captions[0] and ", evaluated" not in captions[0]
