"""End to end in a real headless chromium (marker `browser`, fixtures in conftest.py): press Start on
the Train page and watch the plotly loss curve grow until the default corpus is memorized, then type a
prompt on the Generate page and see the sentence come back with its heatmaps. Screenshots (the README's)
go to `test-output/train-page.png` and `test-output/generate-page.png`.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

EPOCHS = 500  # the page's default: lm's classic recipe, as on the command line
TRAIN_TIMEOUT_S = 240  # on a shared 2-core machine


def assert_no_error(app) -> None:
    exceptions = app.page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def plot_points(app, title: str) -> int:
    """Points in the first trace of the plotly chart with this title, read from plotly's own data."""
    return app.page.evaluate(
        """(title) => {
            for (const plot of document.querySelectorAll('.js-plotly-plot')) {
                // Streamlit's theme wraps a title in <b> tags: match the text inside.
                const text = plot.layout && plot.layout.title && plot.layout.title.text;
                if (text && text.replace(/<[^>]*>/g, '') === title) {
                    return plot._fullData[0].y.length;  // decoded: `data` holds a numpy array's base64 spec
                }
            }
            return 0;
        }""",
        title,
    )


def wait_until(predicate, timeout_s: float, what: str, app) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            app.screenshot(f"timeout-{what.replace(' ', '-')}")
            raise TimeoutError(f"{what} did not happen within {timeout_s} s")
        app.page.wait_for_timeout(200)


def test_train_live_then_generate_with_the_trained_model(app):
    page = app.page
    app.open("train")
    assert_no_error(app)
    page.get_by_role("button", name="▶ Start").click()
    start = time.monotonic()

    # Watch the page as a user would: the first points of the loss curve (the browser loads plotly.js on
    # its first chart), the curve growing tick after tick, and the memorization metric reaching 10 / 10.
    memorized = page.get_by_text("10 / 10", exact=True)
    seen: dict[str, float] = {}
    sizes: list[int] = []
    deadline = start + TRAIN_TIMEOUT_S
    while len(seen) < 2 and time.monotonic() < deadline:
        points = plot_points(app, "Loss (cross-entropy)")
        if points and (not sizes or points != sizes[-1]):
            sizes.append(points)
            seen.setdefault("curve", time.monotonic() - start)
        if memorized.count():
            seen.setdefault("10/10", time.monotonic() - start)
        page.wait_for_timeout(100)
    assert "10/10" in seen, f"not memorized within {TRAIN_TIMEOUT_S} s"
    to_full = seen["10/10"]
    finished = page.get_by_text(f"Finished at epoch {EPOCHS}")
    wait_until(lambda: finished.count() > 0, TRAIN_TIMEOUT_S, "training finishing", app)
    total = time.monotonic() - start
    app.wait_idle()
    assert_no_error(app)
    assert plot_points(app, "Loss (cross-entropy)") == EPOCHS
    assert sizes and sizes[0] < EPOCHS, f"the curve was first drawn complete, not live: {sizes}"
    # the download is drawn by the whole-page rerun that follows the run's last tick: wait for it, then count
    download = page.get_by_role("button", name="Download weights (.safetensors)")
    download.first.wait_for(timeout=60_000)
    assert download.count() == 1
    print(
        f"default recipe in the browser: first loss points {seen.get('curve', -1):.1f} s after Start, 10/10 "
        f"memorized after {to_full:.1f} s, {EPOCHS} epochs in {total:.1f} s; curve sizes seen {sizes}"
    )
    app.screenshot("train-page")  # the whole page: conftest grows the viewport

    # Same browser session: the Generate page offers the model just trained.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Generate").click()
    page.get_by_role("heading", name="Generate").wait_for()
    app.wait_idle()
    page.get_by_text("Trained in this session").click()
    app.wait_idle()
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.fill("a small")
    prompt.press("Enter")
    app.wait_idle()
    # The continuation's own line (an h4): "sings" alone also matched the previous text's heatmap labels, the
    # vocabulary drawn as SVG text, before this prompt's rerun ended (a stressed CI run)
    page.locator('[data-testid="stMain"] h4', has_text="a small").first.wait_for(timeout=60_000)
    assert_no_error(app)
    main = page.locator('[data-testid="stMain"]')
    assert "bird sings softly" in main.locator("h4").first.inner_text().replace("\n", " ")
    app.wait_for_charts("layer 1 · head 1", "Next-token distribution")
    timing = page.locator('[data-testid="stMetric"]').all_inner_texts()
    print("KV cache metrics:", [" ".join(t.split()) for t in timing])
    app.screenshot("generate-page")


def test_stop_halts_a_live_run(app):
    page = app.page
    app.open("train")
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill("5000")
    epochs.press("Enter")
    app.wait_idle()
    page.get_by_role("button", name="▶ Start").click()
    wait_until(lambda: plot_points(app, "Loss (cross-entropy)") > 0, 60, "the loss curve appearing", app)
    first = plot_points(app, "Loss (cross-entropy)")
    wait_until(lambda: plot_points(app, "Loss (cross-entropy)") > first, 60, "the loss curve updating", app)
    # playwright waits for the button to be stable before it clicks; time from the click itself
    page.get_by_role("button", name="■ Stop").click()
    clicked = time.monotonic()
    page.get_by_text("Stopped at epoch").wait_for(timeout=30_000)
    print(f"Stop took effect in {time.monotonic() - clicked:.2f} s")
    app.wait_idle()
    stopped_at = plot_points(app, "Loss (cross-entropy)")
    page.wait_for_timeout(2000)  # no tick runs any more
    assert plot_points(app, "Loss (cross-entropy)") == stopped_at < 5000
    assert page.get_by_role("button", name="▶ Resume").is_enabled()
    assert_no_error(app)
