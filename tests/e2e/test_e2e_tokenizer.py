"""End to end in a real headless chromium (marker `browser`, fixtures in conftest.py): type text on the
Tokenizer page and see GPT-2's chips with their hover text, train a BPE on the story sample, then step the
merge explorer. Screenshot: `test-output/tokenizer-page.png`.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def assert_no_error(app) -> None:
    exceptions = app.page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def test_chips_then_train_and_explore(app):
    page = app.page
    app.open("tokenizer")
    assert_no_error(app)
    box = page.get_by_role("textbox", name="Text")
    box.fill("Hello world, hello tokens!")
    box.press("Control+Enter")  # apply the text area's value
    app.wait_idle()
    chips = page.locator(".tok-chip")
    # Wait for the new text's chips: on a loaded machine the rerun can start after wait_idle has returned,
    # and the default text's chips are still there (CI once counted 183).
    expect(chips).to_have_count(6, timeout=30_000)  # Hello ␣world , ␣hello ␣tokens !
    assert chips.first.get_attribute("title") == "id 15496 · bytes 48 65 6c 6c 6f"
    assert chips.nth(1).inner_text() == "\u2423world"

    page.get_by_role("button", name="Train").click()
    app.wait_idle(timeout_s=120)
    assert_no_error(app)
    page.get_by_text("Merge explorer", exact=True).wait_for(timeout=60_000)
    assert page.get_by_text("Trained #1: vocab 400").count() >= 1
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the browser loads plotly.js first
    assert page.get_by_text("Merge 10:").count() == 1
    thumb = page.get_by_role("slider", name="Merges used (k)")
    thumb.focus()
    thumb.press("ArrowRight")  # step the explorer to merge 11
    app.wait_idle()
    page.get_by_text("Merge 11:").wait_for(timeout=30_000)
    assert_no_error(app)
    assert page.get_by_role("button", name="Download vocab.json + merges.txt (zip)").count() == 1
    app.screenshot("tokenizer-page")
