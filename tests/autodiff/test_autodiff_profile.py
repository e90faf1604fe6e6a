"""Profiled runs of the generated code and the ops' FLOP rules (autodiff/profile.py, codegen's profile=True).

The profiled code is the plain code plus clock readings, and computes the same bits; its per-node times
add up to the call measured around it, and it costs little (both on the classic recipe's model step);
every exported op counts its FLOPs from shapes (matmul's exactly); a failing op in profiled code is
still named; profiled CUDA runs synchronize.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from test_autodiff_ops import CASES, make_value

import autodiff as ad
from autodiff import ops
from autodiff.codegen import generate
from autodiff.ops.base import OpBase
from autodiff.plan import make_plan
from autodiff.profile import node_flops, probe_matmuls, profile_runs, summarize, value_shapes
from lm.train import TrainConfig, Trainer


def small_graph():
    x, w = ad.Variable("x"), ad.Variable("w")
    loss = ad.sum_op(ad.relu(x @ w) * 2.0)
    nodes = [loss, *ad.gradients(loss, [x, w])]
    feed = {x: torch.randn(4, 3, dtype=torch.float64), w: torch.randn(3, 5, dtype=torch.float64)}
    return nodes, feed


@pytest.fixture(scope="module")
def classic_step():
    """The classic recipe's model step: the trainer's loss-and-gradients Evaluator and the feed of its batch."""
    trainer = Trainer(TrainConfig.recipe("classic", eval_every=0))
    feed = {**trainer.model.param_feed(), **trainer.graph.forward.inputs(trainer.source.ids)}
    feed[trainer.graph.targets] = trainer.source.targets.reshape(-1)
    return trainer.graph.evaluator, feed


# ------------------------------------------------------------------------------- the profiled code


def test_profiled_code_is_the_plain_code_plus_clock_readings():
    nodes, feed = small_graph()
    plan = make_plan(nodes, feed)
    for checks in (True, False):
        plain = generate(plan, checks=checks).source.splitlines()
        profiled = generate(plan, checks=checks, profile=True).source.splitlines()
        clock = {"    _laps = []", "    _lap = _laps.append", "    _lap(_clock())"}
        assert [line for line in profiled[:-1] if line not in clock] == plain[:-1]
        assert profiled[-1] == plain[-1] + ", _laps"
        assert profiled.count("    _lap(_clock())") == len(plan.steps) + 1  # before the first step, after each


@pytest.mark.parametrize("preset", ["classic", "gpt", "llama"])
def test_profiled_runs_compute_the_same_bits(preset):
    """The model's loss and every gradient, from its checked run and from its code made for the shapes."""
    from lm.model import LanguageModel, preset_config  # noqa: PLC0415

    model = LanguageModel(preset_config(preset, 11, 6, d_model=8, n_layers=2, n_heads=2, seed=1))
    ids = torch.tensor([[1, 4, 2, 7, 3], [5, 5, 9, 1, 0]])
    graph = model.loss_graph(*ids.shape)
    feed = {**model.param_feed(), **graph.forward.inputs(ids), graph.targets: ids.roll(-1, 1).reshape(-1)}
    plain, profiled = ad.Evaluator(graph.evaluator.eval_nodes), ad.Evaluator(graph.evaluator.eval_nodes, profile=True)
    for _ in range(3):  # checked, then specialized
        for a, b in zip(plain.run(feed), profiled.run(feed)):
            assert torch.equal(a, b)
        assert len(profiled.last_profile.step_ns) == len(profiled.plan(feed).steps)


def test_interpreted_runs_are_profiled_by_the_loop_without_generated_code(monkeypatch):
    nodes, feed = small_graph()
    expected = ad.Evaluator(nodes).run(feed)

    def no_code(*args, **kwargs):
        raise AssertionError("an interpreted run generated code")

    monkeypatch.setattr("autodiff.evaluator.generate", no_code)
    evaluator = ad.Evaluator(nodes, compiled=False, profile=True)
    for a, b in zip(evaluator.run(feed), expected):
        assert torch.equal(a, b)
    run = evaluator.last_profile
    assert len(run.step_ns) == len(evaluator.plan(feed).steps) and sum(run.step_ns) <= run.call_ns
    assert summarize([run]).by_op()  # what a profile reads from it


def test_profile_is_refused_with_a_ready_callback():
    nodes, feed = small_graph()
    with pytest.raises(ValueError, match="ready"):
        ad.Evaluator(nodes, profile=True).run(feed, ready=lambda k, v: None)


def test_a_failing_op_in_profiled_code_is_named():
    x, w = ad.Variable("x"), ad.Variable("w")
    evaluator = ad.Evaluator([ad.matmul(x, w)], profile=True)
    with pytest.raises(ad.OpError, match=r"matmul failed at node '\(x@w\)' on inputs of shapes \(2, 3\), \(4, 5\)"):
        evaluator.run({x: torch.ones(2, 3), w: torch.ones(4, 5)})


def test_profile_records_per_node_per_op_and_per_matmul_shape():
    nodes, feed = small_graph()
    profile = profile_runs(ad.Evaluator(nodes), feed, runs=3)
    assert profile.runs == 3 and len(profile.call_ns) == 3
    assert [n.op for n in profile.nodes] == [s.node.op.name for s in ad.Evaluator(nodes).plan(feed).steps]
    by_op = {k.op: k for k in profile.by_op()}
    assert by_op["matmul"].calls == 3 and by_op["matmul"].flops == 3 * 2 * 4 * 3 * 5  # x@w, g@w^T, x^T@g
    assert sum(k.ns for k in by_op.values()) == pytest.approx(profile.node_ns)
    assert by_op["sum_to_shape"].calls == 0  # identity at these shapes: assignments in the code for them
    shapes = {(m.a, m.b): m.calls for m in profile.matmuls()}
    assert shapes == {((4, 3), (3, 5)): 1, ((4, 5), (5, 3)): 1, ((3, 4), (4, 5)): 1}
    assert profile.flops == sum(n.flops for n in profile.nodes)
    with pytest.raises(ValueError, match="no profiled runs"):
        summarize([])


def test_profiling_costs_little_and_its_node_times_add_up_to_the_step(classic_step):
    """Issue 20's two promises, on the classic recipe's model step (loss and every gradient: ~100 nodes,
    about a millisecond). (1) The per-node times add up to the call measured around them within 5% (the
    readings cover all of the call but its entry and return): never more than the call, and within 5% in
    the median run of each round (one run in hundreds can be preempted at its entry or return). (2) Profiling costs at
    most 10%: per round, the fastest profiled run over the fastest plain run, from 30 pairs of runs back to
    back (which goes first alternates); of seven rounds the median is judged. The fastest, not the median:
    being preempted only adds time, and with both cores kept busy by other processes the medians of a
    round varied by 0.78-1.20 (a stressed CI run judged 1.11), while profiling's own cost (two clock
    readings a node) is in every profiled run, the fastest included. (3) The per-node times add up to the
    plain, unprofiled run within 5%, judged the same way. One torch thread: on a loaded 2-core machine two
    OpenMP threads stall at random (steps of 1 ms taking 100 ms), which no tolerance absorbs."""
    evaluator, feed = classic_step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        profile_runs(evaluator, feed, runs=2, warmup=3)  # plan, checked code, code for the shapes, its twin
        overheads, versus_plain = [], []
        for _ in range(7):
            plain, profiled, runs = [], [], []
            for i in range(30):
                for on in (False, True) if i % 2 == 0 else (True, False):
                    evaluator.profile = on
                    start = time.perf_counter_ns()
                    evaluator.run(feed)
                    (profiled if on else plain).append(time.perf_counter_ns() - start)
                    evaluator.profile = False
                    runs += [evaluator.last_profile] if on else []
            shares = [sum(run.step_ns) / run.call_ns for run in runs]
            assert max(shares) <= 1.0, "the node times add up to more than the call around them"
            assert statistics.median(shares) >= 0.95, f"the node times do not add up to the call: {sorted(shares)[:5]}"
            overheads.append(min(profiled) / min(plain))
            versus_plain.append(min(sum(run.step_ns) for run in runs) / min(plain))
    finally:
        torch.set_num_threads(threads)
    assert statistics.median(overheads) <= 1.10, f"profiling overhead per round: {overheads}"
    assert abs(statistics.median(versus_plain) - 1) <= 0.05, f"node times / plain run per round: {versus_plain}"


# ------------------------------------------------------------------------------------------ FLOPs


def test_every_exported_op_has_a_flop_rule():
    """Each op of autodiff.OP_NAMES defines or inherits a rule (not OpBase's, which raises), and every rule
    runs on the op table's shapes: each case's graph, its gradients and their second order, read through
    the meta pass that profiles use."""
    no_rule = [n for n in ad.OP_NAMES if n != "placeholder" and type(getattr(ops, n)).flops is OpBase.flops]
    assert not no_rule, f"ops without a FLOP rule: {no_rule}"
    counted = set()
    for case in CASES:
        gen = torch.Generator().manual_seed(0)
        variables = [ad.Variable(f"x{i}") for i in range(len(case.inputs))]
        feed = {v: make_value(spec, gen) for v, spec in zip(variables, case.inputs)}
        node = case.build(*variables)
        wrt = [v for v, spec in zip(variables, case.inputs) if spec.differentiable]
        nodes = [node]
        if wrt:
            grads = ad.gradients(ops.sum_op(node * node), wrt)
            nodes += [*grads, *ad.gradients(ops.sum_op(grads[0] * grads[0]), wrt)]
        plan = make_plan(nodes, feed)
        shapes = value_shapes(plan, list(feed.values()))
        assert shapes is not None, f"{case.id}: the meta pass failed"
        for step in plan.steps:
            flops = node_flops(step.node, tuple(shapes[s] for s in step.inputs))
            assert isinstance(flops, int) and flops >= 0, f"{case.id}: {step.node.op.name} counted {flops!r}"
            counted.add(step.node.op.name)
    assert {getattr(ops, n).name for n in ad.OP_NAMES if n != "placeholder"} <= counted


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((4, 3), (3, 5), 2 * 4 * 5 * 3),
        ((2, 6, 4, 3), (3, 5), 2 * 4 * 5 * 3 * 12),  # batch dims of one side
        ((3, 1, 4, 3), (2, 3, 5), 2 * 4 * 5 * 3 * 6),  # broadcast batch dims: (3, 2)
        ((12, 4, 64, 32), (12, 4, 32, 64), 2 * 64 * 64 * 32 * 48),  # attention's scores
    ],
)
def test_matmul_flops_are_exact(a, b, expected):
    x, w = ad.Variable("x"), ad.Variable("w")
    assert ops.matmul.flops(ops.matmul(x, w), [a, b]) == expected
    profile = profile_runs(ad.Evaluator([ops.matmul(x, w)]), {x: torch.ones(a), w: torch.ones(b)}, runs=1)
    assert profile.flops == expected


def test_flop_counts_of_the_common_shapes():
    x, y = ad.Variable("x"), ad.Variable("y")
    assert ops.add.flops(ops.add(x, y), [(3, 1), (1, 4)]) == 12  # one per output element, broadcast
    assert ops.sum_op.flops(ops.sum_op(x, 1), [(3, 4)]) == 12  # one per reduced element
    assert ops.reshape.flops(ops.reshape(x, (12,)), [(3, 4)]) == 0  # shape ops move values
    assert ops.softmax.flops(ops.softmax(x), [(3, 4)]) == 5 * 12  # max, subtract, exp, sum, divide
    assert ops.sum_to_shape.flops(ops.sum_to_shape(x, y), [(3, 4), (3, 4)]) == 0  # passes its input through
    assert ops.sum_to_shape.flops(ops.sum_to_shape(x, y), [(3, 4), (1, 4)]) == 12


def test_matmul_probe_measures_plain_torch_matmul():
    (probe,) = probe_matmuls([((64, 32), (32, 16)), ((64, 32), (32, 16))], torch.float32, seconds=0.001)
    assert probe.flops == 2 * 64 * 16 * 32 and probe.ns > 0 and probe.gflops_per_s == probe.flops / probe.ns


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: profiled CUDA runs are tested on one")
def test_profiled_cuda_runs_synchronize_and_add_up():
    x, w = ad.Variable("x"), ad.Variable("w")
    loss = ad.sum_op(ad.gelu(x @ w))
    nodes = [loss, *ad.gradients(loss, [x, w])]
    feed = {x: torch.randn(1024, 1024, device="cuda"), w: torch.randn(1024, 1024, device="cuda")}
    evaluator = ad.Evaluator(nodes, profile=True)
    plain = ad.Evaluator(nodes).run(feed)
    for _ in range(3):
        for a, b in zip(plain, evaluator.run(feed)):
            assert torch.equal(a, b)
    twins = next(iter(evaluator._plans.values())).profiled.values()
    assert all("_sync(); _lap(_clock())" in twin.source for twin in twins)
    profile = profile_runs(evaluator, feed, runs=5)
    matmul = next(k for k in profile.by_op() if k.op == "matmul")
    assert matmul.share > 0.3  # synchronized: the GPU work is in the matmul steps, not in whoever waits next
    assert 0.95 <= profile.node_ns / profile.step_ns <= 1.0
