"""Graph-level behaviour of the engine: whole expressions and their gradients against torch.autograd,
gradients of gradients, fan-out, unused inputs, compute-once, no torch.autograd inside, dtypes and
devices, the assignment-style API, and the errors a learner sees when something is wrong.
"""

from __future__ import annotations

import pytest
import torch

import autodiff as ad
from autodiff import ops


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_x1_times_x2_plus_x1():
    x1, x2 = ad.Variable("x1"), ad.Variable("x2")
    y = x1 * x2 + x1
    g1, g2 = ad.gradients(y, [x1, x2])
    a, b = rand(3, seed=1), rand(3, seed=2)
    y_val, g1_val, g2_val = ad.Evaluator([y, g1, g2]).run({x1: a, x2: b})
    torch.testing.assert_close(y_val, a * b + a)
    torch.testing.assert_close(g1_val, b + 1)
    torch.testing.assert_close(g2_val, a)


def test_matmul_transpose_expression_against_torch():
    x1, x2, x3 = ad.Variable("x1"), ad.Variable("x2"), ad.Variable("x3")
    y = ops.matmul(x1, ops.transpose(x2, 0, 1)) / 10 + x3
    loss = ops.sum_op(y * y)
    grads = ad.gradients(loss, [x1, x2, x3])
    a, b, c = rand(2, 3, seed=1), rand(4, 3, seed=2), rand(2, 4, seed=3)
    values = ad.Evaluator([y, *grads]).run({x1: a, x2: b, x3: c})

    ta, tb, tc = (t.clone().requires_grad_() for t in (a, b, c))
    ty = ta @ tb.T / 10 + tc
    expected = torch.autograd.grad((ty * ty).sum(), [ta, tb, tc])
    torch.testing.assert_close(values[0], ty.detach())
    for ours, theirs in zip(values[1:], expected):
        torch.testing.assert_close(ours, theirs)


def test_gradient_of_a_gradient():
    x = ad.Variable("x")
    y = x**3 + ops.exp(x)
    (dy,) = ad.gradients(y, [x])
    (d2y,) = ad.gradients(dy, [x])
    (d3y,) = ad.gradients(d2y, [x])
    v = rand(5)
    dy_v, d2y_v, d3y_v = ad.Evaluator([dy, d2y, d3y]).run({x: v})
    torch.testing.assert_close(dy_v, 3 * v**2 + v.exp())
    torch.testing.assert_close(d2y_v, 6 * v + v.exp())
    torch.testing.assert_close(d3y_v, 6 + v.exp())


def test_fan_out_accumulates():
    x = ad.Variable("x")
    h = x * x  # h is used three times below
    y = ops.sum_op(h + h * x + ops.exp(h))
    (g,) = ad.gradients(y, [x])
    v = rand(4)
    (g_v,) = ad.Evaluator([g]).run({x: v})
    # y = x^2 + x^3 + exp(x^2)
    torch.testing.assert_close(g_v, 2 * v + 3 * v**2 + 2 * v * torch.exp(v**2))


def test_unused_input_gets_a_real_zero_tensor_of_its_shape():
    x, unused = ad.Variable("x"), ad.Variable("unused")
    y = ops.sum_op(x * 2)
    gx, gu = ad.gradients(y, [x, unused])
    gx_v, gu_v = ad.Evaluator([gx, gu]).run({x: rand(3), unused: rand(2, 5)})
    torch.testing.assert_close(gx_v, torch.full((3,), 2.0, dtype=torch.float64))
    assert isinstance(gu_v, torch.Tensor) and gu_v.shape == (2, 5)
    assert torch.count_nonzero(gu_v) == 0


def test_gradient_of_the_output_itself_is_the_seed():
    x = ad.Variable("x")
    y = x * 3
    (gy,) = ad.gradients(y, [y])
    (gy_v,) = ad.Evaluator([gy]).run({x: rand(2, 2)})
    torch.testing.assert_close(gy_v, torch.ones(2, 2, dtype=torch.float64))


class CountingOp(ad.Op):
    """Identity that counts how often it is computed."""

    name = "count"

    def __init__(self):
        self.calls = 0

    def __call__(self, a):
        return ad.Node([a], self, name="counted")

    def compute(self, node, input_values):
        self.calls += 1
        return input_values[0]

    def gradient(self, node, output_grad):
        return [output_grad]


def test_each_node_is_computed_once_per_run():
    count = CountingOp()
    x = ad.Variable("x")
    shared = count(x)
    y1, y2 = shared * 2, shared + shared
    (g,) = ad.gradients(ops.sum_op(y1 * y2), [x])
    evaluator = ad.Evaluator([y1, y2, g])
    evaluator.run({x: rand(3)})
    assert count.calls == 1
    evaluator.run({x: rand(3)})
    assert count.calls == 2


def test_engine_never_uses_torch_autograd(monkeypatch):
    """Forward, backward and second order are right with autograd switched off and its entry points
    made to fail, so the numbers can only come from the engine's own gradient graphs."""
    x, w = ad.Variable("x"), ad.Variable("w")
    y = ops.sum_op(ops.softmax(ops.matmul(x, w)) * ops.log(ops.sigmoid(ops.matmul(x, w))))
    gx, gw = ad.gradients(y, [x, w])
    (gww,) = ad.gradients(ops.sum_op(gw * gw), [w])
    a, b = rand(2, 3, seed=1), rand(3, 4, seed=2)

    def forbidden(*args, **kwargs):
        raise AssertionError("the engine called torch.autograd")

    with monkeypatch.context() as patch:
        for name in ("grad", "backward"):
            patch.setattr(torch.autograd, name, forbidden)
        patch.setattr(torch.Tensor, "backward", forbidden)
        with torch.no_grad():
            y_v, gx_v, gw_v, gww_v = ad.Evaluator([y, gx, gw, gww]).run({x: a, w: b})

    ta, tb = a.clone().requires_grad_(), b.clone().requires_grad_()
    tz = ta @ tb
    ty = (torch.softmax(tz, -1) * torch.log(torch.sigmoid(tz))).sum()
    tgx, tgw = torch.autograd.grad(ty, [ta, tb], create_graph=True)
    (tgww,) = torch.autograd.grad((tgw * tgw).sum(), [tb])
    torch.testing.assert_close(gx_v, tgx.detach())
    torch.testing.assert_close(gw_v, tgw.detach())
    torch.testing.assert_close(gww_v, tgww)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_keep_the_input_dtype(dtype):
    x, w = ad.Variable("x"), ad.Variable("w")
    y = ops.sum_op(ops.layernorm(ops.relu(x @ w), [4]) * 2.5)
    gx, gw = ad.gradients(y, [x, w])
    outs = ad.Evaluator([y, gx, gw]).run({x: rand(2, 3, dtype=dtype), w: rand(3, 4, seed=1, dtype=dtype)})
    assert all(o.dtype == dtype for o in outs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda_like_on_cpu():
    x, w = ad.Variable("x"), ad.Variable("w")
    y = ops.sum_op(ops.softmax(x @ w) ** 2)
    grads = ad.gradients(y, [x, w])
    feed_cpu = {x: rand(2, 3), w: rand(3, 4, seed=1)}
    feed_gpu = {k: v.cuda() for k, v in feed_cpu.items()}
    cpu = ad.Evaluator([y, *grads]).run(feed_cpu)
    gpu = ad.Evaluator([y, *grads]).run(feed_gpu)
    for c, g in zip(cpu, gpu):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g.cpu(), c)


def test_assignment_style_api():
    a, b, g = ad.Variable("a"), ad.Variable(name="b"), ad.Variable("g")
    y = ops.matmul(a, b)
    ga, gb = y.op.gradient(y, g)
    av, bv, gv = rand(2, 3), rand(3, 4, seed=1), rand(2, 4, seed=2)
    ga_v, gb_v = ad.Evaluator([ga, gb]).run({a: av, b: bv, g: gv})
    torch.testing.assert_close(ga_v, gv @ bv.T)
    torch.testing.assert_close(gb_v, av.T @ gv)
    # op.compute on a node with input values, and attrs readable as attributes
    s = ops.sum_op(a, dim=(0, 1), keepdim=True)
    assert s.dim == (0, 1) and s.keepdim is True
    torch.testing.assert_close(s.op.compute(s, [av]), av.sum((0, 1), keepdim=True))
    assert ops.add_by_const(a, 3).constant == 3
    with pytest.raises(AttributeError):
        _ = a.no_such_attribute


def test_operators_with_numbers_on_either_side():
    x = ad.Variable("x")
    exprs = [x + 1, 1 + x, x - 1, 1 - x, 2 * x, x * 2, x / 2, 2 / x, -x, x**2, x @ x]
    v = rand(3, 3).abs() + 0.5
    got = ad.Evaluator(exprs).run({x: v})
    want = [v + 1, 1 + v, v - 1, 1 - v, 2 * v, v * 2, v / 2, 2 / v, -v, v**2, v @ v]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    with pytest.raises(TypeError, match="add: expected a Node or a number, got str"):
        _ = x + "1"


def test_topological_sort_puts_inputs_first():
    x, y = ad.Variable("x"), ad.Variable("y")
    z = (x * y) + x
    order = ad.topological_sort([z])
    assert order[-1] is z
    position = {id(n): i for i, n in enumerate(order)}
    for n in order:
        assert all(position[id(i)] < position[id(n)] for i in n.inputs)


def test_a_deep_chain_needs_no_recursion():
    x = ad.Variable("x")
    y = x
    for _ in range(5000):
        y = y * 1.0001
    (g,) = ad.gradients(y, [x])
    y_v, g_v = ad.Evaluator([y, g]).run({x: torch.ones(1, dtype=torch.float64)})
    torch.testing.assert_close(g_v, torch.full((1,), 1.0001**5000, dtype=torch.float64))


def test_feeding_an_intermediate_node_skips_what_it_depends_on():
    x = ad.Variable("x")
    h = ops.exp(x)
    y = h * 2
    (y_v,) = ad.Evaluator([y]).run({h: torch.tensor([3.0])})  # x need not be fed
    torch.testing.assert_close(y_v, torch.tensor([6.0]))


# --- errors a learner sees ---


def test_missing_input_names_the_variable():
    x, w = ad.Variable("x"), ad.Variable("weights")
    with pytest.raises(ValueError, match="'weights'"):
        ad.Evaluator([x @ w]).run({x: rand(2, 3)})


def test_failing_op_names_op_node_and_shapes():
    a, b = ad.Variable("a"), ad.Variable("b")
    y = ops.matmul(a, b)
    with pytest.raises(ad.OpError) as err:
        ad.Evaluator([y]).run({a: rand(2, 3), b: rand(4, 5)})
    message = str(err.value)
    assert "matmul" in message and y.name in message and "(2, 3)" in message and "(4, 5)" in message


class BadShapeOp(ad.Op):
    """Doubles its input but claims a gradient of the wrong shape."""

    name = "bad_shape"

    def __call__(self, a):
        return ad.Node([a], self, name="bad")

    def compute(self, node, input_values):
        return input_values[0] * 2

    def gradient(self, node, output_grad):
        return [ops.sum_op(output_grad, 0)]


class BadCountOp(BadShapeOp):
    name = "bad_count"

    def gradient(self, node, output_grad):
        return [output_grad, output_grad]


def test_a_gradient_of_the_wrong_shape_fails_loudly_naming_the_op():
    x = ad.Variable("x")
    (g,) = ad.gradients(ops.sum_op(BadShapeOp()(x)), [x])
    with pytest.raises(ad.GradientShapeError, match="bad_shape.*shape \\(3,\\).*'x' of shape \\(2, 3\\)"):
        ad.Evaluator([g]).run({x: rand(2, 3)})


def test_a_gradient_rule_with_the_wrong_count_fails_naming_the_op():
    x = ad.Variable("x")
    with pytest.raises(ad.GradientCountError, match="bad_count.*2 gradients for 1 inputs"):
        ad.gradients(BadCountOp()(x), [x])


def test_matmul_of_vectors_says_how_to_fix_it():
    a, b = ad.Variable("a"), ad.Variable("b")
    with pytest.raises(ad.OpError, match="reshape a vector"):
        ad.Evaluator([a @ b]).run({a: rand(3), b: rand(3)})


def test_evaluator_rejects_what_is_not_a_node():
    with pytest.raises(TypeError, match="Nodes"):
        ad.Evaluator(["x"])


def test_identical_subexpressions_are_computed_once():
    """Gradient rules rebuild the same node (e.g. transpose(x) for several weights); the plan shares it."""
    count = CountingOp()
    x = ad.Variable("x")
    y = count(x) * 2 + count(x)  # two distinct nodes, the same computation
    (y_v,) = ad.Evaluator([y]).run({x: torch.ones(2)})
    torch.testing.assert_close(y_v, torch.full((2,), 3.0))
    assert count.calls == 1


def test_sharing_never_merges_constants_of_different_types_or_signs():
    x = ad.Variable("x")
    as_int, as_float = x + 1, x + 1.0
    pos, negz = ops.mul_by_const(x, 0.0), ops.mul_by_const(x, -0.0)
    a, b, c, d = ad.Evaluator([as_int, as_float, pos, negz]).run({x: torch.tensor([1, 2])})
    assert a.dtype == torch.int64 and b.dtype == torch.float32
    y = ad.Evaluator([pos, negz]).run({x: torch.tensor([1.0])})
    assert torch.signbit(y[1]).item() and not torch.signbit(y[0]).item()


def test_a_dim_out_of_range_is_an_error_like_in_torch():
    x = ad.Variable("x")
    with pytest.raises(ad.OpError, match="dim 5 is out of range for a tensor of 0 dims"):
        ad.Evaluator([ops.sum_op(x, dim=5)]).run({x: torch.tensor(1.0)})
    with pytest.raises(ad.OpError, match="dim -3 is out of range for a tensor of 2 dims"):
        ad.Evaluator([ops.mean(x, dim=-3)]).run({x: rand(2, 3)})


def test_inputs_without_a_gradient_get_none_comparisons_included():
    """The package's one policy: ids, masks and comparisons get None, never a zeros node."""
    a, b, ids, mask = (ad.Variable(n) for n in ("a", "b", "ids", "mask"))
    g = ad.Variable("g")
    for node in (ops.greater(a, b), ops.equal(a, b)):
        assert node.op.gradient(node, g) == [None, None]
    assert ops.greater(a, 0.5).op.gradient(ops.greater(a, 0.5), g) == [None]
    assert ops.embedding(a, ids).op.gradient(ops.embedding(a, ids), g)[1] is None
    assert ops.masked_fill(a, mask, 0.0).op.gradient(ops.masked_fill(a, mask, 0.0), g)[1] is None


def test_the_graph_machinery_never_imports_the_ops():
    """No import cycle: graph.py is below the ops package (ops import it, never the reverse)."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(ad.__file__).parent / "graph.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names]
    assert not [m for m in imported if m and m.startswith("autodiff")], imported


def test_broadcast_checks_the_input_shape_it_declares():
    x = ad.Variable("x")
    y = ops.broadcast(x, (3, 1), (2, 3, 4))
    assert ad.Evaluator([y]).run({x: rand(3, 1)})[0].shape == (2, 3, 4)
    with pytest.raises(ad.OpError, match="broadcast: the input has shape \\(1, 3\\), declared \\(3, 1\\)"):
        ad.Evaluator([y]).run({x: rand(1, 3)})


def test_layernorm_gain_backward_is_one_pass_for_both_gradients():
    """layernorm_gain's two gradients come from one layernorm_gain_grads node (one statistics pass, taken
    apart by pick_grad), equal to the single-output backward ops to rounding."""
    from autodiff.ops import transformer  # noqa: PLC0415  (the internal ops)

    a, w = ad.Variable("a"), ad.Variable("w")
    y = ad.sum_op(ad.layernorm_gain(a, w, 1e-5) * ad.layernorm_gain(a, w, 1e-5))
    ga, gw = ad.gradients(y, [a, w])
    evaluator = ad.Evaluator([ga, gw])
    gen = torch.Generator().manual_seed(0)
    feed = {a: torch.randn(5, 3, 8, dtype=torch.float64, generator=gen), w: torch.rand(8, dtype=torch.float64) + 0.5}
    plan = evaluator.plan(feed)
    assert sum(step.node.op is transformer.layernorm_gain_grads for step in plan.steps) == 1  # shared (CSE)
    grad_a, grad_w = evaluator.run(feed)
    g = 2 * torch.nn.functional.layer_norm(feed[a], (8,), feed[w])  # the upstream gradient of y
    single = ad.Evaluator([
        transformer.layernorm_gain_backward(ad.Variable("g"), a, w, 1e-5),
        transformer.norm_gain_backward(ad.Variable("g2"), a, w, "layer", 1e-5),
    ])  # fmt: skip
    gv, g2v = single.eval_nodes[0].inputs[0], single.eval_nodes[1].inputs[0]
    want_a, want_w = single.run({**feed, gv: g, g2v: g})
    assert torch.allclose(grad_a, want_a, atol=1e-12) and torch.allclose(grad_w, want_w, atol=1e-12)
