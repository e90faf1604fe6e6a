"""The planner on its own: order, fed nodes, shared subexpressions, frees and gradient-shape checks.

These look at the plan, not at values: each property is what a runner relies on without checking.
"""

from __future__ import annotations

import torch

import autodiff as ad
from autodiff import ops
from autodiff.evaluator import run_interpreted
from autodiff.plan import make_plan


def test_order_puts_inputs_first_and_stops_at_fed_nodes():
    x, w = ad.Variable("x"), ad.Variable("w")
    h = ops.exp(x @ w)
    y = ops.sum_op(h * 2)
    plan = make_plan([y], [x, w])
    position = {id(n): i for i, n in enumerate(plan.order)}
    for node in plan.order:
        assert all(position[id(i)] < position[id(node)] for i in node.inputs)
    assert [n for _, n in plan.fed] == [x, w] and not plan.unfed

    fed_h = make_plan([y], [h])  # feeding h: x, w and the matmul are not needed
    assert [n for _, n in fed_h.fed] == [h]
    assert {n.name for n in fed_h.order}.isdisjoint({"x", "w"})
    assert not any(step.node is h for step in fed_h.steps)


def test_an_unfed_variable_is_listed_not_computed():
    x, w = ad.Variable("x"), ad.Variable("w")
    plan = make_plan([x * w], [x])
    assert plan.unfed == [w]


def test_identical_nodes_become_one_step():
    x = ad.Variable("x")
    a, b = ops.transpose(x), ops.transpose(x)  # two nodes, one computation
    y = a @ b
    plan = make_plan([y, b], [x])
    slot = {id(n): i for i, n in enumerate(plan.order)}
    assert plan.shared == {slot[id(b)]: slot[id(a)]}
    assert [s.node.op.name for s in plan.steps] == ["transpose", "matmul"]
    matmul = plan.steps[-1]
    assert matmul.inputs == (slot[id(a)], slot[id(a)])
    assert plan.outputs == [slot[id(y)], slot[id(a)]]  # the output b reads a's slot


def test_each_value_is_freed_once_after_its_last_reader_and_outputs_never():
    x = ad.Variable("x")
    h = ops.tanh(x)
    y = ops.sum_op(h * h + ops.exp(h))
    (g,) = ad.gradients(y, [x])
    plan = make_plan([y, g], [x])
    freed = [s for step in plan.steps for s in step.free]
    assert len(freed) == len(set(freed)), "a value is freed twice"
    assert not set(freed) & set(plan.outputs)
    for at, step in enumerate(plan.steps):  # steps run in their list's order
        for s in step.free:  # a check reads a gradient, and only the shape of its input
            readers = [p for p, t in enumerate(plan.steps) if s in t.inputs or any(s == c.grad for c in t.checks)]
            assert at == max(readers), f"slot {s} freed before its last reader"
    # Everything that is neither an output nor still needed is freed: at the end only outputs live.
    computed = {step.slot for step in plan.steps} | {s for s, _ in plan.fed}
    assert computed - set(freed) == set(plan.outputs)


def test_gradient_shape_checks_run_as_soon_as_both_values_exist():
    x, w = ad.Variable("x"), ad.Variable("w")
    y = ops.sum_op(ops.relu(x @ w))
    gx, gw = ad.gradients(y, [x, w])
    plan = make_plan([gx, gw], [x, w])
    slot = {id(n): i for i, n in enumerate(plan.order)}
    checks = [(at, c) for at, step in enumerate(plan.steps) for c in step.checks]
    assert any(c.grad == slot[id(gx)] and c.wrt == slot[id(x)] for _, c in checks)
    assert any(c.grad == slot[id(gw)] and c.wrt == slot[id(w)] for _, c in checks)
    position = {step.slot: at for at, step in enumerate(plan.steps)}  # a fed value exists from the start
    for at, c in checks:
        assert at == max(position.get(c.grad, -1), position.get(c.wrt, -1))
        assert c.via is None or c.via.op.name  # the rule's node, named in the error


def test_running_a_plan_is_a_plain_loop():
    x = ad.Variable("x")
    y = ops.sum_op(ops.exp(x) * x)
    (g,) = ad.gradients(y, [x])
    plan = make_plan([y, g], [x])
    value = torch.linspace(-1, 1, 5, dtype=torch.float64)
    y_v, g_v = run_interpreted(plan, [value])
    torch.testing.assert_close(y_v, (value.exp() * value).sum())
    torch.testing.assert_close(g_v, value.exp() * (value + 1))


def test_a_weights_gradient_runs_as_soon_as_the_gradient_it_reads_exists():
    """As torch's autograd does: the last layer's weight gradient is computed before the backward pass goes
    on to the first layer (a depth-first walk from the outputs [y, g1, g2] made it wait for g1's whole
    chain), so the activation and the gradient it reads are freed early."""
    x, w1, w2 = ad.Variable("x"), ad.Variable("w1"), ad.Variable("w2")
    a1 = x @ w1
    y = ops.sum_op(ops.tanh(ops.tanh(a1) @ w2))
    g1, g2 = ad.gradients(y, [w1, w2])
    plan = make_plan([y, g1, g2], [x, w1, w2])
    position = {step.node: p for p, step in enumerate(plan.steps)}
    grad_a1 = next(step.node for step in plan.steps if any(wrt is a1 for wrt, _ in step.node.gradient_of))
    assert position[g2] < position[grad_a1] < position[g1]
