"""Plotly figures of the Generate page, built from plain lists and tensors (no st.* calls): top-k
next-token bars, a steps x vocabulary probability heatmap, and one causal attention heatmap per layer and
head whose masked upper triangle is NaN (drawn empty), with token labels on both axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch

from playground.common.charts import CHOSEN, OTHER, escaped, layout

MAX_COLUMNS = 80  # the probability heatmap shows at most this many tokens of a large vocabulary
ATTENTION_MAX_HEIGHT = 420  # px: a long prompt's heatmap stays about square in half a 1,024 px window


def topk_figure(vocab: Sequence[str], probs: torch.Tensor | Sequence[float], chosen: int, k: int = 10) -> go.Figure:
    """The k most likely next tokens as horizontal bars, most likely on top; the chosen one in red
    (it is added even when it is outside the top k, as sampling can pick it)."""
    p = torch.as_tensor(probs, dtype=torch.float64)  # (V,)
    top = torch.topk(p, min(k, p.numel())).indices.tolist()
    if chosen not in top:
        top.append(chosen)
    top.reverse()  # plotly draws the first bar at the bottom
    labels = [escaped(vocab[i]) for i in top]
    values = [float(p[i]) for i in top]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=[CHOSEN if i == chosen else OTHER for i in top],
            text=[f"{v:.1%}" for v in values],
            textposition="auto",
            textfont=dict(size=11),
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    layout(fig, f"Next-token probabilities (top {min(k, p.numel())}); chosen: {escaped(vocab[chosen])}", "p", "")
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(uniformtext=dict(minsize=10, mode="show"))  # plotly shrank a full bar's label to 6 px
    return fig


MAX_HEAT_ROWS = 20  # the probability heatmap grows with the steps up to this many rows, then stays


def probability_heatmap(
    vocab: Sequence[str],
    probs: Sequence[torch.Tensor],
    chosen: Sequence[int],
    step_labels: Sequence[str],
    max_columns: int = MAX_COLUMNS,
) -> go.Figure:
    """Steps x vocabulary: each row is one step's softmax distribution; a marker on the chosen token.
    A vocabulary above max_columns shows its tokens most likely at some step (the chosen ones always)."""
    p = torch.stack([torch.as_tensor(q, dtype=torch.float64) for q in probs])  # (steps, V)
    columns = list(range(p.shape[1]))
    title = "Next-token distribution at every step (× = chosen)"
    if len(columns) > max_columns:
        ranked = p.max(0).values.argsort(descending=True).tolist()  # by the highest probability at any step
        keep = set(chosen) | set(ranked[: max(0, max_columns - len(set(chosen)))])
        columns = sorted(keep)
        title += f": the {len(columns)} likeliest of {p.shape[1]} tokens"
    z = p[:, columns].tolist()  # (steps, columns)
    x = [escaped(vocab[i]) for i in columns]
    y = list(step_labels)
    fig = go.Figure(
        go.Heatmap(
            z=z, x=x, y=y, colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title="p"),
            hovertemplate="step %{y}<br>%{x}: %{z:.2%}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[escaped(vocab[c]) for c in chosen], y=y, mode="markers", name="chosen",
            marker=dict(symbol="x", color=CHOSEN, size=10, line=dict(width=1)),
            hovertemplate="chosen: %{x}<extra></extra>",
        )
    )  # fmt: skip
    # At most MAX_HEAT_ROWS rows' worth of height (200 steps were a ~4,000 px chart): more steps share it,
    # and the token labels sit on top, next to the first steps, where a reader starts.
    layout(fig, title, "", "step", height=150 + 28 * min(len(y), MAX_HEAT_ROWS))
    fig.update_layout(margin=dict(t=90), title=dict(y=0.98, yanchor="top"))  # the title above the labels
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-60, side="top")
    return fig


def causal_matrix(weights: torch.Tensor) -> list[list[float | None]]:
    """(t, t) attention weights as rows of floats with the masked upper triangle (key > query) as NaN."""
    w = torch.as_tensor(weights, dtype=torch.float64).clone()  # (t, t)
    t = w.shape[0]
    w[torch.ones(t, t, dtype=torch.bool).triu(1)] = math.nan
    return w.tolist()


def attention_figure(weights: torch.Tensor, labels: Sequence[str], title: str) -> go.Figure:
    """One head's causal attention: query positions (rows) x key positions (columns), token labels on
    both axes; the masked upper triangle is NaN so plotly leaves it empty."""
    # Labels repeat ("the ... the"), and a category axis would merge them: prefix the position.
    ticks = [f"{i}:{escaped(tok)}" for i, tok in enumerate(labels)]
    fig = go.Figure(
        go.Heatmap(
            # no colour bar: the page says once what the colours mean, and the cells keep its width
            z=causal_matrix(weights), x=ticks, y=ticks, colorscale="Viridis", zmin=0, zmax=1, showscale=False,
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.2f}<extra></extra>", hoverongaps=False,
        )
    )  # fmt: skip
    # No fixed width: the chart fills its grid cell whatever the window (a fixed width wider than the
    # cell clipped the cells away); the height grows with the tokens, up to a bound.
    layout(fig, title, "key (attended to)", "query", height=min(ATTENTION_MAX_HEIGHT, 150 + 30 * len(ticks)))
    fig.update_yaxes(autorange="reversed", type="category")
    # At most about 8 key and 16 query labels (plotly skips the others): 32 positions' labels collided in a
    # heatmap ~200 px wide. Hovering a cell names both tokens.
    fig.update_xaxes(type="category", tickangle=-45, nticks=8)
    fig.update_yaxes(nticks=16)
    fig.update_layout(plot_bgcolor="rgba(0,0,0,0)")
    return fig
