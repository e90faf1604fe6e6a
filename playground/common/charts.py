"""What every Plotly figure of the app shares (no st.* calls): the colours, one layout call, thinning a
long curve (into numpy arrays: `series`), one log-axis helper whose ticks read as numbers, the look of a
chart before its run, and token labels escaped for Plotly. Each page draws its own figures in its
`figures.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# plotly checks `sys.modules` for pandas without importing it: while one session's thread is still
# importing pandas (st.dataframe does), another session drawing a chart would find it half-initialized
# (AttributeError: partially initialized module 'pandas'). Importing it here, when the app starts (the
# router imports this module), means no chart is ever drawn before pandas is complete.
import pandas  # noqa: F401
import plotly.graph_objects as go

CHOSEN = "#d62728"  # the chosen token, everywhere
OTHER = "#9db4d0"  # the other tokens' bars
LINE = "#1f77b4"
HEIGHT = 280
MAX_POINTS = 1000  # a curve sent to the browser twice a second stays small: longer runs are thinned


def layout(fig: go.Figure, title: str, x: str, y: str, height: int = HEIGHT) -> go.Figure:
    """The title, axis titles and height every single-trace chart uses (no legend)."""
    fig.update_layout(
        title=title, xaxis_title=x, yaxis_title=y, height=height, margin=dict(l=10, r=10, t=40, b=10), showlegend=False
    )
    return fig


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


def series(xs: Sequence, ys: Sequence, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """A curve's points, thinned, as numpy arrays: plotly checks an array at once where it checks a list
    point by point, and sends it to the browser as base64 (a Train page with 1,000-point curves redraws
    every tick for every learner: 38 ms a figure instead of 89 on a loaded 2-core machine)."""
    x, y = thin(xs, ys, max_points)
    return np.asarray(x), np.asarray(y, dtype=float)


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


def escaped(label: str) -> str:
    """A token as a Plotly label: it reads '<pad>' or '<|endoftext|>' as an HTML tag and hides it, so the
    angle brackets are escaped."""
    return label.replace("<", "&lt;").replace(">", "&gt;")
