"""Plotly figures of the Train page's language-model mode (no st.* calls): training and validation
loss on one chart with the unigram baseline (x: steps or tokens seen), the learning-rate schedule,
and the comparison of several runs' curves overlaid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from playground.charts import thin, waiting
from playground.textrun_session import RunRecord

TRAIN, VAL, BASE = "#1f77b4", "#d62728", "#7f7f7f"
HEIGHT = 320


def _x(steps: Sequence[int], per_step: int, tokens: bool) -> list:
    return [s * per_step for s in steps] if tokens else list(steps)


def loss_figure(run: RunRecord | None, tokens: bool = False, planned: int | None = None) -> go.Figure:
    """Training loss per step and validation loss at each validation, on one chart, and the unigram
    baseline (a model that ignores order) as a dashed line. Before a run: an empty chart."""
    fig = go.Figure()
    xlabel = "tokens seen" if tokens else "step"
    if run is not None and run.steps:
        x, y = thin(_x(run.steps, run.tokens_per_step, tokens), run.losses)
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
        title="Loss (cross-entropy, nats per token)", xaxis_title=xlabel, yaxis_title="loss", height=HEIGHT,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
    )  # fmt: skip
    if run is None or not run.steps:
        return waiting(fig, None if tokens else planned, "the loss")
    if planned and not tokens:
        fig.update_xaxes(range=[0, planned])
    return fig


def lr_figure(run: RunRecord | None, planned: int | None = None) -> go.Figure:
    """The learning rate of every step: linear warmup, then cosine down to the floor."""
    x, y = thin(run.steps, run.lrs) if run is not None else ([], [])
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", name="lr", line=dict(color=TRAIN)))
    fig.update_layout(
        title="Learning rate (warmup, then cosine)", xaxis_title="step", yaxis_title="lr", height=HEIGHT,
        margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
    )  # fmt: skip
    if not x:
        return waiting(fig, planned, "the learning rate of each step")
    if planned:
        fig.update_xaxes(range=[0, planned])
    return fig


def compare_figure(runs: Sequence[RunRecord], tokens: bool = False, validation: bool = True) -> go.Figure:
    """Several runs' curves overlaid (validation loss by default, else training loss), one colour each."""
    fig = go.Figure()
    for run in runs:
        if validation:
            x, y = _x(run.val_steps, run.tokens_per_step, tokens), list(run.val_losses)
        else:
            x, y = thin(_x(run.steps, run.tokens_per_step, tokens), run.losses)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if validation else "lines", name=label(run)))
    fig.update_layout(
        title=f"{'Validation' if validation else 'Training'} loss of the chosen runs",
        xaxis_title="tokens seen" if tokens else "step", yaxis_title="loss", height=HEIGHT + 40,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3),
    )  # fmt: skip
    return fig


def label(run: RunRecord) -> str:
    """A run's short name in legends and pickers: its number, preset and what it changed."""
    s = run.settings
    parts = ",".join(f"{k}={v}" for k, v in sorted(s["parts"].items()))
    return f"run {run.number}: {s['preset']}{f' ({parts})' if parts else ''}, {s['tokenizer']}, d{s['d_model']}"
