"""Plotly figures of the Train page (no st.* calls), built from a run's lists.

Memorize sentences: the loss per epoch (linear or log scale), memorization at the epochs it was scored,
the gradient norm. Language model: training and validation loss on one chart with the unigram baseline
(x: steps or tokens seen), the learning-rate schedule, and several runs' curves overlaid. Both log-scale
charts use one axis helper (`common.charts.log_axis`), so their ticks read alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from playground.common.charts import LINE, layout, log_axis, series, waiting
from playground.train.logic import Run

TRAIN, VAL, BASE = "#1f77b4", "#d62728", "#7f7f7f"
RUN_HEIGHT = 320  # the Language model mode's charts: a legend below each


def _epoch_axis(fig: go.Figure, planned: int | None) -> None:
    """The x axis spans the planned epochs, so a curve grows across it (and an empty chart is 1..planned)."""
    if planned:
        fig.update_xaxes(range=[1, max(2, planned)])


# ---------------------------------------------------------------- Memorize sentences
def loss_figure(
    epochs: Sequence[int], losses: Sequence[float], log_y: bool = False, planned: int | None = None
) -> go.Figure:
    """The training loss per epoch; `log_y` shows the slow tail of the fall. With no losses yet, an
    empty chart over the planned epochs (and loss 0..1), not plotly's default -1..6 x -1..4."""
    x, y = series(epochs, losses)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", name="loss", line=dict(color=LINE)))
    layout(fig, "Loss (cross-entropy)", "epoch", "loss" + (" (log scale)" if log_y else ""))
    _epoch_axis(fig, planned)
    if y.size == 0:
        fig.update_xaxes(range=[1, max(2, planned or 100)])
        fig.update_yaxes(range=[0, 1])
    elif log_y:
        log_axis(fig, y)
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
    layout(fig, f"Memorized sentences (of {n_sentences})", "epoch", "sentences")
    _epoch_axis(fig, planned)
    fig.update_yaxes(range=[-0.3, n_sentences + 0.3])
    return fig


def grad_norm_figure(epochs: Sequence[int], norms: Sequence[float], planned: int | None = None) -> go.Figure:
    """The global L2 norm of all gradients per epoch (log scale: it spans decades)."""
    x, y = series(epochs, norms)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", line=dict(color="#ff7f0e")))
    layout(fig, "Gradient norm", "epoch", "‖g‖ (log scale)")
    _epoch_axis(fig, planned)
    return log_axis(fig, y)


# ---------------------------------------------------------------- Language model
def _x(steps: Sequence[int], per_step: int, tokens: bool) -> list:
    return [s * per_step for s in steps] if tokens else list(steps)


def run_loss_figure(run: Run | None, tokens: bool = False, planned: int | None = None) -> go.Figure:
    """Training loss per step and validation loss at each validation, on one chart, and the unigram
    baseline (a model that ignores order) as a dashed line. Before a run: an empty chart."""
    fig = go.Figure()
    xlabel = "tokens seen" if tokens else "step"
    if run is not None and run.steps:
        x, y = series(_x(run.steps, run.tokens_per_step, tokens), run.losses)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="training", line=dict(color=TRAIN)))
        fig.add_trace(
            go.Scatter(
                x=_x(run.val_steps, run.tokens_per_step, tokens), y=list(run.val_losses), mode="lines+markers",
                name="validation", line=dict(color=VAL),
            )
        )  # fmt: skip
        if math.isfinite(run.unigram):
            fig.add_hline(
                y=run.unigram, line=dict(color=BASE, dash="dash"),
                annotation_text=f"unigram baseline {run.unigram:.2f}", annotation_position="top right",
            )  # fmt: skip
    fig.update_layout(
        title="Loss (cross-entropy, nats per token)", xaxis_title=xlabel, yaxis_title="loss", height=RUN_HEIGHT,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
    )  # fmt: skip
    if run is None or not run.steps:
        return waiting(fig, None if tokens else planned, "the loss")
    if planned and not tokens:
        fig.update_xaxes(range=[0, planned])
    return fig


def lr_figure(run: Run | None, planned: int | None = None) -> go.Figure:
    """The learning rate of every step: linear warmup, then cosine down to the floor."""
    x, y = series(run.steps, run.lrs) if run is not None else series([], [])
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", name="lr", line=dict(color=TRAIN)))
    fig.update_layout(
        title="Learning rate (warmup, then cosine)", xaxis_title="step", yaxis_title="lr", height=RUN_HEIGHT,
        margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
    )  # fmt: skip
    if x.size == 0:
        return waiting(fig, planned, "the learning rate")  # short: the chart is narrow at 1,024 px
    if planned:
        fig.update_xaxes(range=[0, planned])
    return fig


def compare_figure(runs: Sequence[Run], tokens: bool = False, validation: bool = True) -> go.Figure:
    """Several runs' curves overlaid (validation loss by default, else training loss), one colour each."""
    fig = go.Figure()
    for run in runs:
        if validation:
            x, y = _x(run.val_steps, run.tokens_per_step, tokens), list(run.val_losses)
        else:
            x, y = series(_x(run.steps, run.tokens_per_step, tokens), run.losses)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if validation else "lines", name=run.label()))
    fig.update_layout(
        title=f"{'Validation' if validation else 'Training'} loss of the chosen runs",
        xaxis_title="tokens seen" if tokens else "step", yaxis_title="loss", height=RUN_HEIGHT + 40,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3),
    )  # fmt: skip
    return fig
