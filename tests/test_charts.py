"""Tests of the plotly figures (playground/charts.py): each holds the data it was given, marks the chosen
token, and the attention heatmaps leave the masked upper triangle empty with token labels on both axes."""

from __future__ import annotations

import math

import torch

from playground import charts

VOCAB = ["<pad>", "the", "red", "fox", "jumps"]


def test_loss_figure_holds_the_losses_and_toggles_log_scale() -> None:
    fig = charts.loss_figure([1, 2, 3], [3.0, 2.0, 1.5])
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[0].y) == [3.0, 2.0, 1.5]
    assert fig.layout.yaxis.type != "log"
    assert charts.loss_figure([1], [1.0], log_y=True).layout.yaxis.type == "log"


def test_both_log_charts_label_their_ticks_as_the_numbers_they_are() -> None:
    """The issue's loss axis read '2, 1, 5, 2, 0.1' for 2, 1, 0.5, 0.2, 0.1: plotly's own minor labels."""
    losses = [2.0, 1.2, 0.7, 0.3, 0.12]
    for fig in (charts.loss_figure(range(1, 6), losses, log_y=True), charts.grad_norm_figure(range(1, 6), losses)):
        axis = fig.layout.yaxis
        assert axis.type == "log"
        assert list(axis.ticktext) == ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50"]
        assert [float(t) for t in axis.ticktext] == list(axis.tickvals)


def test_an_empty_loss_chart_spans_the_planned_epochs_and_loss_0_to_1() -> None:
    fig = charts.loss_figure([], [], planned=150)
    assert list(fig.layout.xaxis.range) == [1, 150] and list(fig.layout.yaxis.range) == [0, 1]
    assert list(charts.loss_figure([], []).layout.xaxis.range) == [1, 100]


def test_the_memorization_chart_draws_no_line_across_unscored_epochs() -> None:
    fig = charts.memorization_figure([1, 2, 3, 10, 20, 21], [0, 1, 2, 5, 9, 10], n_sentences=10)
    assert list(fig.data[0].x) == [1, 2, 3, None, 10, None, 20, 21]
    assert list(fig.data[0].y) == [0, 1, 2, None, 5, None, 9, 10] and fig.data[0].connectgaps is False


def test_memorization_and_grad_norm_figures() -> None:
    fig = charts.memorization_figure([9, 10], [3, 10], n_sentences=10)
    assert list(fig.data[0].y) == [3, 10] and fig.layout.yaxis.range[1] > 10
    assert "10" in fig.layout.title.text
    grad = charts.grad_norm_figure([1, 2], [0.5, 0.25])
    assert list(grad.data[0].y) == [0.5, 0.25] and grad.layout.yaxis.type == "log"
    assert list(grad.layout.yaxis.ticktext) == ["0.1", "0.2", "0.5", "1", "2", "5"]
    assert charts.log_ticks([0.0, math.nan]) == []


def test_topk_bars_are_sorted_and_mark_the_chosen_token() -> None:
    probs = torch.tensor([0.0, 0.1, 0.2, 0.6, 0.1])
    fig = charts.topk_figure(VOCAB, probs, chosen=3, k=3)
    bar = fig.data[0]
    assert list(bar.y)[-1] == "fox"  # the most likely token is drawn on top (last)
    assert list(bar.x) == sorted(bar.x)
    assert len(bar.x) == 3
    colors = list(bar.marker.color)
    assert colors[-1] == charts.CHOSEN and colors.count(charts.CHOSEN) == 1


def test_topk_adds_a_sampled_token_outside_the_top_k() -> None:
    probs = torch.tensor([0.0, 0.1, 0.2, 0.6, 0.1])
    fig = charts.topk_figure(VOCAB, probs, chosen=0, k=2)
    labels = list(fig.data[0].y)
    assert len(labels) == 3 and "&lt;pad&gt;" in labels  # escaped, or plotly hides '<pad>' as a tag
    assert fig.data[0].marker.color[labels.index("&lt;pad&gt;")] == charts.CHOSEN


def test_probability_heatmap_is_steps_by_vocab_with_chosen_markers() -> None:
    probs = [torch.softmax(torch.randn(5, dtype=torch.float64), 0) for _ in range(3)]
    fig = charts.probability_heatmap(VOCAB, probs, chosen=[3, 4, 0], step_labels=["1 → fox", "2 → jumps", "3 → x"])
    heat, marks = fig.data
    assert len(heat.z) == 3 and all(len(row) == 5 for row in heat.z)
    assert math.isclose(heat.z[1][2], float(probs[1][2]))
    assert list(heat.x)[0] == "&lt;pad&gt;" and list(heat.y) == ["1 → fox", "2 → jumps", "3 → x"]
    assert list(marks.x) == ["fox", "jumps", "&lt;pad&gt;"] and list(marks.y) == list(heat.y)


def test_attention_heatmap_leaves_the_future_empty_and_labels_both_axes() -> None:
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [0.2, 0.3, 0.5]])
    fig = charts.attention_figure(weights, ["the", "red", "the"], "layer 1 · head 1")
    heat = fig.data[0]
    z = heat.z
    assert len(z) == 3 and all(len(row) == 3 for row in z)
    for q in range(3):
        for k in range(3):
            if k > q:
                assert math.isnan(z[q][k])  # masked: drawn empty
            else:
                assert math.isclose(z[q][k], float(weights[q, k]))
    # repeated tokens stay distinct positions on a category axis
    assert list(heat.x) == ["0:the", "1:red", "2:the"] and list(heat.y) == list(heat.x)
    assert fig.layout.title.text == "layer 1 · head 1"


def test_long_runs_are_thinned_keeping_the_last_point() -> None:
    epochs = list(range(1, 5001))
    fig = charts.loss_figure(epochs, [1.0 / e for e in epochs])
    x = list(fig.data[0].x)
    assert len(x) <= charts.MAX_POINTS + 1 and x[0] == 1 and x[-1] == 5000
    assert charts.thin([1, 2], [3, 4]) == ([1, 2], [3, 4])


def test_a_large_vocabulary_shows_its_likeliest_tokens_and_every_chosen_one() -> None:
    vocab = [f"w{i}" for i in range(500)]
    probs = [torch.softmax(torch.randn(500, dtype=torch.float64, generator=torch.Generator().manual_seed(s)), 0)
             for s in range(2)]  # fmt: skip
    chosen = [int(probs[0].argmin()), 7]  # a sampled unlikely token is still shown
    fig = charts.probability_heatmap(vocab, probs, chosen, ["1", "2"], max_columns=20)
    heat, marks = fig.data
    assert len(heat.x) == 20 and all(len(row) == 20 for row in heat.z)
    assert set(marks.x) <= set(heat.x) and "of 500 tokens" in fig.layout.title.text
    top = f"w{int(probs[1].argmax())}"
    assert top in heat.x


RACE = """
import threading
from playground import charts  # the app has imported its modules when sessions start drawing

errors = []

def draw():
    for i in range(2000):  # while the import runs (a few draws more, to be sure)
        if i > 20 and not importer.is_alive():
            return
        try:
            charts.loss_figure([1, 2, 3], [1.0, 0.5, 0.25])
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
    while another session's thread is still importing pandas found it half-initialized. charts.py
    imports pandas itself, so drawing waits for the import to finish. A fresh interpreter each time."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", RACE], cwd=root, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "errors: []" in out.stdout, out.stdout


def test_charts_before_a_run_say_what_will_appear_not_meaningless_axes() -> None:
    """Issue 18, finding 11: before Start the language-model charts showed plotly's default axes
    (learning rate -1..4, steps 0..6)."""
    from playground import lm_charts

    for fig in (lm_charts.loss_figure(None, planned=400), lm_charts.lr_figure(None, planned=400)):
        layout = fig.to_plotly_json()["layout"]
        assert layout["xaxis"]["range"] == [0, 400] and layout["yaxis"]["showticklabels"] is False
        assert "appears here when the run starts" in layout["annotations"][0]["text"]
    layout = lm_charts.lr_figure(None).to_plotly_json()["layout"]
    assert layout["xaxis"]["showticklabels"] is False  # nothing planned yet: no step numbers either
