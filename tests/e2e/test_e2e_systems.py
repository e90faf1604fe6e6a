"""End to end in a real headless chromium (marker `browser`, fixtures in conftest.py): on the Systems page,
pick a tiny model, profile its training step and wait for the five charts (the memory timeline too) and the
step's metrics; flip the fused-backward toggle, profile again and wait for the delta chart. Screenshot:
`test-output/systems-page.png`.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TINY = {"Layers": "1", "Heads": "2", "d_model": "32", "Context": "8", "Batch": "2"}


def assert_no_error(app) -> None:
    exceptions = app.page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def test_profile_a_tiny_step_then_see_a_toggles_delta(app):
    page = app.page
    app.open("systems")
    assert_no_error(app)
    for label, value in TINY.items():
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        expect(box).to_have_value(value)
        app.wait_idle()
    page.get_by_role("button", name="Profile").click()
    charts = page.locator(".js-plotly-plot")
    expect(charts).to_have_count(5, timeout=120_000)  # time, FLOPs, roofline, the floor, memory
    expect(page.get_by_text("Time per op kind (ms per step)")).to_be_visible()
    expect(page.get_by_text("× matmul floor", exact=True)).to_be_visible()
    assert_no_error(app)

    page.get_by_text("Fused backward nodes", exact=True).click()  # off
    app.wait_idle()
    page.get_by_role("button", name="Profile").click()
    expect(charts).to_have_count(6, timeout=120_000)  # and the previous profile against this one
    expect(page.get_by_text("Changed: fused: True → False")).to_be_visible()
    assert_no_error(app)
    app.screenshot("systems-page")
