"""Generated code against the interpreted reference: bit-identical on every op-table case (value,
gradients, second order) and on the language model's graphs; readable source; the same errors.
"""

from __future__ import annotations

import functools

import pytest
import torch
from test_autodiff_ops import CASES, Case, make_value

import autodiff as ad
import lm.model as lm_model
from autodiff import ops
from lm.generate import KVCache, cached_step, prefill
from lm.model import PRESETS, LanguageModel, preset_config


def both(nodes, feed):
    """Values from the compiled evaluator (its checked run, then its code specialized to the fed
    shapes) and from the interpreted one."""
    compiled, interpreted = ad.Evaluator(nodes), ad.Evaluator(nodes, compiled=False)
    return [compiled.run(feed), compiled.run(feed), compiled.run(feed), interpreted.run(feed)]


def assert_identical(results, what):
    first = results[0]
    for other in results[1:]:
        for i, (a, b) in enumerate(zip(first, other)):
            assert a.dtype == b.dtype and a.shape == b.shape, f"{what} output {i}"
            assert torch.equal(a, b), f"{what} output {i} differs"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_compiled_equals_interpreted_on_every_op_case(case: Case):
    gen = torch.Generator().manual_seed(sum(map(ord, case.id)))
    values = [make_value(spec, gen) for spec in case.inputs]
    variables = [ad.Variable(f"x{i}") for i in range(len(values))]
    feed = dict(zip(variables, values))
    node = case.build(*variables)
    upstream = ad.Variable("upstream")
    feed[upstream] = torch.randn(ad.Evaluator([node]).run(feed)[0].shape, generator=gen, dtype=torch.float64)
    wrt = [v for v, spec in zip(variables, case.inputs) if spec.differentiable]
    grads = ad.gradients(ops.sum_op(node * upstream), wrt)
    nodes = [node, *grads]
    if case.second and wrt:
        inner = ops.sum_op(grads[0] * grads[0])
        nodes += ad.gradients(inner, wrt)
    assert_identical(both(nodes, feed), case.id)


def model_outputs(preset: str, compiled: bool, monkeypatch) -> list[torch.Tensor]:
    """Loss and every gradient, the full forward's outputs, and three KV-cached decode steps, from a
    tiny model whose Evaluators are all compiled or all interpreted."""

    class Vocab:
        def __len__(self) -> int:
            return 11

    monkeypatch.setattr(lm_model, "Evaluator", functools.partial(ad.Evaluator, compiled=compiled))
    cfg = preset_config(preset, 11, 6, d_model=8, n_layers=2, n_heads=2, seed=1)
    model = LanguageModel(cfg, tokenizer=Vocab())
    ids = torch.tensor([[1, 4, 2, 7, 3], [5, 5, 9, 1, 0]])
    B, T = ids.shape
    graph = model.loss_graph(B, T)
    assert graph.evaluator.compiled is compiled  # the patch reached the model's evaluators
    targets = ids.roll(-1, 1).reshape(-1).clone()  # (N,) next tokens; the last position's ignored
    targets[T - 1 :: T] = -100
    feed = {**model.param_feed(), **graph.forward.inputs(ids), graph.targets: targets}
    outputs = list(graph.evaluator.run(feed))
    full = model.forward(ids[:1], ("logits", "probs", "attention", "keys", "values"))
    outputs += [v for value in full.values() for v in (value if isinstance(value, list) else [value])]
    cache = KVCache(model)
    probs, attention = prefill(model, [1, 4], cache)
    outputs += [probs, *attention]
    for token in (2, 7, 3):
        probs, attention = cached_step(model, token, cache)
        outputs += [probs, *attention, *cache.keys, *cache.values]
    return outputs


@pytest.mark.parametrize("preset", list(PRESETS))
def test_compiled_equals_interpreted_on_the_model_graphs(preset, monkeypatch):
    compiled = model_outputs(preset, True, monkeypatch)
    interpreted = model_outputs(preset, False, monkeypatch)
    assert len(compiled) == len(interpreted) > 20
    assert_identical([compiled, interpreted], f"{preset} model")


def test_source_is_readable_straight_line_code():
    x, w = ad.Variable("x"), ad.Variable("w")
    y = ops.sum_op(ops.relu(x @ w))
    gx, gw = ad.gradients(y, [x, w])
    evaluator = ad.Evaluator([y, gx, gw])
    feed = {x: torch.randn(2, 3), w: torch.randn(3, 4)}
    source = evaluator.source(feed)
    assert source.startswith("def graph(x, w):")
    assert "= matmul(x, w)  # (x@w)" in source and "relu(" in source and "del " in source
    assert source.rstrip().splitlines()[-1].startswith("    return [")
    assert "for " not in source and "while " not in source  # straight-line
    assert evaluator.source(feed) is evaluator.source(feed)  # compiled once per set of fed nodes


def test_names_cannot_escape_their_comment():
    x = ad.Variable("x\nimport os")
    evil = ops.exp(x)
    evil.name = "n\n    raise SystemExit  # "
    source = ad.Evaluator([evil]).source({x: torch.ones(2)})
    assert "\n    raise" not in source and "\nimport" not in source
    torch.testing.assert_close(ad.Evaluator([evil]).run({x: torch.ones(2)})[0], torch.full((2,), torch.e))


def test_errors_from_generated_code_name_the_op_node_and_shapes_like_the_loop():
    a, b = ad.Variable("a"), ad.Variable("b")
    y = ops.exp(ops.matmul(a, b))
    feed = {a: torch.randn(2, 3), b: torch.randn(4, 5)}
    messages = []
    for compiled in (True, False):
        with pytest.raises(ad.OpError) as err:
            ad.Evaluator([y], compiled=compiled).run(feed)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "matmul" in messages[0] and "'(a@b)'" in messages[0] and "(2, 3), (4, 5)" in messages[0]


class KeepRowOp(ad.Op):
    """Doubles its input; its gradient rule keeps one row, right only for inputs of one row."""

    name = "keep_row"

    def __call__(self, a):
        return ad.Node([a], self, name="kept")

    def compute(self, node, input_values):
        return input_values[0] * 2

    def gradient(self, node, output_grad):
        return [ops.sum_op(output_grad, 0, keepdim=True)]


def test_gradient_shapes_are_checked_again_for_new_fed_shapes():
    x = ad.Variable("x")
    (g,) = ad.gradients(ops.sum_op(KeepRowOp()(x)), [x])
    evaluator = ad.Evaluator([g])
    for _ in range(3):  # the first run checks, the later ones run the code without checks
        evaluator.run({x: torch.ones(1, 3)})
    with pytest.raises(ad.GradientShapeError, match="keep_row.*shape \\(1, 3\\).*'x' of shape \\(2, 3\\)"):
        evaluator.run({x: torch.ones(2, 3)})


def test_variables_named_like_the_code_s_own_names_do_not_shadow_them():
    c0, n7, check, mul = (ad.Variable(n) for n in ("c0", "n7", "check", "mul"))
    inf_fill = ops.masked_fill(c0, ops.greater(n7, 0.0), float("-inf"))  # -inf is a named constant
    y = ops.concat([inf_fill * mul, check], 0)  # concat runs through compute with its node
    (g,) = ad.gradients(ops.sum_op(ops.exp(y)), [check])  # (w.r.t. mul it would be NaN: 0 * -inf)
    feed = {c0: torch.randn(3), n7: torch.randn(3), check: torch.randn(3), mul: torch.randn(3)}
    assert_identical(both([y, g], feed), "shadowing names")


def test_code_for_known_shapes_skips_sum_to_shape_where_it_changes_nothing():
    x, b = ad.Variable("x"), ad.Variable("b")
    y = ops.sum_op(ops.tanh(x * x + b))
    gx, gb = ad.gradients(y, [x, b])
    evaluator = ad.Evaluator([y, gx, gb])
    feed = {x: torch.randn(2, 3), b: torch.randn(3)}
    first, second = evaluator.run(feed), evaluator.run(feed)  # checked code, then code for these shapes
    for a, c in zip(first, second):
        assert torch.equal(a, c)
    plan = evaluator.plan(feed)
    (entry,) = evaluator._plans.values()
    code = entry.specialized[(torch.Size([2, 3]), torch.Size([3]))].source
    calls = code.count("= sum_to_shape(")
    generic = entry.checked.source.count("= sum_to_shape(")
    assert generic == sum(s.node.op is ops.sum_to_shape for s in plan.steps) == 3
    assert calls == 1  # only b's gradient, summed over the broadcast rows, still needs the call


def test_ready_reports_each_output_once_as_soon_as_it_is_computed():
    """Evaluator.run(feed, ready=...) calls ready(k, value) for every output, in the order the plan
    computes them (a fed output and a repeated output included), with the value run returns; compiled and
    interpreted agree, and the values equal a run without the callback."""
    x, w = ad.Variable("x"), ad.Variable("w")
    y = ad.sum_op(ad.relu(x @ w))
    gx, gw = ad.gradients(y, [x, w])
    nodes = [y, gw, x, gx, y]
    feed = {x: torch.randn(3, 4, dtype=torch.float64), w: torch.randn(4, 2, dtype=torch.float64)}
    plain = ad.Evaluator(nodes).run(feed)
    for compiled in (True, False):
        calls: list = []
        outputs = ad.Evaluator(nodes, compiled=compiled).run(feed, ready=lambda k, v, calls=calls: calls.append((k, v)))
        assert sorted(k for k, _ in calls) == [0, 1, 2, 3, 4]
        assert calls[0][0] == 2  # x is fed: ready before anything is computed
        assert [k for k, _ in calls].index(0) < [k for k, _ in calls].index(1)  # y before its gradients
        for k, value in calls:
            assert value is outputs[k] and torch.equal(value, plain[k])
    source = ad.Evaluator(nodes).source(feed)
    assert "ready" not in source  # the printed code is the one without the callback


def test_an_error_in_ready_reaches_the_caller_unchanged():
    x = ad.Variable("x")
    y = ad.exp(x)

    def ready(k, value):
        raise KeyError("stop")

    for compiled in (True, False):
        with pytest.raises(KeyError, match="stop"):
            ad.Evaluator([y], compiled=compiled).run({x: torch.ones(2)}, ready=ready)
