"""Plotly figures for the Train and Generate pages, built from plain lists and tensors (no st.* calls).

Training: the loss curve (linear or log scale), memorization over time, the gradient norm. Generation:
top-k next-token bars, a steps x vocabulary probability heatmap, and one causal attention heatmap per
layer and head whose masked upper triangle is NaN (drawn empty), with token labels on both axes.
Both log-scale charts use one axis helper (`log_axis`), so their ticks read alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# plotly checks `sys.modules` for pandas without importing it: while one session's thread is still
# importing pandas (st.dataframe does), another session drawing a chart would find it half-initialized
# (AttributeError: partially initialized module 'pandas'). Importing it here, when the app starts,
# means no chart is ever drawn before pandas is complete.
import pandas  # noqa: F401
import plotly.graph_objects as go
import torch

CHOSEN = "#d62728"  # the chosen token, everywhere
OTHER = "#9db4d0"  # the other tokens' bars
LINE = "#1f77b4"
HEIGHT = 280


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        title=title, xaxis_title=x, yaxis_title=y, height=height, margin=dict(l=10, r=10, t=40, b=10), showlegend=False
    )
    return fig


# ---------------------------------------------------------------- training


MAX_POINTS = 1000  # a curve sent to the browser twice a second stays small: longer runs are thinned
MAX_COLUMNS = 80  # the probability heatmap shows at most this many tokens of a large vocabulary
ATTENTION_MAX_HEIGHT = 520  # px: a long prompt's heatmap stays within a screen


def thin(xs: Sequence, ys: Sequence, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """At most about max_points evenly spaced points, always keeping the last one."""
    xs, ys = list(xs), list(ys)
    if len(xs) <= max_points:
        return xs, ys
    stride = math.ceil(len(xs) / max_points)
    keep = list(range(0, len(xs), stride))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def log_ticks(values: Sequence[float]) -> list[float]:
    """1-2-5 ticks spanning the positive values, for a log axis whose labels read as plain numbers
    (plotly's own minor labels on a short log axis are bare digits: '2  1  5  2')."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return []
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    return [m * 10.0**e for e in range(low, high + 1) for m in (1, 2, 5)]


def log_axis(fig: go.Figure, values: Sequence[float]) -> go.Figure:
    """Make the y axis logarithmic with 1-2-5 ticks labelled as plain numbers (0.5, not plotly's '5')."""
    ticks = log_ticks(values)
    fig.update_yaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return fig


def _epoch_axis(fig: go.Figure, planned: int | None) -> None:
    """The x axis spans the planned epochs, so a curve grows across it (and an empty chart is 1..planned)."""
    if planned:
        fig.update_xaxes(range=[1, max(2, planned)])


def loss_figure(
    epochs: Sequence[int], losses: Sequence[float], log_y: bool = False, planned: int | None = None
) -> go.Figure:
    """The training loss per epoch; `log_y` shows the slow tail of the fall. With no losses yet, an
    empty chart over the planned epochs (and loss 0..1), not plotly's default -1..6 x -1..4."""
    x, y = thin(epochs, losses)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", name="loss", line=dict(color=LINE)))
    _layout(fig, "Loss (cross-entropy)", "epoch", "loss" + (" (log scale)" if log_y else ""))
    _epoch_axis(fig, planned)
    if not y:
        fig.update_xaxes(range=[1, max(2, planned or 100)])
        fig.update_yaxes(range=[0, 1])
    elif log_y:
        log_axis(fig, y)
    return fig


def waiting(fig: go.Figure, planned: int | None, what: str = "the curve") -> go.Figure:
    """A chart before its run: the x axis over the planned steps (or none), no y ticks, and a line saying
    what will appear, instead of plotly's meaningless default axes (-1..6 x -1..4)."""
    fig.update_xaxes(range=[0, planned or 1], showticklabels=bool(planned))
    fig.update_yaxes(range=[0, 1], showticklabels=False, showgrid=False, zeroline=False)
    fig.add_annotation(
        text=f"{what} appears here when the run starts", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font=dict(color="#7f7f7f"),
    )  # fmt: skip
    return fig


def gapped(epochs: Sequence[int], values: Sequence[float]) -> tuple[list, list]:
    """The points with a None between two that are not consecutive epochs, so a line is drawn only
    between epochs next to each other, never across epochs that were not measured."""
    xs: list = []
    ys: list = []
    for i, (x, y) in enumerate(zip(epochs, values)):
        if i and x - epochs[i - 1] > 1:
            xs.append(None)
            ys.append(None)
        xs.append(x)
        ys.append(y)
    return xs, ys


def memorization_figure(
    epochs: Sequence[int], scores: Sequence[int], n_sentences: int, planned: int | None = None
) -> go.Figure:
    """Sentences reproduced from their first two words, at the epochs where it was measured (a marker
    each; lines join only consecutive epochs)."""
    x, y = gapped(list(epochs), list(scores))
    fig = go.Figure(
        go.Scatter(x=x, y=y, mode="lines+markers", connectgaps=False, line=dict(color="#2ca02c"), marker=dict(size=4))
    )
    _layout(fig, f"Memorized sentences (of {n_sentences})", "epoch", "sentences")
    _epoch_axis(fig, planned)
    fig.update_yaxes(range=[-0.3, n_sentences + 0.3])
    return fig


def grad_norm_figure(epochs: Sequence[int], norms: Sequence[float], planned: int | None = None) -> go.Figure:
    """The global L2 norm of all gradients per epoch (log scale: it spans decades)."""
    x, y = thin(epochs, norms)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", line=dict(color="#ff7f0e")))
    _layout(fig, "Gradient norm", "epoch", "‖g‖ (log scale)")
    _epoch_axis(fig, planned)
    return log_axis(fig, y)


# ---------------------------------------------------------------- generation


def topk_figure(vocab: Sequence[str], probs: torch.Tensor | Sequence[float], chosen: int, k: int = 10) -> go.Figure:
    """The k most likely next tokens as horizontal bars, most likely on top; the chosen one in red
    (it is added even when it is outside the top k, as sampling can pick it)."""
    p = torch.as_tensor(probs, dtype=torch.float64)  # (V,)
    top = torch.topk(p, min(k, p.numel())).indices.tolist()
    if chosen not in top:
        top.append(chosen)
    top.reverse()  # plotly draws the first bar at the bottom
    labels = [_label(vocab[i]) for i in top]
    values = [float(p[i]) for i in top]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=[CHOSEN if i == chosen else OTHER for i in top],
            text=[f"{v:.1%}" for v in values],
            textposition="auto",
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    _layout(fig, f"Next-token probabilities (top {min(k, p.numel())}); chosen: {_label(vocab[chosen])}", "p", "")
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    return fig


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
    x = [_label(vocab[i]) for i in columns]
    y = list(step_labels)
    fig = go.Figure(
        go.Heatmap(
            z=z, x=x, y=y, colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title="p"),
            hovertemplate="step %{y}<br>%{x}: %{z:.2%}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[_label(vocab[c]) for c in chosen], y=y, mode="markers", name="chosen",
            marker=dict(symbol="x", color=CHOSEN, size=10, line=dict(width=1)),
            hovertemplate="chosen: %{x}<extra></extra>",
        )
    )  # fmt: skip
    _layout(fig, title, "token", "step", height=120 + 28 * len(y))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-60)
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
    ticks = [f"{i}:{_label(tok)}" for i, tok in enumerate(labels)]
    fig = go.Figure(
        go.Heatmap(
            z=causal_matrix(weights), x=ticks, y=ticks, colorscale="Viridis", zmin=0, zmax=1, showscale=False,
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.2f}<extra></extra>", hoverongaps=False,
        )
    )  # fmt: skip
    # No fixed width: the chart fills its grid cell whatever the window (a fixed width wider than the
    # cell clipped the cells away); the height grows with the tokens, up to a bound.
    _layout(fig, title, "key (attended to)", "query", height=min(ATTENTION_MAX_HEIGHT, 150 + 30 * len(ticks)))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_layout(plot_bgcolor="rgba(0,0,0,0)")
    return fig


def _label(token: str) -> str:
    """Plotly reads '<pad>' as an HTML tag and hides it; escape the angle brackets."""
    return token.replace("<", "&lt;").replace(">", "&gt;")
