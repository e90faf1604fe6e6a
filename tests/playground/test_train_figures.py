"""Tests of the Train page's figures (playground/train/figures.py): each holds the data it was given, both
log-scale charts label their ticks as numbers, long runs are thinned, memorization draws no line across
unscored epochs, and charts before a run say what will appear instead of meaningless axes."""

from __future__ import annotations

import json
import math

import plotly.io

from playground.common import charts
from playground.train import figures
from playground.train.logic import Run
from playground.train.modes import LanguageModelSettings


def test_loss_figure_holds_the_losses_and_toggles_log_scale() -> None:
    fig = figures.loss_figure([1, 2, 3], [3.0, 2.0, 1.5])
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[0].y) == [3.0, 2.0, 1.5]
    assert fig.layout.yaxis.type != "log"
    assert figures.loss_figure([1], [1.0], log_y=True).layout.yaxis.type == "log"


def test_both_log_charts_label_their_ticks_as_the_numbers_they_are() -> None:
    """The issue's loss axis read '2, 1, 5, 2, 0.1' for 2, 1, 0.5, 0.2, 0.1: plotly's own minor labels."""
    losses = [2.0, 1.2, 0.7, 0.3, 0.12]
    for fig in (figures.loss_figure(range(1, 6), losses, log_y=True), figures.grad_norm_figure(range(1, 6), losses)):
        axis = fig.layout.yaxis
        assert axis.type == "log"
        assert list(axis.ticktext) == ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50"]
        assert [float(t) for t in axis.ticktext] == list(axis.tickvals)


def test_an_empty_loss_chart_spans_the_planned_epochs_and_loss_0_to_1() -> None:
    fig = figures.loss_figure([], [], planned=150)
    assert list(fig.layout.xaxis.range) == [1, 150] and list(fig.layout.yaxis.range) == [0, 1]
    assert list(figures.loss_figure([], []).layout.xaxis.range) == [1, 100]


def test_the_memorization_chart_draws_no_line_across_unscored_epochs() -> None:
    fig = figures.memorization_figure([1, 2, 3, 10, 20, 21], [0, 1, 2, 5, 9, 10], n_sentences=10)
    assert list(fig.data[0].x) == [1, 2, 3, None, 10, None, 20, 21]
    assert list(fig.data[0].y) == [0, 1, 2, None, 5, None, 9, 10] and fig.data[0].connectgaps is False


def test_memorization_and_grad_norm_figures() -> None:
    fig = figures.memorization_figure([9, 10], [3, 10], n_sentences=10)
    assert list(fig.data[0].y) == [3, 10] and fig.layout.yaxis.range[1] > 10
    assert "10" in fig.layout.title.text
    grad = figures.grad_norm_figure([1, 2], [0.5, 0.25])
    assert list(grad.data[0].y) == [0.5, 0.25] and grad.layout.yaxis.type == "log"
    assert list(grad.layout.yaxis.ticktext) == ["0.1", "0.2", "0.5", "1", "2", "5"]
    assert charts.log_ticks([0.0, math.nan]) == []


def test_long_runs_are_thinned_keeping_the_last_point() -> None:
    epochs = list(range(1, 5001))
    fig = figures.loss_figure(epochs, [1.0 / e for e in epochs])
    x = list(fig.data[0].x)
    assert len(x) <= charts.MAX_POINTS + 1 and x[0] == 1 and x[-1] == 5000
    assert charts.thin([1, 2], [3, 4]) == ([1, 2], [3, 4])


def test_every_curve_goes_to_the_browser_as_a_typed_array() -> None:
    """A Train page redraws its charts every tick for every learner: a numpy array is checked by plotly at
    once (a list point by point) and sent as base64, a list as one JSON number a point."""
    run = Run(1, LanguageModelSettings(), steps=[1, 2, 3], losses=[3.0, 2.0, 1.5], lrs=[0.1, 0.2, 0.3])
    curves = [
        figures.loss_figure([1, 2, 3], [3.0, 2.0, 1.5]),
        figures.grad_norm_figure([1, 2, 3], [0.5, 0.4, 0.3]),
        figures.run_loss_figure(run),
        figures.lr_figure(run),
        figures.compare_figure([run], validation=False),
    ]
    for fig in curves:
        spec = json.loads(plotly.io.to_json(fig))["data"][0]
        assert set(spec["x"]) == set(spec["y"]) == {"dtype", "bdata"}, fig.layout.title.text


def test_charts_before_a_run_say_what_will_appear_not_meaningless_axes() -> None:
    """Issue 18, finding 11: before Start the language-model charts showed plotly's default axes
    (learning rate -1..4, steps 0..6)."""
    for fig in (figures.run_loss_figure(None, planned=400), figures.lr_figure(None, planned=400)):
        layout = fig.to_plotly_json()["layout"]
        assert layout["xaxis"]["range"] == [0, 400] and layout["yaxis"]["showticklabels"] is False
        assert "appears here when the run starts" in layout["annotations"][0]["text"]
    layout = figures.lr_figure(None).to_plotly_json()["layout"]
    assert layout["xaxis"]["showticklabels"] is False  # nothing planned yet: no step numbers either
