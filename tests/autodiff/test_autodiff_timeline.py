"""The memory timeline against the real thing, and activation checkpointing (remat) against the plain plan.

The oracle counts the storages alive while a real step runs: a TorchDispatchMode sees every tensor each
torch op returns and keeps a weak reference to its storage (views share one), and after each op adds up
the bytes of those not yet freed, with the fed values'. Its peak must be the timeline's, worked out before
the run from the plan and a pass over `meta` tensors. Checkpointing must give the very same gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import autodiff as ad
from autodiff import Evaluator, ops
from autodiff.evaluator import run_interpreted
from autodiff.timeline import memory_timeline
from lm.model import LanguageModel, preset_config

PRESETS = ("gpt", "llama", "classic")


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages alive (the fed values' and every op output's), after each torch op: `peak`."""

    def __init__(self, fed: list[torch.Tensor]):
        super().__init__()
        self.alive: dict[int, tuple[StorageWeakRef, int]] = {}
        for t in fed:
            self._add(t)
        self.peak = self.now()

    def _add(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata  # the storage's address: unique among storages alive
        if key not in self.alive or self.alive[key][0].expired():
            self.alive[key] = (StorageWeakRef(storage), storage.nbytes())

    def now(self) -> int:
        for key in [k for k, (ref, _) in self.alive.items() if ref.expired()]:
            del self.alive[key]
        return sum(nbytes for _, nbytes in self.alive.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        self.peak = max(self.peak, self.now())
        return out


def storage_bytes(tensors) -> int:
    """The bytes of the distinct storages of some tensors (views share one)."""
    return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())


def measured_peak(evaluator: Evaluator, feed: dict) -> int:
    """The live bytes at their most during a run of the code the evaluator settles on (its third run: the
    first checks shapes, the second makes the code for them). Only what the plan reads is counted as fed."""
    for _ in range(2):
        evaluator.run(feed)
    plan = evaluator.plan(feed)
    with LiveBytes([feed[node] for _, node in plan.fed]) as oracle:
        evaluator.run(feed)
    return oracle.peak


def small_model(preset: str, dtype: str = "float32") -> LanguageModel:
    return LanguageModel(preset_config(preset, 50, 16, d_model=32, n_layers=2, n_heads=2, dtype=dtype))


def training_step(model: LanguageModel, remat: bool, packed: bool | None = None, fused: bool = True):
    """The model's loss graph's evaluator (with or without remat) and a feed of one batch (3 x 16; the model
    packs its 48 rows in one attention unless `packed=False`)."""
    graph = model.loss_graph(3, 16, packed=packed, fused=fused, remat=remat)
    ids = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(0))
    feed = model.param_feed()
    feed.update(graph.forward.inputs(ids))
    feed[graph.targets] = ids.roll(-1, 1).reshape(-1)
    return graph.evaluator, feed


@pytest.mark.parametrize("remat", [False, True], ids=["plain", "remat"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "batched"])
@pytest.mark.parametrize("preset", PRESETS)
def test_the_timeline_peak_is_the_live_bytes_of_a_real_training_step(preset, packed, remat):
    model = small_model(preset)
    evaluator, feed = training_step(model, remat, packed)
    timeline = memory_timeline(evaluator.plan(feed), feed, model.vars.by_name.values())
    measured = measured_peak(evaluator, feed)
    assert abs(timeline.peak - measured) <= 0.01 * measured, (timeline.peak, measured)
    # What is alive at the peak adds up to it, and every parameter is there.
    assert sum(timeline.at_peak.values()) == timeline.peak
    assert timeline.at_peak["parameters"] == storage_bytes(model.params.values())
    assert sum(v.bytes for v in timeline.alive_at_peak) + timeline.scratch[timeline.peak_step] == timeline.peak


def engine_graphs():
    """Small graphs with views (reshape, transpose, expand), an output that is a view of an intermediate,
    shared storage between fed values, and a forward pass alone."""
    g = torch.Generator().manual_seed(1)
    x, w1, w2, b = (ad.Variable(n) for n in ("x", "w1", "w2", "b"))
    xv, w1v, w2v = torch.randn(64, 32, generator=g), torch.randn(32, 48, generator=g), torch.randn(48, 8, generator=g)
    h = ops.tanh(x @ w1 + b)  # b (48,) broadcast over the rows
    loss = ops.sum_op(ops.reshape(ops.transpose(h @ w2, 0, 1), (-1,)) ** 2)
    mlp = ([loss, *ad.gradients(loss, [w1, w2, b])], {x: xv, w1: w1v, w2: w2v, b: torch.randn(48, generator=g)})

    y = ops.exp(ops.expand_as(ops.sum_op(x, 1, keepdim=True), x) * x)  # an expanded view read
    view_out = ([ops.reshape(y, (32, 64)), ops.transpose(y, 0, 1)], {x: xv})  # two outputs viewing one value

    shared = xv[:32]  # w1 fed as a view of x's storage: one storage, counted once
    forward = ([ops.relu(ops.transpose(w1, 0, 1) @ ops.transpose(x, 0, 1))], {x: xv[:, :32], w1: shared})
    return {"mlp": mlp, "views as outputs": view_out, "fed views": forward}


@pytest.mark.parametrize("name", list(engine_graphs()))
def test_the_timeline_peak_is_the_live_bytes_of_engine_graphs(name):
    nodes, feed = engine_graphs()[name]
    evaluator = Evaluator(nodes)
    timeline = memory_timeline(evaluator.plan(feed), feed)
    measured = measured_peak(evaluator, feed)
    assert abs(timeline.peak - measured) <= 0.01 * measured, (timeline.peak, measured)


def test_the_timeline_tells_activations_from_temporaries():
    """The activations kept for the backward pass are at their most when it starts; after the last step
    only the fed values and the outputs are alive."""
    model = small_model("gpt")
    evaluator, feed = training_step(model, remat=False)
    plan = evaluator.plan(feed)
    timeline = memory_timeline(plan, feed, model.vars.by_name.values())
    first_backward = min(p for p, step in enumerate(plan.steps) if step.slot not in plan.forward)
    assert timeline.after[first_backward - 1]["activations"] == max(a["activations"] for a in timeline.after) > 0
    end = timeline.after[-1]
    assert end["activations"] == end["temporaries"] == 0
    assert end["outputs"] == storage_bytes(evaluator.run(feed))
    assert end["parameters"] == storage_bytes(model.params.values())


@pytest.mark.parametrize(("packed", "fused"), [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("preset", PRESETS)
def test_remat_gives_the_same_gradients_with_less_memory(preset, packed, fused):
    """Every output bit-identical to the plain plan's, compiled and interpreted (either attention layout,
    fused backward nodes or not); the activations kept at their most, and the peak, lower."""
    model = small_model(preset, "float64")
    (plain, feed), (remat, remat_feed) = (training_step(model, r, packed, fused) for r in (False, True))
    expected = plain.run(feed)
    for _ in range(3):  # checked code, then the code made for these shapes
        assert all(torch.equal(a, b) for a, b in zip(expected, remat.run(remat_feed)))
    plan = remat.plan(remat_feed)
    interpreted = run_interpreted(plan, [remat_feed[n] for _, n in plan.fed])
    assert all(torch.equal(a, b) for a, b in zip(expected, interpreted))

    params = model.vars.by_name.values()
    before, after = memory_timeline(plain.plan(feed), feed, params), memory_timeline(plan, remat_feed, params)
    assert after.peak_of("activations") < before.peak_of("activations")
    assert after.peak < before.peak


def test_remat_recomputes_a_block_just_before_its_backward_pass():
    """With checkpoints between blocks, no backward step reads a value from inside a block as the forward
    pass made it: it reads the value's recomputed copy, made after the forward pass, and the copies of the
    last block are made before those of the first (each block just before its backward)."""
    x = ad.Variable("x")
    weights = [ad.Variable(f"w{i}") for i in range(3)]
    h, checkpoints, inner = x, [x], []
    for w in weights:
        a = h @ w
        b = ops.tanh(a)
        h = ops.tanh(b @ w)  # a block of four ops
        inner += [a, b]  # what the backward pass reads of it (b), and what b is made from
        checkpoints.append(h)
    loss = ops.sum_op(h * h)
    grads = ad.gradients(loss, weights)
    g = torch.Generator().manual_seed(2)
    feed = {x: torch.randn(8, 16, generator=g, dtype=torch.float64)}
    feed.update({w: torch.randn(16, 16, generator=g, dtype=torch.float64) for w in weights})
    plain, remat = Evaluator([loss, *grads]), Evaluator([loss, *grads], remat=checkpoints)
    assert all(torch.equal(a, b) for a, b in zip(plain.run(feed), remat.run(feed)))

    plan = remat.plan(feed)
    originals = set(plan.recomputed.values())
    assert {plan.order[s] for s in originals} == set(inner)
    position = {step.slot: p for p, step in enumerate(plan.steps)}
    for step in plan.steps:
        if step.slot not in plan.forward:
            assert originals.isdisjoint(step.inputs), step.node
    assert min(position[c] for c in plan.recomputed) > max(position[s] for s in originals)
    first_copy = [min(position[c] for c, s in plan.recomputed.items() if w in plan.order[s].inputs) for w in weights]
    assert first_copy == sorted(first_copy, reverse=True)
