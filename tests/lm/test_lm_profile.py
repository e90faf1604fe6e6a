"""`python -m lm profile` and its logic (lm/profile.py): sizes refused before any work, the step's matmul
FLOPs known from the sizes alone (exactly what the ops count), and a whole profile at a tiny size: its
numbers consistent with each other, ours next to PyTorch's, as text and as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

import autodiff as ad
import lm.profile as lm_profile
from autodiff.profile import node_flops, value_shapes
from lm.cli import main
from lm.model import LanguageModel, preset_config

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(preset="gpt", n_layers=1, n_heads=2, d_model=16, context=8, batch=3, steps=2)
TINY_ARGS = ["--layers", "1", "--heads", "2", "--d-model", "16", "--context", "8", "--batch", "3", "--steps", "2"]


def torch_peer(trainer):
    """The same step in plain PyTorch, the benchmark's peer (bench/nanogpt_style.py's TorchSide): autograd
    runs in tests and benchmarks, never in lm."""
    from bench.nanogpt_style import TorchSide  # noqa: PLC0415

    return TorchSide(trainer).train_step


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return lm_profile.profile_training(
            **TINY, cache_dir=tmp_path_factory.mktemp("cache"), probe_seconds=0.001, peer=torch_peer
        )
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        (dict(d_model=512, n_layers=8, context=256, batch=16), "lower the batch, context, d_model, layers or steps"),
        (dict(steps=0), "--steps must be a whole number from 1 to 50"),
        (dict(steps=51), "--steps must be a whole number from 1 to 50"),
        (dict(d_model=128, n_heads=3), "n_heads"),
        (dict(batch=0), "batch_size must be a whole number"),
    ],
)
def test_sizes_are_checked_before_any_work(sizes, message, monkeypatch, capsys):
    monkeypatch.setattr(lm_profile, "Trainer", None)  # building a trainer would fail the test
    with pytest.raises(ValueError, match=message):
        lm_profile.profile_config(**sizes)
    args = [f"--{k.replace('n_', '').replace('_', '-')}" for k in sizes]
    argv = ["profile"] + [x for k, v in zip(args, sizes.values()) for x in (k, str(v))]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_the_recipe_is_within_bounds():
    config = lm_profile.profile_config()  # nanoGPT's CPU recipe: gpt, 4 layers, d 128, context 64, batch 12
    assert (config.preset, config.n_layers, config.d_model, config.context, config.batch_size) == (
        "gpt",
        4,
        128,
        64,
        12,
    )


@pytest.mark.parametrize("preset", ["classic", "gpt", "llama"])
@pytest.mark.parametrize(("batch", "T"), [(1, 6), (2, 4), (3, 30)])  # packed (B 1, N <= 64) and batched attention
def test_step_flops_from_the_sizes_are_what_the_ops_count(preset, batch, T):
    cfg = preset_config(preset, 11, 30, d_model=8, n_layers=2, n_heads=2)
    model = LanguageModel(cfg)
    graph = model.loss_graph(batch, T)
    ids = torch.zeros(batch, T, dtype=torch.long)
    feed = {**model.param_feed(), **graph.forward.inputs(ids), graph.targets: ids.reshape(-1)}
    plan = ad.Evaluator(graph.evaluator.eval_nodes).plan(feed)
    shapes = value_shapes(plan, [feed[node] for _, node in plan.fed])
    counted = sum(
        node_flops(s.node, tuple(shapes[i] for i in s.inputs)) for s in plan.steps if s.node.op.name == "matmul"
    )
    assert counted == lm_profile.estimate_step_flops(cfg, batch, T)


def test_the_recipe_step_is_issue_20s_3_96_gflop():
    cfg = preset_config("gpt", 66, 64, d_model=128, n_layers=4, n_heads=4)  # Tiny Shakespeare's 66 tokens
    assert round(lm_profile.estimate_step_flops(cfg, 12, 64) / 1e9, 2) == 3.96


def test_a_profile_adds_up(tiny_profile):
    p = tiny_profile
    assert len(p.step_ms) == len(p.profiled_step_ms) == len(p.graph_ms) == len(p.torch_step_ms) == 2
    cfg = preset_config("gpt", 66, 8, d_model=16, n_layers=1, n_heads=2)
    assert p.matmul_flops == lm_profile.estimate_step_flops(cfg, 3, 8)
    assert p.flops > p.matmul_flops and sum(r.flops or 0 for r in p.ops) == p.flops
    assert sum(m.calls for m in p.matmuls) == next(r.calls for r in p.ops if r.op == "matmul")
    assert p.node_ms == pytest.approx(sum(r.ms for r in p.ops))
    assert p.floor_ms == pytest.approx(p.matmul_flops / p.peak_gflops_per_s / 1e6)
    assert p.floor_ratio > 1 and p.peak_gflops_per_s >= max(m.probe_gflops_per_s for m in p.matmuls)
    assert 0 < p.adamw_ms < p.outside_ms
    side = {row.kind: row for row in p.side_by_side}
    assert [r.kind for r in p.side_by_side[-2:]] == [lm_profile.OUTSIDE, lm_profile.FRAMEWORK]
    # the same matmuls on both sides: each forward product and its two backward ones
    assert side["matmul"].ours_calls == side["matmul"].torch_calls == 3 * 9
    # ours: the graph's op kinds, calling its code, and the rest of the step (batch, clipping, AdamW)
    assert sum(r.ours_ms for r in p.side_by_side) == pytest.approx(statistics.fmean(p.graph_ms) + p.outside_ms)
    assert all(r.torch_ms >= 0 for r in p.side_by_side) and side["norms"].torch_ms > 0
    assert json.loads(json.dumps(p.to_dict()))["floor_ratio"] == pytest.approx(p.floor_ratio)


def test_the_command_prints_the_tables_and_json(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("LM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lm_profile, "profile_training", _quick(lm_profile.profile_training))
    assert main(["profile", *TINY_ARGS, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "step: ",
        "op kind",
        "matmul shapes",
        "matmul peak: ",
        "x its matmul floor",
        "bench/bench_profile.py --vs-torch",  # the PyTorch side lives in the benchmark: lm never runs autograd
    ):
        assert expected in out
    assert "ours next to PyTorch" not in out
    assert any(line.startswith("matmul ") for line in out.split("op kind")[1].splitlines())
    assert main(["profile", *TINY_ARGS, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["d_model"] == 16 and data["side_by_side"] == [] and data["torch_profiled_ms"] is None


def _quick(profile_training):
    """The profile with a shorter matmul probe (its length is not what the command tests)."""
    return lambda **sizes: profile_training(**sizes, probe_seconds=0.001)


# --- the toggles (the Systems page's): each changes what it says, and nothing else -------------------

SMALL = dict(preset="gpt", n_layers=1, n_heads=2, d_model=32, context=8, batch=3, steps=1, probe_seconds=0.001)


def test_packed_attention_can_be_forced_either_way(one_thread, tmp_path):
    """B 3 x T 8 packs by default; `packed=False` runs batched attention: other matmul shapes (scores per
    sequence, not over all rows), fewer FLOPs, each counted by estimate_step_flops; the same loss."""
    packed = lm_profile.profile_training(**SMALL, cache_dir=tmp_path)
    batched = lm_profile.profile_training(**SMALL, cache_dir=tmp_path, packed=False)
    assert (packed.settings["packed"], batched.settings["packed"]) == (True, False)
    cfg = preset_config("gpt", 66, 8, d_model=32, n_layers=1, n_heads=2)
    assert packed.matmul_flops == lm_profile.estimate_step_flops(cfg, 3, 8, packed=True)
    assert batched.matmul_flops == lm_profile.estimate_step_flops(cfg, 3, 8, packed=False) < packed.matmul_flops
    assert ((2, 24, 16), (2, 16, 24)) in {(m.a, m.b) for m in packed.matmuls}  # (H, N, dh) @ (H, dh, N)
    assert ((3, 2, 8, 16), (3, 2, 16, 8)) in {(m.a, m.b) for m in batched.matmuls}  # (B, H, T, dh) @ (B, H, dh, T)


@pytest.mark.parametrize("packed", [True, False])
def test_either_layout_and_unfused_gradients_give_the_same_loss_and_gradients(packed):
    model = LanguageModel(preset_config("gpt", 11, 8, d_model=16, n_layers=1, n_heads=2, dtype="float64"))
    ids = torch.tensor([[1, 4, 2, 7, 3, 0], [5, 5, 9, 1, 0, 2]])
    results = []
    for graph in (model.loss_graph(2, 6), model.loss_graph(2, 6, packed=packed, fused=False)):
        feed = {**model.param_feed(), **graph.forward.inputs(ids), graph.targets: ids.roll(-1, 1).reshape(-1)}
        results.append(graph.evaluator.run(feed))
    for ours, default in zip(*results):
        torch.testing.assert_close(ours, default, rtol=1e-10, atol=1e-12)


def test_fused_backward_nodes_off_writes_them_out(one_thread, tmp_path):
    fused = lm_profile.profile_training(**SMALL, cache_dir=tmp_path)
    unfused = lm_profile.profile_training(**SMALL, cache_dir=tmp_path, fused=False)
    fused_ops, unfused_ops = {r.op for r in fused.ops}, {r.op for r in unfused.ops}
    assert {"layernorm_gain_grads", "pick_grad", "softmax_backward", "gelu_backward"} <= fused_ops
    assert not {"layernorm_gain_grads", "pick_grad", "softmax_backward", "gelu_backward"} & unfused_ops
    assert {"mean", "power", "erf"} <= unfused_ops and unfused.nodes > fused.nodes
    assert unfused.settings["fused"] is False and unfused.matmul_flops == fused.matmul_flops


def test_the_interpreted_loop_runs_no_generated_code(one_thread, tmp_path, monkeypatch):
    def no_code(*args, **kwargs):
        raise AssertionError("the interpreted loop generated code")

    monkeypatch.setattr("autodiff.evaluator.generate", no_code)
    interpreted = lm_profile.profile_training(**SMALL, cache_dir=tmp_path, compiled=False)
    assert interpreted.settings["compiled"] is False and interpreted.ops and interpreted.node_ms > 0
    with pytest.raises(AssertionError, match="generated code"):
        lm_profile.profile_training(**SMALL, cache_dir=tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings: Linux only")
def test_freed_memory_not_kept_runs_in_a_fresh_process_and_faults_pages_in(one_thread, tmp_path, monkeypatch):
    """Measured (1 layer, d 128, context 128, batch 8): 2,000-2,700 minor page faults per step on glibc's
    defaults, 0-64 with freed memory kept. glibc's thresholds are dynamic, though: a freed block raises them,
    so what a fresh process on the defaults faults depends on what it happened to free first (one unloaded
    full-suite run measured 64). The fresh side here fixes them at glibc's starting values through malloc's
    environment, which the fresh process inherits and `keep_freed_memory` leaves alone (the user's settings
    win): every block over 128 KiB then goes back to the system when freed, in every run."""
    sizes = dict(SMALL, d_model=128, context=128, batch=8, steps=2)
    kept = lm_profile.profile_training(**sizes, cache_dir=tmp_path)  # this process: freed memory kept
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(128 * 1024))
    fresh = lm_profile.profile_training(**sizes, cache_dir=tmp_path, keep_freed=False)
    assert (kept.settings["keep_freed"], fresh.settings["keep_freed"]) == (True, False)
    assert fresh.page_faults > 200 and kept.page_faults < fresh.page_faults / 4, (kept.page_faults, fresh.page_faults)


def test_the_command_takes_the_toggles(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("LM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lm_profile, "profile_training", _quick(lm_profile.profile_training))
    toggles = ["--attention", "batched", "--unfused", "--interpreted"]
    assert main(["profile", *TINY_ARGS, *toggles]) == 0
    assert "plan: batched attention, fused backward nodes off, the interpreted loop, freed memory kept" in (
        capsys.readouterr().out
    )
    assert main(["profile", *TINY_ARGS, *toggles, "--json"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert (settings["packed"], settings["fused"], settings["compiled"]) == (False, False, False)
