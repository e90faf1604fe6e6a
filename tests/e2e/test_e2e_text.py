"""End to end in headless chromium (marker `browser`, fixtures in conftest.py): a short language-model
run on the Train page (live curves, samples, the comparison table), then the Generate page on the
bundled Shakespeare model (token chips, every head's heatmap). Screenshots go to
`test-output/train-lm-page.png` and `test-output/generate-text-page.png`.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 120  # 30 steps of a tiny model; a busy 2-core machine draws slowly


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")


def test_a_short_language_model_run_then_shakespeare_generation(app):
    page = app.page
    app.open("train")
    page.locator('[data-testid="stButtonGroup"]').get_by_text("Language model").click()
    app.wait_idle()
    for label, value in (("Steps", 30), ("Validate every", 10), ("Sample every", 10)):
        set_number(page, label, value)
        app.wait_idle()
    page.get_by_role("button", name="Start", exact=True).click()
    start = time.monotonic()
    try:
        page.get_by_text("Finished at step 30").wait_for(timeout=RUN_TIMEOUT_S * 1000)
        print(f"30-step language-model run in the browser: {time.monotonic() - start:.1f} s after Start")
        page.get_by_text("Compare runs").wait_for(timeout=60_000)  # the page's redraw after the run
    except Exception:
        app.screenshot("train-lm-page-timeout")  # what the page showed, for the CI log's reader
        raise
    app.wait_idle()
    main = page.locator('[data-testid="stMain"]')
    text = main.inner_text()
    assert "step 30: " in text and "Compare runs" in text and "Exception" not in text
    app.wait_for_charts("Loss (cross-entropy, nats per token)")
    app.screenshot("train-lm-page")

    page.locator('[data-testid="stSidebarNav"] a', has_text="Generate").click()
    page.get_by_role("heading", name="Generate").wait_for()
    page.get_by_text("Shakespeare (characters)").first.click()
    app.wait_idle()
    page.get_by_text("Causal attention at step").wait_for(timeout=60_000)
    app.wait_idle()
    shown = app.wait_for_charts("layer 1 · head 3")
    assert [t for t in shown if t.startswith("layer")] == [f"layer 1 · head {h}" for h in (1, 2, 3)]  # one layer
    assert "Exception" not in main.inner_text()
    app.screenshot("generate-text-page")


def test_a_bpe_model_trained_here_generates_on_the_generate_page(app):
    page = app.page
    app.open("train")
    page.locator('[data-testid="stButtonGroup"]').get_by_text("Language model").click()
    app.wait_idle()
    page.get_by_text("BPE trained here").click()
    app.wait_idle()
    for label, value in (("BPE vocabulary", 300), ("Steps", 10), ("Validate every", 5), ("Sample every", 5)):
        set_number(page, label, value)
        app.wait_idle()
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text("Finished at step 10").wait_for(timeout=RUN_TIMEOUT_S * 1000)
    app.wait_idle()
    page.locator('[data-testid="stSidebarNav"] a', has_text="Generate").click()
    page.get_by_role("heading", name="Generate").wait_for()
    page.get_by_text("Trained in this session").click()
    app.wait_idle()
    page.get_by_text("Causal attention at step").wait_for(timeout=60_000)
    main = page.locator('[data-testid="stMain"]')
    assert "BPETokenizer vocabulary 300" in main.inner_text() and "Exception" not in main.inner_text()
