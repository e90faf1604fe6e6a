"""The Tokenizer page's chart (no st.* here): bytes per token of the training text against the number of
merges used, the chosen k marked."""

from __future__ import annotations

import plotly.graph_objects as go

from playground.common.charts import CHOSEN, LINE


def curve_figure(ks: list[int], values: list[float], k: int | None = None) -> go.Figure:
    """Bytes per token at each number of merges k; the k the explorer shows as a dotted line."""
    fig = go.Figure(go.Scatter(x=ks, y=values, mode="lines+markers", line=dict(color=LINE), name="bytes/token"))
    if k is not None:
        fig.add_vline(x=k, line=dict(color=CHOSEN, dash="dot"))
    fig.update_layout(
        title="Bytes per token of the training text against merges", xaxis_title="merges used (k)",
        yaxis_title="bytes per token", height=280, margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
    )  # fmt: skip
    return fig
