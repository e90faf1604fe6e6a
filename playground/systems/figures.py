"""The Systems page's charts (Plotly, no st.*): time and FLOPs per op, each matmul shape's throughput
against this machine's peak (a roofline), the step against its matmul floor, the memory timeline of the
step's plan, and the previous profile against this one. Each takes what playground/systems/logic.py reads
from a profile.
"""

from __future__ import annotations

import plotly.graph_objects as go

from lm.profile import TrainingProfile
from playground.common.charts import HEIGHT, LINE, OTHER, layout
from playground.systems.logic import MEMORY_KINDS, Delta, bytes_per_value, intensity

BEFORE = "#9db4d0"  # the previous profile, everywhere
AFTER = LINE  # this one
PEAK = "#d62728"


def _bar_height(rows: int) -> int:
    return max(HEIGHT, 60 + 22 * rows)


def op_time_figure(rows: list[tuple[str, float, int]]) -> go.Figure:
    """Horizontal bars, the most time on top: ms per step of each op."""
    rows = rows[::-1]
    fig = go.Figure(
        go.Bar(
            x=[ms for _, ms, _ in rows], y=[op for op, _, _ in rows], orientation="h", marker_color=LINE,
            customdata=[calls for _, _, calls in rows], hovertemplate="%{y}: %{x:.3f} ms in %{customdata} calls",
        )
    )  # fmt: skip
    return layout(fig, "Time per op kind (ms per step)", "ms per step", "", _bar_height(len(rows)))


def flops_figure(rows: list[tuple[str, float]]) -> go.Figure:
    """Horizontal bars, the most work on top: MFLOP per step of each op that computes."""
    rows = rows[::-1]
    fig = go.Figure(
        go.Bar(x=[f for _, f in rows], y=[op for op, _ in rows], orientation="h", marker_color=OTHER,
               hovertemplate="%{y}: %{x:.2f} MFLOP")
    )  # fmt: skip
    return layout(fig, "FLOPs per op kind (MFLOP per step)", "MFLOP per step", "", _bar_height(len(rows)))


def roofline_figure(profile: TrainingProfile) -> go.Figure:
    """Each matmul shape's achieved GFLOP/s (ours, in the step) and plain torch.matmul's at that shape, by
    arithmetic intensity, under the machine's measured peak."""
    size = bytes_per_value(profile)
    rows = profile.matmuls
    xs = [intensity(m, size) for m in rows]
    labels = [f"{m.a} @ {m.b}, {m.calls} calls" for m in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=xs, y=[m.probe_gflops_per_s for m in rows], mode="markers", name="torch.matmul alone",
        marker=dict(color=BEFORE, size=11, symbol="diamond"), text=labels,
        hovertemplate="%{text}<br>%{x:.1f} FLOP/byte: %{y:.1f} GFLOP/s",
    ))  # fmt: skip
    fig.add_trace(go.Scatter(
        x=xs, y=[m.gflops_per_s for m in rows], mode="markers", name="in the step",
        marker=dict(color=AFTER, size=9), text=labels, hovertemplate="%{text}<br>%{x:.1f} FLOP/byte: %{y:.1f} GFLOP/s",
    ))  # fmt: skip
    fig.add_hline(
        y=profile.peak_gflops_per_s, line=dict(color=PEAK, dash="dash"),
        annotation_text=f"peak {profile.peak_gflops_per_s:.0f} GFLOP/s", annotation_position="top left",
    )  # fmt: skip
    fig.update_xaxes(type="log")
    fig.update_layout(
        title="Matmul throughput against this machine's peak", xaxis_title="arithmetic intensity (FLOP per byte)",
        yaxis_title="GFLOP/s", height=HEIGHT + 60, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=-0.3),
    )  # fmt: skip
    return fig


def floor_figure(parts: dict[str, float], floor_ms: float) -> go.Figure:
    """The profiled step as stacked parts, over the time its matmuls would take at the peak."""
    fig = go.Figure()
    colors = [LINE, OTHER, "#ff7f0e", "#2ca02c"]
    for (name, ms), color in zip(parts.items(), colors):
        fig.add_trace(go.Bar(
            x=[ms], y=["this step"], orientation="h", name=name, marker_color=color,
            hovertemplate=f"{name}: %{{x:.2f}} ms<extra></extra>",
        ))  # fmt: skip
    fig.add_trace(go.Bar(
        x=[floor_ms], y=["matmul floor"], orientation="h", name="the matmuls at peak", marker_color=PEAK,
        hovertemplate="the step's matmul FLOPs at the peak: %{x:.2f} ms<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(
        barmode="stack", title="The step against its matmul floor (ms)", xaxis_title="ms per step",
        height=HEIGHT, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.35),
    )  # fmt: skip
    return fig


MEMORY_COLORS = {"parameters": "#7f7f7f", "inputs": "#bcbd22", "activations": LINE, "temporaries": "#ff7f0e",
                 "outputs": "#2ca02c"}  # fmt: skip


def memory_figure(series: dict[str, list[float]], names: list[str], peak_step: int, peak_mib: float) -> go.Figure:
    """Stacked areas: MiB alive after each step of the plan, by category, with the peak step marked."""
    steps = list(range(1, len(names) + 1))
    fig = go.Figure()
    for kind in MEMORY_KINDS:
        fig.add_trace(go.Scatter(
            x=steps, y=series[kind], name=kind, stackgroup="memory", mode="lines", line=dict(width=0.5),
            fillcolor=MEMORY_COLORS[kind], marker_color=MEMORY_COLORS[kind], customdata=names,
            hovertemplate=f"{kind}: %{{y:.2f}} MiB<br>after step %{{x}} (%{{customdata}})<extra></extra>",
        ))  # fmt: skip
    fig.add_vline(x=peak_step + 1, line=dict(color=PEAK, dash="dash"))
    fig.add_annotation(x=peak_step + 1, y=1, yref="paper", text=f"peak {peak_mib:.2f} MiB", showarrow=False,
                       xanchor="left", yanchor="top", font=dict(color=PEAK))  # fmt: skip
    fig.update_layout(
        title="Memory alive along the plan (MiB)", xaxis_title="step of the plan (forward, then backward)",
        yaxis_title="MiB", height=HEIGHT + 60, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=-0.3),
    )  # fmt: skip
    return fig


def delta_figure(change: Delta) -> go.Figure:
    """Grouped bars per kind of work: the previous profile's ms per step beside this one's."""
    kinds = [k for k, _, _ in change.kinds][::-1]
    before = [b for _, b, _ in change.kinds][::-1]
    after = [a for _, _, a in change.kinds][::-1]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=before, y=kinds, orientation="h", name="previous", marker_color=BEFORE,
                         hovertemplate="previous: %{x:.3f} ms<extra>%{y}</extra>"))  # fmt: skip
    fig.add_trace(go.Bar(x=after, y=kinds, orientation="h", name="this profile", marker_color=AFTER,
                         hovertemplate="this profile: %{x:.3f} ms<extra>%{y}</extra>"))  # fmt: skip
    fig.update_layout(
        barmode="group", title="Time per kind of work: previous vs this profile (ms per step)",
        xaxis_title="ms per step", height=_bar_height(2 * len(kinds)), margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=-0.15),
    )  # fmt: skip
    return fig
