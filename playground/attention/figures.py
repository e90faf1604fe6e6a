"""Plotly heatmaps for the Attention page: one matrix with its value written in every cell, token labels
on both axes and a colour scale; and how a step's matrices are laid out in rows that fit a 1024 px window.
Built from logic.py's `Matrix` (plain tensors and labels); no st.* here.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from playground.attention.logic import Matrix
from playground.common.charts import escaped

CELL_PX = 30  # height per row: room for a value in 11 px type
NARROW_COLUMNS = 4  # a matrix this narrow (x, W_q, q...) shares a row with two others
PAIR_COLUMNS = 6  # two square matrices side by side only up to this many tokens (cells stay legible)


def cell_text(value: float) -> str:
    """A value as its cell shows it: two decimals, scientific when huge or tiny, ±∞ and nan by name."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.005:  # as short as a cell allows: "-2e15", "4e-3"
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.2f}"


def colour_range(matrix: Matrix) -> tuple[float, float, str]:
    """(zmin, zmax, colourscale): weights on a fixed 0..1 scale (a value outside shows saturated), other
    matrices on a diverging scale centred at 0 over their largest finite magnitude."""
    if matrix.kind == "weights":
        return 0.0, 1.0, "Blues"
    finite = [abs(v) for row in matrix.values.tolist() for v in row if math.isfinite(v)]
    top = max(finite, default=1.0) or 1.0
    return -top, top, "RdBu_r"


def heatmap(matrix: Matrix) -> go.Figure:
    """One annotated heatmap: rows x columns of `matrix`, the value in each cell, hover with both labels."""
    rows = matrix.values.tolist()
    z = [[v if math.isfinite(v) else None for v in row] for row in rows]  # JSON has no inf or nan
    text = [[cell_text(v) for v in row] for row in rows]
    exact = [[f"{v:.6g}" for v in row] for row in rows]  # the hover shows more digits than the cell
    zmin, zmax, scale = colour_range(matrix)
    x, y = [escaped(c) for c in matrix.columns], [escaped(r) for r in matrix.rows]
    trace = dict(
        type="heatmap", z=z, x=x, y=y, text=text, customdata=exact, texttemplate="%{text}",
        textfont=dict(size=11), zmin=zmin, zmax=zmax, colorscale=scale, hoverongaps=False,
        colorbar=dict(thickness=8, nticks=4, tickfont=dict(size=10), len=1.0, xpad=4),
        hovertemplate="row %{y}<br>column %{x}<br>value %{customdata}<extra></extra>",
    )  # fmt: skip
    layout = dict(
        title=dict(text=escaped(matrix.title), font=dict(size=13)),
        height=110 + CELL_PX * len(y),
        margin=dict(l=10, r=10, t=36, b=10),
        plot_bgcolor="#f1f3f4",  # masked cells (no colour) read as grey, not as the page's white
        yaxis=dict(autorange="reversed", type="category"),
        xaxis=dict(type="category", tickangle=-45),
    )
    # one constructor call: each later update_* re-validates the figure (a page draws ~30 of these)
    fig = go.Figure(data=[trace], layout=layout)
    return fig


def rows_of(matrices: list[Matrix]) -> list[list[Matrix]]:
    """Matrices grouped into page rows, in order: up to three narrow ones together, two small squares
    together, anything wider alone; so every cell keeps room for its value in a 1024 px window."""
    rows: list[list[Matrix]] = []
    for m in matrices:
        per_row = _per_row(m)
        last = rows[-1] if rows else None
        if last and len(last) < per_row and all(_per_row(o) == per_row for o in last):
            last.append(m)
        else:
            rows.append([m])
    return rows


def _per_row(m: Matrix) -> int:
    width = len(m.columns)
    return 3 if width <= NARROW_COLUMNS else 2 if width <= PAIR_COLUMNS else 1
