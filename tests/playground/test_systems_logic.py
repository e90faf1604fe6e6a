"""The Systems page's logic without Streamlit: lm's bound refuses a profile before any work, a tiny profile's
numbers read back as the charts draw them (op times and FLOPs adding up to the profile's, the step's parts,
each matmul shape's intensity), and the delta view names what changed and by how much."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch

from lm.profile import FRAMEWORK, OUTSIDE
from playground.systems import logic as sy
from playground.systems.figures import (
    delta_figure,
    floor_figure,
    flops_figure,
    memory_figure,
    op_time_figure,
    roofline_figure,
)

TINY = sy.Settings(preset="gpt", n_layers=1, n_heads=2, d_model=32, context=8, batch=2, steps=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny profile, then the same with fused backward nodes off (one torch thread: a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cache = tmp_path_factory.mktemp("cache")
        return sy.run(TINY, cache_dir=cache), sy.run(dataclasses.replace(TINY, fused=False), cache_dir=cache)
    finally:
        torch.set_num_threads(threads)


def test_lm_refuses_too_big_a_profile_before_any_work(monkeypatch):
    monkeypatch.setattr(sy, "profile_training", None)  # running a profile would fail the test
    big = dataclasses.replace(TINY, n_layers=16, d_model=512, context=512, batch=64)
    with pytest.raises(sy.ProfileError, match="lower the batch, context, d_model, layers or steps"):
        sy.run(big)
    with pytest.raises(sy.ProfileError, match="n_heads"):
        sy.check(dataclasses.replace(TINY, n_heads=3))  # 32 is not a multiple of 3
    sy.check(sy.Settings())  # the page's defaults run


def test_batched_attention_is_part_of_the_bound():
    """Packed attention scores every row against every row: at B 32 x T 256 lm refuses it, batched runs."""
    wide = dataclasses.replace(TINY, batch=32, context=256, d_model=64, steps=3)
    sy.check(dataclasses.replace(wide, layout="batched"))
    with pytest.raises(sy.ProfileError, match="GFLOP"):
        sy.check(dataclasses.replace(wide, layout="packed"))


def test_op_rows_add_up_to_the_profile(runs):
    p = runs[0].profile
    rows = sy.op_times(p, top=5)
    assert len(rows) == 6 and rows[-1][0] == sy.OTHER
    assert sum(ms for _, ms, _ in rows) == pytest.approx(p.node_ms)
    assert sum(calls for _, _, calls in rows) == sum(r.calls for r in p.ops)
    assert sum(f for _, f in sy.op_flops(p)) == pytest.approx(p.flops / 1e6)
    table = sy.op_table(p)
    assert [row["op"] for row in table] == [r.op for r in p.ops] and table[0]["ms per step"] == round(p.ops[0].ms, 3)
    assert next(row for row in table if row["op"] == "matmul")["kind"] == "matmul"
    kinds = sy.kind_times(p)
    assert kinds["matmul"] == pytest.approx(next(r.ms for r in p.ops if r.op == "matmul"))
    assert kinds[OUTSIDE] == p.outside_ms and kinds[FRAMEWORK] >= 0
    parts = sy.step_parts(p)
    assert sum(parts.values()) == pytest.approx(sum(kinds.values()))
    assert parts["matmuls"] == kinds["matmul"]


def test_intensity_of_a_matmul_shape():
    # (16, 32) @ (32, 8): 2*16*8*32 FLOPs over (16*32 + 32*8 + 16*8) float32 values
    row = sy.MatmulRow((16, 32), (32, 8), 3, 0.1, 3 * 2 * 16 * 8 * 32, 1.0, 1.0)
    assert sy.intensity(row, 4) == pytest.approx(2 * 16 * 8 * 32 / ((16 * 32 + 32 * 8 + 16 * 8) * 4))
    batched = sy.MatmulRow((4, 2, 8, 16), (4, 2, 16, 8), 1, 0.1, 2 * 8 * 8 * 16 * 8, 1.0, 1.0)
    assert sy.intensity(batched, 8) == pytest.approx(2 * 8 * 8 * 16 * 8 / ((2 * 8 * 16 * 8 + 8 * 8 * 8) * 8))


def test_delta_names_the_toggle_and_the_kinds_it_moved(runs):
    fused, unfused = runs
    change = sy.delta(fused, unfused)
    assert change.changed == ["fused: True → False"]
    assert change.step_before == fused.profile.step and change.step_after == unfused.profile.step
    kinds = {k: (before, after) for k, before, after in change.kinds}
    assert set(kinds) == set(sy.kind_times(fused.profile)) | set(sy.kind_times(unfused.profile))
    assert kinds["reductions"][1] > kinds["reductions"][0]  # the written-out norms' means and sums
    assert "unfused" in unfused.settings.describe() and "fused" in fused.settings.describe()
    assert sy.changes(TINY, TINY) == []


def test_summary_and_figures_carry_the_profiles_numbers(runs):
    this = runs[0]
    p = this.profile
    assert f"{p.floor_ratio:.1f}×" in sy.summary(this) and f"{p.step:.1f} ms" in sy.summary(this)
    bars = op_time_figure(sy.op_times(p)).data[0]
    assert list(bars.y)[::-1] == [op for op, _, _ in sy.op_times(p)]  # the most time on top
    assert flops_figure(sy.op_flops(p)).data[0].x[-1] == sy.op_flops(p)[0][1]
    roofline = roofline_figure(p)
    assert [trace.name for trace in roofline.data] == ["torch.matmul alone", "in the step"]
    assert list(roofline.data[1].y) == [m.gflops_per_s for m in p.matmuls]
    assert roofline.layout.shapes[0].y0 == p.peak_gflops_per_s
    floor = floor_figure(sy.step_parts(p), p.floor_ms)
    assert floor.data[-1].x[0] == p.floor_ms and len(floor.data) == 5
    delta = delta_figure(sy.delta(*runs))
    assert [trace.name for trace in delta.data] == ["previous", "this profile"]


def test_memory_views_read_the_plans_timeline(runs):
    t = runs[0].profile.memory
    series = sy.memory_series(t)
    assert set(series) == set(sy.MEMORY_KINDS) and all(len(ys) == len(t.names) for ys in series.values())
    for i in (0, t.peak_step, len(t.names) - 1):  # the stacked areas add up to the bytes alive after each step
        assert sum(ys[i] for ys in series.values()) * sy.MIB == pytest.approx(t.total_after(i))
    assert sum(sy.memory_peak(t).values()) * sy.MIB == pytest.approx(t.peak)
    rows = sy.alive_table(t, top=3)
    assert [row["value"] for row in rows] == [v.name for v in t.alive_at_peak[:3]]
    assert rows[0]["KiB"] == round(t.alive_at_peak[0].bytes / 1024, 1)
    assert f"{t.peak / sy.MIB:.2f} MiB" in sy.memory_summary(runs[0]) and t.names[t.peak_step] in sy.memory_summary(
        runs[0]
    )
    figure = memory_figure(series, t.names, t.peak_step, t.peak / sy.MIB)
    assert [trace.name for trace in figure.data] == list(sy.MEMORY_KINDS)
    assert figure.layout.shapes[0].x0 == t.peak_step + 1


def test_remat_lowers_the_activations_the_delta_shows(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        two = dataclasses.replace(TINY, n_layers=2)
        kept, remat = sy.run(two, cache_dir=tmp_path), sy.run(dataclasses.replace(two, remat=True), cache_dir=tmp_path)
    finally:
        torch.set_num_threads(threads)
    change = sy.delta(kept, remat)
    assert change.changed == ["remat: False → True"]
    assert change.activations_after < change.activations_before
    assert change.activations_before == kept.profile.memory.peak_of("activations") / sy.MIB
    assert "checkpointed blocks" in remat.settings.describe()


def test_one_profile_at_a_time_per_server(monkeypatch):
    """Two sessions asking at once: the second profile starts when the first has ended."""
    spans = []

    def profile_training(**kwargs):
        start = time.monotonic()
        time.sleep(0.2)
        spans.append((start, time.monotonic()))
        return "a profile"

    monkeypatch.setattr(sy, "profile_training", profile_training)
    sessions = [threading.Thread(target=sy.run, args=(TINY,)) for _ in range(2)]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join()
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end
