"""Tests of the Generate page's figures (playground/generate/figures.py): top-k bars mark the chosen token,
the probability heatmap is steps x vocabulary with chosen markers (a large vocabulary shows its likeliest
tokens), and the attention heatmaps leave the masked upper triangle empty with token labels on both axes."""

from __future__ import annotations

import math

import torch

from playground.common import charts
from playground.generate import figures

VOCAB = ["<pad>", "the", "red", "fox", "jumps"]


def test_topk_bars_are_sorted_and_mark_the_chosen_token() -> None:
    probs = torch.tensor([0.0, 0.1, 0.2, 0.6, 0.1])
    fig = figures.topk_figure(VOCAB, probs, chosen=3, k=3)
    bar = fig.data[0]
    assert list(bar.y)[-1] == "fox"  # the most likely token is drawn on top (last)
    assert list(bar.x) == sorted(bar.x)
    assert len(bar.x) == 3
    colors = list(bar.marker.color)
    assert colors[-1] == charts.CHOSEN and colors.count(charts.CHOSEN) == 1


def test_topk_adds_a_sampled_token_outside_the_top_k() -> None:
    probs = torch.tensor([0.0, 0.1, 0.2, 0.6, 0.1])
    fig = figures.topk_figure(VOCAB, probs, chosen=0, k=2)
    labels = list(fig.data[0].y)
    assert len(labels) == 3 and "&lt;pad&gt;" in labels  # escaped, or plotly hides '<pad>' as a tag
    assert fig.data[0].marker.color[labels.index("&lt;pad&gt;")] == charts.CHOSEN


def test_probability_heatmap_is_steps_by_vocab_with_chosen_markers() -> None:
    probs = [torch.softmax(torch.randn(5, dtype=torch.float64), 0) for _ in range(3)]
    fig = figures.probability_heatmap(VOCAB, probs, chosen=[3, 4, 0], step_labels=["1 → fox", "2 → jumps", "3 → x"])
    heat, marks = fig.data
    assert len(heat.z) == 3 and all(len(row) == 5 for row in heat.z)
    assert math.isclose(heat.z[1][2], float(probs[1][2]))
    assert list(heat.x)[0] == "&lt;pad&gt;" and list(heat.y) == ["1 → fox", "2 → jumps", "3 → x"]
    assert list(marks.x) == ["fox", "jumps", "&lt;pad&gt;"] and list(marks.y) == list(heat.y)


def test_attention_heatmap_leaves_the_future_empty_and_labels_both_axes() -> None:
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [0.2, 0.3, 0.5]])
    fig = figures.attention_figure(weights, ["the", "red", "the"], "layer 1 · head 1")
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


def test_a_large_vocabulary_shows_its_likeliest_tokens_and_every_chosen_one() -> None:
    vocab = [f"w{i}" for i in range(500)]
    probs = [torch.softmax(torch.randn(500, dtype=torch.float64, generator=torch.Generator().manual_seed(s)), 0)
             for s in range(2)]  # fmt: skip
    chosen = [int(probs[0].argmin()), 7]  # a sampled unlikely token is still shown
    fig = figures.probability_heatmap(vocab, probs, chosen, ["1", "2"], max_columns=20)
    heat, marks = fig.data
    assert len(heat.x) == 20 and all(len(row) == 20 for row in heat.z)
    assert set(marks.x) <= set(heat.x) and "of 500 tokens" in fig.layout.title.text
    top = f"w{int(probs[1].argmax())}"
    assert top in heat.x


def test_a_long_generation_keeps_the_heatmap_a_screen_tall_with_labels_on_top() -> None:
    """Issue 18, finding 10: 200 tokens made a ~4,000 px heatmap whose token labels were only at the bottom."""
    steps = 200
    probs = [
        torch.softmax(torch.randn(len(VOCAB), generator=torch.Generator().manual_seed(i)), 0) for i in range(steps)
    ]
    fig = figures.probability_heatmap(VOCAB, probs, [0] * steps, [str(i) for i in range(1, steps + 1)])
    layout = fig.to_plotly_json()["layout"]
    assert layout["height"] <= 150 + 28 * figures.MAX_HEAT_ROWS <= 720  # the title and the labels on top: 150 px
    assert layout["xaxis"]["side"] == "top" and len(fig.data[0]["z"]) == steps  # every step still drawn
