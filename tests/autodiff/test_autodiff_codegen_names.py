"""Generated code and the names users give their variables (issue 19, item 9).

Python compiles identifiers in NFKC form, so a variable named with fullwidth letters (`ｒｅｌｕ`), a
ligature (`ﬁ`) or mathematical letters (`𝐱`) would become another name in the generated source and
shadow an op function or a generated local. Only ASCII names become locals; compiled code must equal
the interpreted loop whatever the names.
"""

import random
import unicodedata

import pytest
import torch

import autodiff as ad

TRICKY = ["ｒｅｌｕ", "ｔ3", "t3", "ﬁ", "𝐱", "ｍａｔｍｕｌ", "t1_", "sum", "relu", "check", "ready", "_c0"]
TRICKY += ["ｃｈｅｃｋ"]


def _both(outputs, feed):
    compiled = ad.Evaluator(outputs).run(feed)
    interpreted = ad.Evaluator(outputs, compiled=False).run(feed)
    for a, b in zip(compiled, interpreted):
        assert torch.equal(a, b)
    return compiled


@pytest.mark.parametrize("name", TRICKY)
def test_a_name_that_normalizes_to_another_cannot_shadow_an_op_or_a_local(name):
    x, y = ad.Variable(name), ad.Variable("t3")
    out = ad.relu(ad.matmul(x, y)) + ad.sum_op(x)
    (g,) = ad.gradients(ad.sum_op(out), [x])
    feed = {x: torch.randn(3, 3, dtype=torch.float64), y: torch.randn(3, 3, dtype=torch.float64)}
    value, grad = _both([out, g], feed)
    expected = torch.relu(feed[x] @ feed[y]) + feed[x].sum()
    torch.testing.assert_close(value, expected)
    source = ad.Evaluator([out, g]).source(feed)
    assert all(unicodedata.normalize("NFKC", line) == line for line in source.splitlines() if "#" not in line)


def test_random_graphs_with_random_names_run_the_same_compiled_and_interpreted():
    rng = random.Random(0)
    alphabet = "abtvxyz0123456789_ｔｒｅｌｕﬁ𝐱𝐭"
    unary = [ad.relu, ad.tanh, ad.sigmoid, lambda a: ad.mul_by_const(a, 0.5)]
    binary = [ad.add, ad.mul, ad.sub, ad.matmul]
    for _ in range(3000):
        names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3))) for _ in range(3)]
        names = [n if not n[0].isdigit() else "v" + n for n in names]
        leaves = [ad.Variable(n) for n in names]
        nodes = list(leaves)
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.5:
                nodes.append(rng.choice(unary)(rng.choice(nodes)))
            else:
                nodes.append(rng.choice(binary)(rng.choice(nodes), rng.choice(nodes)))
        feed = {leaf: torch.randn(2, 2, dtype=torch.float64) for leaf in leaves}
        _both([nodes[-1]], feed)
