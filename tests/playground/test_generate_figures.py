"""Tests of the Generate page's SVG charts (playground/generate/figures.py): top-k bars mark the chosen token,
the probability heatmap is steps x vocabulary with chosen marks (a large vocabulary shows its likeliest
tokens, a long generation stays a screen tall), and the attention heatmaps leave the masked future empty
with token labels on both axes. Each chart is parsed as XML: it must be well-formed, and on one line."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import torch

from playground.common import charts, svg
from playground.generate import figures

NS = "{http://www.w3.org/2000/svg}"
VOCAB = ["<pad>", "the", "red", "fox", "jumps"]


def parsed(out: str) -> ET.Element:
    assert "\n" not in out and "\r" not in out  # a blank line would end the page's HTML block
    return ET.fromstring(out)


def hover(root: ET.Element) -> dict[str, ET.Element]:
    """Every cell or bar by its hover text (not the background of the cells under the floor)."""
    return {
        e.find(f"{NS}title").text: e
        for e in root.iter(f"{NS}rect")
        if e.find(f"{NS}title") is not None and e.get("class") != "floor"
    }


def floor_of(root: ET.Element) -> ET.Element:
    """The background standing for every cell under figures.FLOOR."""
    (background,) = [e for e in root.iter(f"{NS}rect") if e.get("class") == "floor"]
    assert background.get("fill") == svg.blues(0.0) and background.find(f"{NS}title").text == "under 0.005"
    return background


def axis_labels(root: ET.Element, rotated: bool) -> list[ET.Element]:
    texts = [e for e in root.iter(f"{NS}text") if e.get("class") != "mark"]
    if rotated:
        return [e for e in texts if "rotate(-60" in (e.get("transform") or "")]
    return [e for e in texts if e.get("text-anchor") == "end" and e.get("transform") is None]


def test_topk_bars_are_sorted_and_mark_the_chosen_token() -> None:
    probs = torch.tensor([0.0, 0.15, 0.2, 0.6, 0.05])
    root = parsed(figures.topk_svg(VOCAB, probs, chosen=3, k=3))
    bars = sorted(hover(root).items(), key=lambda item: float(item[1].get("y")))  # top to bottom
    assert [text for text, _ in bars] == ["fox: 60.0%", "red: 20.0%", "the: 15.0%"]  # the likeliest on top
    widths = [float(bar.get("width")) for _, bar in bars]
    assert widths == sorted(widths, reverse=True) and widths[0] == pytest.approx(0.6 * svg.BAR_LENGTH)
    assert [bar.get("fill") for _, bar in bars] == [charts.CHOSEN, charts.OTHER, charts.OTHER]
    assert root.find(f"{NS}title").text == "Next-token probabilities (top 3); chosen: fox"


def test_topk_adds_a_sampled_token_outside_the_top_k() -> None:
    probs = torch.tensor([0.0, 0.1, 0.2, 0.6, 0.1])
    out = figures.topk_svg(VOCAB, probs, chosen=0, k=2)
    bars = sorted(hover(parsed(out)).items(), key=lambda item: float(item[1].get("y")))
    assert [text for text, _ in bars] == ["fox: 60.0%", "red: 20.0%", "<pad>: 0.0%"]  # added last
    assert [bar.get("fill") for _, bar in bars].count(charts.CHOSEN) == 1 and bars[-1][1].get("fill") == charts.CHOSEN
    assert "<pad>" not in out and "&lt;pad&gt;" in out  # escaped, or the browser reads a tag and hides it


def test_probability_heatmap_is_steps_by_vocab_with_chosen_marks() -> None:
    probs = [torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=torch.float64).roll(i) for i in range(3)]
    steps = ["1 → fox", "2 → jumps", "3 → <pad>"]
    root = parsed(figures.probability_svg(VOCAB, probs, chosen=[3, 4, 0], step_labels=steps))
    cells = hover(root)
    assert len(cells) == 3 * 5
    cell = cells[f"step 2 → jumps · 'red': {float(probs[1][2]):.2%}"]
    assert cell.get("fill") == svg.blues(float(probs[1][2]))
    # every step's cells on one row, the vocabulary in order along it
    for i in range(3):
        row = [cells[f"step {steps[i]} · '{tok}': {float(probs[i][j]):.2%}"] for j, tok in enumerate(VOCAB)]
        assert len({c.get("y") for c in row}) == 1
        assert [float(c.get("x")) for c in row] == sorted(float(c.get("x")) for c in row)
    # an × over each step's chosen token
    marks = [m for m in root.iter(f"{NS}text") if m.get("class") == "mark"]
    assert [m.text for m in marks] == ["×"] * 3
    for step, (mark, token) in enumerate(zip(marks, ["fox", "jumps", "<pad>"])):
        target = cells[f"step {steps[step]} · '{token}': {float(probs[step][VOCAB.index(token)]):.2%}"]
        x, y, w, h = (float(target.get(a)) for a in ("x", "y", "width", "height"))
        assert float(mark.get("x")) == pytest.approx(x + w / 2, abs=0.1)
        assert float(mark.get("y")) == pytest.approx(y + h / 2, abs=0.1)
    # the token labels on top (the cells start at y = 0), the step labels at the left
    tokens = axis_labels(root, rotated=True)
    assert [e.text for e in tokens] == VOCAB and all(float(e.get("y")) < 0 for e in tokens)
    assert [e.text for e in axis_labels(root, rotated=False)] == steps


def test_a_large_vocabulary_shows_its_likeliest_tokens_and_every_chosen_one() -> None:
    vocab = [f"w{i}" for i in range(500)]
    probs = [torch.softmax(torch.randn(500, dtype=torch.float64, generator=torch.Generator().manual_seed(s)), 0)
             for s in range(2)]  # fmt: skip
    chosen = [int(probs[0].argmin()), 7]  # a sampled unlikely token is still shown
    root = parsed(figures.probability_svg(vocab, probs, chosen, ["1", "2"], max_columns=20))
    cells = hover(root)
    columns = {re.search(r"'(w\d+)'", text)[1] for text in cells} | {e.text for e in axis_labels(root, rotated=True)}
    assert len(columns) == 20
    drawn = {(i, f"w{j}") for i in range(2) for j in range(500) if f"w{j}" in columns and probs[i][j] >= figures.FLOOR}
    assert len(cells) == len(drawn) < 2 * 20  # the others are the background
    floor_of(root)
    shown = [e.text for e in axis_labels(root, rotated=True)]  # every column labelled at this width
    assert len(shown) == 20 and [int(tok[1:]) for tok in shown] == sorted(int(tok[1:]) for tok in shown)
    assert {f"w{c}" for c in chosen} <= set(shown)
    assert f"w{int(probs[1].argmax())}" in shown and f"w{int(probs[0].argmax())}" in shown
    assert root.find(f"{NS}title").text.endswith(": the 20 likeliest of 500 tokens")
    assert len([m for m in root.iter(f"{NS}text") if m.get("class") == "mark"]) == 2


@pytest.mark.parametrize("token", ["x", "a-long-token-of-20ch"])
def test_a_long_generation_keeps_the_heatmap_a_screen_tall_with_labels_on_top(token: str) -> None:
    """Issue 18, finding 10: 200 tokens made a ~4,000 px heatmap whose token labels were only at the bottom."""
    steps, vocab = 200, [f"{token}{i}" for i in range(5)]
    probs = [torch.softmax(torch.randn(5, generator=torch.Generator().manual_seed(i)), 0) for i in range(steps)]
    labels = [f"{i} → {token}" for i in range(1, steps + 1)]
    root = parsed(figures.probability_svg(vocab, probs, [0] * steps, labels))
    assert int(root.get("height")) <= figures.MAX_HEIGHT == 720
    drawn = sum(int((p >= figures.FLOOR).sum()) for p in probs)
    assert len(hover(root)) == drawn and drawn > steps  # every step still drawn (its cells over the floor)
    assert {e.find(f"{NS}title").text.split(" · ")[0] for e in hover(root).values()} == {f"step {x}" for x in labels}
    assert all(float(e.get("y")) < 0 for e in axis_labels(root, rotated=True))  # the token labels on top
    rows = [float(e.get("y")) for e in axis_labels(root, rotated=False)]
    assert 10 <= len(rows) < steps and all(b - a >= svg.FONT_SIZE - 0.1 for a, b in zip(rows, rows[1:]))


def test_attention_heatmap_leaves_the_future_empty_and_labels_both_axes() -> None:
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [0.2, 0.3, 0.5]])
    root = parsed(figures.attention_svg(weights, ["the", "red", "the"], "layer 1 · head 1"))
    ticks = ["0:the", "1:red", "2:the"]  # repeated tokens stay distinct positions
    cells = hover(root)
    expected = {
        f"query {ticks[q]} · key {ticks[k]} · weight {float(weights[q, k]):.2f}": (q, k)
        for q in range(3)
        for k in range(q + 1)  # the future (key > query) is masked: no cell
    }
    assert set(cells) == set(expected)
    for text, (q, k) in expected.items():
        assert cells[text].get("fill") == svg.viridis(float(weights[q, k]))
    assert [e.text for e in axis_labels(root, rotated=True)] == ticks  # keys, below
    assert [e.text for e in axis_labels(root, rotated=False)] == ticks  # queries, at the left
    assert root.find(f"{NS}title").text == "layer 1 · head 1"
    assert root.find(f".//{NS}g[@class='color-bar']") is None  # the page explains the colours once


@pytest.mark.parametrize("t", [1, 8, 32])
@pytest.mark.parametrize("token", ["e", "a-long-token-of-20ch"])
def test_two_attention_heatmaps_fit_side_by_side_at_1024_px(t: int, token: str) -> None:
    root = parsed(figures.attention_svg(torch.softmax(torch.randn(t, t), -1), [token] * t, "layer 1 · head 1"))
    assert int(root.get("width")) <= 310 and int(root.get("height")) <= figures.ATTENTION_MAX_HEIGHT
    sizes = {float(e.get("font-size")) for e in root.iter(f"{NS}text") if e.get("class") != "mark"}
    assert min(sizes) >= 10  # readable at natural size
    assert len(hover(root)) == t * (t + 1) // 2


def test_hostile_labels_are_escaped_and_the_charts_stay_on_one_line() -> None:
    vocab = ["a\n\nb", "<script>", '" onmouseover="x', "$x$", "*b*", "&amp;"]
    probs = [torch.full((6,), 1 / 6, dtype=torch.float64)] * 2
    charts_out = [
        figures.topk_svg(vocab, probs[0], chosen=1),
        figures.probability_svg(vocab, probs, [1, 2], ["1 → <script>", "2 → \n"]),
        figures.attention_svg(torch.eye(6), vocab, "<i>head</i>\n\n"),
    ]
    for out in charts_out:
        root = parsed(out)
        assert not any(e.tag == f"{NS}script" for e in root.iter())
        assert not any(name.startswith("on") for e in root.iter() for name in e.attrib)
        assert "$" not in out and "*" not in out  # nothing for Markdown or the math renderer to pick up
        every_text = " ".join(e.text or "" for e in root.iter())
        assert "a\n\nb" in every_text and "<script>" in every_text and "&amp;" in every_text
    assert "'<script>'" in " ".join(hover(parsed(charts_out[1])))  # hover texts keep the label as it is
