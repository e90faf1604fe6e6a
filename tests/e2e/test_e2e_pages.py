"""End to end in a real headless chromium: the app starts with `streamlit run`, every page opens without
an error, and typing an expression on the Graph page renders its graph as SVG. Screenshots go to
`test-output/`. Fixtures (`app`) are in conftest.py; the Train and Generate pages can add steps there.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

PAGES = {
    "home": "",
    "graph": "graph",
    "tokenizer": "tokenizer",
    "attention": "attention",
    "train": "train",
    "systems": "systems",
    "generate": "generate",
}


def assert_no_error(app) -> None:
    """No Python exception box on the page."""
    exceptions = app.page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


@pytest.mark.parametrize("name", PAGES)
def test_every_page_opens(app, name):
    app.open(PAGES[name])
    title = app.page.locator("h1").first  # the page drew its title: not a blank page that raised nothing
    title.wait_for(timeout=60_000)
    assert title.inner_text().strip()
    assert_no_error(app)
    assert app.page.get_by_role("button", name="Deploy").count() == 0  # .streamlit/config.toml: minimal toolbar
    app.screenshot(f"page-{name}")


def test_graph_page_renders_a_typed_expression(app):
    app.page.set_viewport_size({"width": 1700, "height": 1000})  # room for the graphs side by side
    app.open("graph")
    box = app.page.get_by_role("textbox", name="Expression")
    box.fill("relu(x @ W) * y")
    declarations = app.page.get_by_role("textbox", name="Variables: shapes and optional values")
    declarations.fill("x: 2x3, W: 3x4, y: 2x4")
    declarations.press("Enter")
    start = time.perf_counter()
    app.wait_idle()
    # The SVG is laid out by the server's Graphviz: wait for a backward node.
    svg = app.drawings()
    svg.locator("text", has_text="∂out/∂W").first.wait_for(timeout=60_000)
    seconds = time.perf_counter() - start
    texts = svg.locator("text").all_text_contents()
    assert "t0 = matmul" in texts and "t1 = relu" in texts and "backward (gradients)" in texts
    assert_no_error(app)
    # the gradient check (out and three gradients) is drawn after the SVG: wait for it, never count at once
    app.page.get_by_text("✓", exact=True).nth(3).wait_for(timeout=60_000)
    declarations.blur()  # no focus ring in the screenshot
    app.screenshot("graph-page")
    print(f"typed expression rendered as SVG in {seconds:.2f} s")


def test_graph_page_shows_a_bad_expression_as_an_error(app):
    app.open("graph")
    box = app.page.get_by_role("textbox", name="Expression")
    box.fill("foo(x1)")
    box.press("Enter")
    app.wait_idle()
    app.page.get_by_text("unknown function 'foo'").first.wait_for()
    assert_no_error(app)


def test_graph_labels_stay_readable_at_1400_px(app):
    """Each section is drawn at its natural size: its 10 pt labels stay readable (they were 4-6 px tall
    when the sections were one drawing shrunk to the page's width). 1,024 px: test_e2e_narrow.py."""
    app.open("graph")  # the fixture's window is 1400 px wide
    app.page.get_by_role("button", name="attention head").click()
    app.wait_idle()
    svg = app.drawings()
    svg.locator("text", has_text="∂out/∂v").first.wait_for(timeout=60_000)
    heights = sorted(box["height"] for t in svg.locator("text").all()[:60] if (box := t.bounding_box()))
    median = heights[len(heights) // 2]
    print(f"drawing labels are {median:.1f} px tall at 1400 px")
    assert median >= 11, f"labels are {median:.1f} px tall"
    assert_no_error(app)


def test_a_hostile_expression_is_shown_literally(app):
    app.open("graph")
    box = app.page.get_by_role("textbox", name="Expression")
    box.fill("__import__('os')")
    box.press("Enter")
    app.wait_idle()
    app.page.get_by_text("unknown function '__import__'").first.wait_for()  # not a bold "import"
    assert_no_error(app)
