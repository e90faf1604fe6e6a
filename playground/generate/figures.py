"""The Generate page's charts as SVG strings built from plain lists and tensors (no st.* calls): top-k
next-token bars, a steps x vocabulary probability heatmap, and one causal attention heatmap per layer and
head whose masked upper triangle is left empty, with token labels on both axes. SVG drawn here, not Plotly:
the page then needs no 4.7 MB plotly.js before its first chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from playground.common import svg
from playground.common.charts import CHOSEN, OTHER

MAX_COLUMNS = 80  # the probability heatmap shows at most this many tokens of a large vocabulary
MAX_HEIGHT = 720  # px: the probability heatmap, title and labels included, whatever the number of steps
MAX_GRID_HEIGHT = 540  # px of rows: with the title and 14-character token labels on top, under MAX_HEIGHT
ROW_HEIGHT = 18  # px per step while the steps fit MAX_GRID_HEIGHT; more steps share it (thinner rows)
# px: the tokens share this width, so the heatmap and its colour bar fit the page's column at a 1,024 px
# window (~560 px): 66 characters are 6 px each, every second one labelled (hover names each cell).
# Scrolling sideways hid most of the tokens a model picks (a-z come after the capitals and punctuation).
GRID_WIDTH = 440
MIN_COLUMN = 5  # px: at MAX_COLUMNS tokens
# Cells are whole pixels: at fractional sizes crisp edges left white seams between some rows.
FLOOR = 0.005  # probabilities under 0.5% are the heatmap's background (drawn, they would be as white)
ATTENTION_GRID = 180  # px, an attention heatmap's side: two charts ~300 px wide sit side by side at 1,024 px
ATTENTION_FONT = 11  # px: 32 positions' labels fit that width, every second or third one shown
ATTENTION_MAX_HEIGHT = 420  # px: a long prompt's heatmap stays about square in half a 1,024 px window


def topk_svg(vocab: Sequence[str], probs: torch.Tensor | Sequence[float], chosen: int, k: int = 10) -> str:
    """The k most likely next tokens as horizontal bars, most likely on top; the chosen one in red
    (it is added even when it is outside the top k, as sampling can pick it)."""
    p = torch.as_tensor(probs, dtype=torch.float64)  # (V,)
    top = torch.topk(p, min(k, p.numel())).indices.tolist()  # most likely first
    if chosen not in top:
        top.append(chosen)
    return svg.bars(
        [vocab[i] for i in top],
        [float(p[i]) for i in top],
        title=f"Next-token probabilities (top {min(k, p.numel())}); chosen: {vocab[chosen]}",
        colors=[CHOSEN if i == chosen else OTHER for i in top],
        value_text="{:.1%}".format,
    )


def probability_svg(
    vocab: Sequence[str],
    probs: Sequence[torch.Tensor],
    chosen: Sequence[int],
    step_labels: Sequence[str],
    max_columns: int = MAX_COLUMNS,
) -> str:
    """Steps x vocabulary: each row is one step's softmax distribution; an × on the chosen token.
    A vocabulary above max_columns shows its tokens most likely at some step (the chosen ones always)."""
    p = torch.stack([torch.as_tensor(q, dtype=torch.float64) for q in probs])  # (steps, V)
    columns = list(range(p.shape[1]))
    title = "Next-token distribution at every step (× = chosen)"
    if len(columns) > max_columns:
        ranked = p.max(0).values.argsort(descending=True).tolist()  # by the highest probability at any step
        keep = set(chosen) | set(ranked[: max(0, max_columns - len(set(chosen)))])
        columns = sorted(keep)  # in vocabulary order
        title += f": the {len(columns)} likeliest of {p.shape[1]} tokens"
    where = {token: j for j, token in enumerate(columns)}
    steps = len(step_labels)
    # Every step is drawn, but within MAX_GRID_HEIGHT (200 steps were a ~4,000 px chart): more steps make
    # thinner rows and fewer step labels. The token labels sit on top, next to the first steps, where a
    # reader starts.
    return svg.heatmap(
        p[:, columns].tolist(),  # (steps, columns)
        [vocab[i] for i in columns],
        list(step_labels),
        title=title,
        colors=svg.blues,
        tooltip=lambda i, j, v: f"step {step_labels[i]} · '{vocab[columns[j]]}': {v:.2%}",
        cell_width=min(28, max(MIN_COLUMN, GRID_WIDTH // len(columns))),
        cell_height=max(1, min(ROW_HEIGHT, MAX_GRID_HEIGHT // max(1, steps))),
        marks={step: where[token] for step, token in enumerate(chosen)},
        x_labels_on_top=True,
        y_title="step",
        floor=FLOOR,
    )


def causal_matrix(weights: torch.Tensor) -> list[list[float]]:
    """(t, t) attention weights as rows of floats with the masked upper triangle (key > query) as NaN."""
    w = torch.as_tensor(weights, dtype=torch.float64).clone()  # (t, t)
    t = w.shape[0]
    w[torch.ones(t, t, dtype=torch.bool).triu(1)] = math.nan
    return w.tolist()


def attention_svg(weights: torch.Tensor, labels: Sequence[str], title: str) -> str:
    """One head's causal attention: query positions (rows) x key positions (columns), token labels on
    both axes; the masked upper triangle (the future) is NaN and left empty."""
    # Labels repeat ("the ... the"): the position prefix tells them apart, in the labels and the hover text.
    ticks = [f"{i}:{tok}" for i, tok in enumerate(labels)]
    return svg.heatmap(
        causal_matrix(weights),
        ticks,
        ticks,
        title=title,
        colors=svg.viridis,
        tooltip=lambda i, j, v: f"query {ticks[i]} · key {ticks[j]} · weight {v:.2f}",
        cell_width=max(1, min(24, ATTENTION_GRID // max(1, len(ticks)))),
        cell_height=max(1, min(24, ATTENTION_GRID // max(1, len(ticks)))),
        x_title="key (attended to)",
        y_title="query",
        color_bar=False,  # the page says once what the colours mean, and the cells keep the width
        font_size=ATTENTION_FONT,
    )
