"""The Systems page under Streamlit's AppTest: it opens without a profile, lm's refusals show as messages
(nothing runs), a tiny profile draws its metrics and the five charts, a second one with a toggle flipped
draws the delta view naming the toggle, activation checkpointing lowers the memory the page shows, and the
Home page's example profiles at once."""

from __future__ import annotations

import pytest
import torch
from apptest_helpers import HOME, figures, open_page
from streamlit.testing.v1 import AppTest

from playground.common.markdown import shown

CHARTS = [
    "Time per op kind (ms per step)",
    "FLOPs per op kind (MFLOP per step)",
    "Matmul throughput against this machine's peak",
    "The step against its matmul floor (ms)",
    "Memory alive along the plan (MiB)",
]
DELTA = "Time per kind of work: previous vs this profile (ms per step)"
TINY = dict(n_layers=1, n_heads=2, d_model=32, context=8, batch=2)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the app runs (playground/Home.py): a loaded 2-core machine stalls two."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def set_sizes(at: AppTest, **sizes) -> None:
    for name, value in sizes.items():
        at.number_input(key=f"sys_{name}").set_value(value)


def test_the_page_opens_ready_to_profile():
    at = open_page("systems")
    assert not at.exception and at.title[0].value == "Systems"
    assert not at.get("plotly_chart") and not at.error
    assert at.button(key="sys_run").label == "Profile"
    assert [t.value for t in at.toggle] == [True, True, True, False]  # fused, generated code, memory kept; remat
    assert at.radio(key="sys_layout").value == "auto"


def test_lms_refusals_are_messages_and_nothing_runs():
    at = open_page("systems")
    set_sizes(at, n_layers=16, d_model=512, context=512, batch=64)
    at.button(key="sys_run").click().run()
    assert not at.exception and not at.get("plotly_chart")
    assert "lower the batch, context, d_model, layers or steps" in shown(at.error[0].value)
    set_sizes(at, **{**TINY, "n_heads": 3})  # 32 is not a multiple of 3
    at.button(key="sys_run").click().run()
    assert not at.exception and "n_heads" in shown(at.error[0].value) and not at.get("plotly_chart")


def test_a_profile_draws_its_charts_and_a_toggle_draws_the_delta():
    at = open_page("systems")
    set_sizes(at, **TINY)
    at.button(key="sys_run").click().run()
    assert not at.exception and not at.error
    charts = figures(at)
    assert list(charts) == CHARTS
    ops = charts["Time per op kind (ms per step)"]["data"][0]["y"]
    assert "matmul" in ops and "layernorm_gain_grads" in ops
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step (median)"].endswith(" ms") and float(metrics["× matmul floor"]) > 1
    assert "Flip a toggle" in " ".join(m.value for m in at.markdown)
    alive = at.dataframe[1].value  # the values alive at the memory peak, largest first
    assert list(alive["KiB"]) == sorted(alive["KiB"], reverse=True) and "activations" in set(alive["what it is"])
    assert "holds at most" in " ".join(m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["op"])[0] == ops[-1] and "matmul" in set(table["op"])  # the time chart's top bar first

    at.toggle(key="sys_fused").set_value(False)
    at.button(key="sys_run").click().run()
    assert not at.exception and not at.error
    charts = figures(at)
    assert list(charts) == [*CHARTS, DELTA]
    ops = charts["Time per op kind (ms per step)"]["data"][0]["y"]
    assert "layernorm_gain_grads" not in ops  # the written-out norms: their means, muls and subs instead
    text = " ".join(m.value for m in at.markdown)
    assert "Changed: fused: True → False" in shown(text)
    assert [trace["name"] for trace in charts[DELTA]["data"]] == ["previous", "this profile"]
    assert {m.label: m.delta for m in at.metric}["Nodes in the plan"].startswith("+")  # more, smaller nodes


def test_activation_checkpointing_lowers_the_memory_shown():
    at = open_page("systems")
    set_sizes(at, **{**TINY, "n_layers": 2})
    at.button(key="sys_run").click().run()
    at.toggle(key="sys_remat").set_value(True)
    at.button(key="sys_run").click().run()
    assert not at.exception and not at.error
    text = shown(" ".join(m.value for m in at.markdown))
    assert "Changed: remat: False → True" in text
    before, after = (float(x) for x in text.split("activations kept at their most: ")[1].split(" MiB")[0].split(" → "))
    assert after < before
    assert "checkpointed blocks" in at.caption[0].value


def test_the_home_pages_example_profiles_at_once():
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.button(key="home_systems_example").click().run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Systems"
    assert list(figures(at)) == CHARTS
    assert at.number_input(key="sys_n_layers").value == 2
