"""The playground's expression language: valid forms build the right graph, every rejected form gives a
clean ExprError (with a column where it applies) and executes nothing, and hypothesis fuzzing finds no
other exception type, on random text or on random expression trees.
"""

from __future__ import annotations

import ast
import builtins
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autodiff as ad
from autodiff import expr
from autodiff.expr import ExprError, compile_program, parse_declarations


def value(text: str, declarations: str = "", seed: int = 0) -> torch.Tensor:
    program = compile_program(text, declarations, seed)
    return ad.Evaluator([program.output]).run(program.feed())[0]


# ---------------------------------------------------------------------------------------------
# Valid forms
# ---------------------------------------------------------------------------------------------

VALID = [  # expression, declarations, expected output shape
    ("x1 * x2 + x1", "", ()),
    ("relu(x @ W)", "x: 2x3, W: 3x4", (2, 4)),
    ("softmax(x @ W, dim=-1)", "x: 2x3, W: 3x4", (2, 4)),
    ("layernorm(x, [4])", "x: 2x4", (2, 4)),
    ("layernorm(x, normalized_shape=[4], eps=1e-3)", "x: 2x4", (2, 4)),
    ("sum(exp(x) / 2, dim=0)", "x: 3x2", (2,)),
    ("(x @ W1) ** 2", "x: 2x3, W1: 3x3", (2, 3)),
    ("softmax(q @ transpose(k, 0, 1) / 8) @ v", "q: 3x4, k: 3x4, v: 3x4", (3, 4)),
    ("-x + 2 - x / 3 * 4", "x: 5", (5,)),
    ("2 * x + 1 / x - (3 - x) + 2 ** x", "x: 2", (2,)),
    ("mean(x, dim=[0, 1], keepdim=True) + max(x) + sum(x, None, False)", "x: 2x3", (1, 1)),
    ("concat([x, y], dim=0)", "x: 2x3, y: 1x3", (3, 3)),
    ("slice(x, 1, 0, 2) + reshape(permute(y, [1, 0]), [3, 2])", "x: 3x4, y: 2x3", (3, 2)),
    ("squeeze(unsqueeze(x, 0), 0) * sigmoid(x) + tanh(x) + gelu(x) + silu(x) + abs(x) + erf(x)", "x: 4", (4,)),
    ("log_softmax(x) + sqrt(exp(x)) + log(exp(x))", "x: (2, 3)", (2, 3)),
    ("add(x, 1) * mul(2, x) - sub(x, x) / div(x, 3) + neg(x) + power(x, 2) + matmul(y, y)", "x: 2x2, y: 2x2", (2, 2)),
    ("  x\n + 1", "", ()),
]


@pytest.mark.parametrize("text, declarations, shape", VALID)
def test_valid_forms_build_and_evaluate(text, declarations, shape):
    program = compile_program(text, declarations)
    assert program.shapes[program.output] == shape
    assert value(text, declarations).shape == shape


def test_numbers_use_the_engines_const_ops_and_fold():
    program = compile_program("x * 2 + 1 / 4")
    ops_used = {n.op.name for n in ad.topological_sort(program.output)}
    assert ops_used == {"placeholder", "mul_by_const", "add_by_const"}
    assert program.output.attrs["constant"] == 0.25


def test_values_match_plain_torch():
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)
    got = value("softmax(x * 2, dim=0) + relu(x) ** 2", "x = [[1, -2], [3, 0.5]]")
    torch.testing.assert_close(got, torch.softmax(x * 2, dim=0) + torch.relu(x) ** 2)


def test_declarations_shapes_values_and_seeded_random():
    decls = parse_declarations("x: 2x3, W: 3 x 4; b = [1, 2.5, -3]\ns: scalar, v: 5, m: [2, 2] = [[1, 2], [3, 4]]")
    assert {k: d.shape for k, d in decls.items()} == {
        "x": (2, 3),
        "W": (3, 4),
        "b": (3,),
        "s": (),
        "v": (5,),
        "m": (2, 2),
    }
    assert decls["b"].value.tolist() == [1.0, 2.5, -3.0]
    a, b, c = (compile_program("x + y", "x: 2", seed) for seed in (0, 0, 1))
    assert torch.equal(a.values["x"], b.values["x"]) and not torch.equal(a.values["x"], c.values["x"])
    assert a.values["y"].shape == ()  # undeclared: a scalar
    assert a.values["x"].dtype == torch.float64


def test_variables_in_order_of_first_use():
    assert list(compile_program("b * a + c * b").variables) == ["b", "a", "c"]


# ---------------------------------------------------------------------------------------------
# Rejected forms: a clean error saying what and where
# ---------------------------------------------------------------------------------------------


def balanced(leaf: str, leaves: int) -> str:
    """`((a+a)+(a+a))...`: many nodes in few characters and little depth."""
    return leaf if leaves == 1 else f"({balanced(leaf, leaves // 2)}+{balanced(leaf, leaves - leaves // 2)})"


REJECTED = [  # expression, declarations, fragment of the message, column (None: no column)
    ("x +* 2", "", "syntax error", 4),
    ("relu(x", "", "syntax error", None),
    ("", "", "empty", None),
    ("foo(x)", "", "unknown function 'foo' — available: abs", 1),
    ("rellu(x)", "", "did you mean 'relu'", 1),
    ("x.grad", "", "attribute access", 1),
    ("x[0]", "", "indexing", 1),
    ("lambda: x", "", "lambda", 1),
    ("[y for y in x]", "", "comprehensions", 1),
    ("'rm -rf'", "", "strings", 1),
    ("f'{x}'", "", "strings", 1),
    ("x if x else x", "", "if ... else", 1),
    ("x < 1", "", "comparisons", 1),
    ("x and x", "", "and", 1),
    ("(y := x)", "", ":=", 2),
    ("{x: 1}", "", "dicts", 1),
    ("x % 2", "", "not supported", 1),
    ("x // 2", "", "not supported", 1),
    ("relu(*x)", "", "*args", 6),
    ("relu(x, **k)", "", "**kwargs", 11),
    ("softmax(x, axis=0)", "", "has no argument 'axis'", 17),
    ("softmax(x, dim=y)", "", "constant", 16),
    ("softmax(x, dim=1.5)", "", "whole number", 16),
    ("layernorm(x)", "", "needs its argument 'normalized_shape'", 1),
    ("relu(x, 1)", "", "too many arguments", 1),
    ("relu(2)", "", "not the number 2", 6),
    ("relu", "", "'relu' is a function", 1),
    ("x ** y", "", "exponent of ** must be a number", 1),
    ("x ** 1000", "", "too large", 1),
    ("9 ** 9 ** 9 * x", "", "too large", None),
    ("(-2) ** x", "", "positive base", 1),
    ("1 + 2", "", "no variables", None),
    ("x + 1e999", "", "too large", 5),
    ("x @ 2", "", "@ needs tensors", 1),
    ("_x + 1", "", "not a valid variable name", 1),
    ("x + True", "", "not a number", 5),
    ("x @ W", "", "declare its shape", 1),
    ("relu(x @ W)", "x: 2x3, W: 2x4", "matmul cannot take inputs of shapes [2, 3] and [2, 4]", 6),
    ("x + y", "x: 2x3, y: 4", "add cannot take inputs of shapes [2, 3] and [4]", 1),
    ("x * transpose(x, 0, 1)", "x: 2000x1", "over 1000000 elements", 1),
    ("x", "x: 2000x2000", "too many", None),
    ("x", "x: 2y3", "cannot read the shape", None),
    ("x", "x: 2x0", "at least 1", None),
    ("x", "x = [[1, 2], [3]]", "same length", None),
    ("x", "x = __import__('os')", "numbers or nested lists", None),
    ("x", "x: 2 = [1, 2, 3]", "declared", None),
    ("x", "x: 2, x: 3", "declared twice", None),
    ("x", "x", "cannot read the declaration", None),
    ("x" + " + x" * 600, "", "limit", None),
    ("(" * 250 + "x" + ")" * 250, "", "too many nested parentheses", 201),
    ("x\x00", "", "cannot contain null bytes", None),
    ("x" + " + x" * 450, "", "nests deeper", None),
    (balanced("2**x", 256), "", "nodes; the limit", None),
    # Total work: each tensor is within MAX_ELEMENTS, but all the nodes together are too much.
    ("gelu(" * 190 + "x" + ")" * 190, "x: 1000x1000", "more than 4,000,000 tensor elements in all", None),
    ("+".join(["x"] * 150), "x: 1000x1000", "use smaller shapes or a shorter expression", 1),
    ("@".join(["x"] * 30), "x: 1000x1000", "more than 250,000,000 multiply-adds", 1),
    ("relu(x @ x)", "x: 700x700", "use smaller shapes or fewer matmuls", 6),
    # Declarations: only ASCII digits in shapes; numbers float64 can hold; no bools or complex numbers.
    ("x", "x: ²", "cannot read the shape", None),
    ("x", "x: 2x²", "cannot read the shape", None),
    ("x", "x: ٣", "cannot read the shape", None),
    ("x", "x = " + "9" * 400, "too large", None),
    ("x", "x = [1, -" + "9" * 400 + "]", "too large", None),
    ("x", "x = 1j", "numbers or nested lists", None),
    ("x", "x = [True, 1]", "numbers or nested lists", None),
]


@pytest.mark.parametrize("text, declarations, fragment, column", REJECTED)
def test_rejected_forms_give_a_clean_error(text, declarations, fragment, column):
    with pytest.raises(ExprError) as info:
        compile_program(text, declarations)
    assert fragment in str(info.value)
    if column is not None:
        assert info.value.column == column


def test_declaration_errors_say_what_is_wrong_not_that_rows_are_ragged():
    for declarations in ["x = 1j", "x = True", "x = [[1, None]]", "x = 'a'"]:
        with pytest.raises(ExprError) as info:
            parse_declarations(declarations)
        assert "numbers or nested lists" in str(info.value) and "same length" not in str(info.value)


def test_the_work_limits_accept_big_but_bounded_expressions():
    assert compile_program("x @ x", "x: 500x500").shapes  # 125M multiply-adds
    assert compile_program("gelu(x) * y", "x: 1000x1000, y: 1000x1000").shapes  # 4M elements in all
    assert parse_declarations("x: 002x3")["x"].shape == (2, 3)  # leading zeros are still digits


def test_a_too_big_expression_is_refused_before_any_value_is_made(monkeypatch):
    monkeypatch.setattr(torch, "randn", lambda *a, **k: pytest.fail("made random values first"))
    with pytest.raises(ExprError, match="tensor elements in all"):
        compile_program("exp(" * 150 + "x" + ")" * 150, "x: 1000x1000")


INJECTIONS = [
    "__import__('os').system('touch /tmp/pwned')",
    "eval('1')",
    "exec('x = 1')",
    "open('/etc/passwd')",
    "().__class__.__bases__[0].__subclasses__()",
    "relu(x).__globals__",
    "getattr(x, '__class__')",
    "globals()",
    "breakpoint()",
    "relu(x, dim=__import__('os').getcwd())",
    "sum(x, dim=[__import__('os')])",
    "x if __import__('os').system('ls') else x",
    "(lambda: __import__('os'))()",
    "[__import__('os') for _ in x]",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_are_rejected_and_execute_nothing(text, monkeypatch, tmp_path):
    calls = []
    for module, name in [(builtins, n) for n in ("eval", "exec", "open", "globals", "breakpoint")] + [(os, "system")]:
        monkeypatch.setattr(module, name, lambda *args, _name=name, **kwargs: calls.append(_name))
    canary = tmp_path / "pwned"
    with pytest.raises(ExprError):
        compile_program(text.replace("/tmp/pwned", str(canary)), "x: 2")
    monkeypatch.undo()
    assert not calls and not canary.exists()


def test_the_module_never_calls_eval_exec_or_compile():
    tree = ast.parse(Path(expr.__file__).read_text())
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr"}


def test_caret_points_at_the_column():
    with pytest.raises(ExprError) as info:
        compile_program("x + foo(x)")
    assert info.value.caret("x + foo(x)").splitlines()[1] == "    ^"


# ---------------------------------------------------------------------------------------------
# Fuzzing: never an exception other than ExprError
# ---------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALPHABET = "xyW12 .,:;=+-*/@()[]_'\"{}<>!%&|^~#\\\nabcdefghijklmnopqrstuvwxyz" + "é∂λ0e"


def compile_or_expr_error(text: str, declarations: str = "") -> None:
    try:
        compile_program(text, declarations)
    except ExprError:
        pass


@FUZZ
@given(st.text(alphabet=ALPHABET, max_size=60), st.text(alphabet=ALPHABET, max_size=30))
def test_fuzz_random_text(text, declarations):
    compile_or_expr_error(text, declarations)


@FUZZ
@given(st.text(max_size=40))
def test_fuzz_any_unicode(text):
    compile_or_expr_error(text, "x: 2x2")


NAMES = st.sampled_from(["x", "y", "W", "2", "0", "-1", "0.5", "1e308", "[2]", "True", "None"])
FUNCS = st.sampled_from([*expr.ALL_NAMES, "foo", "__import__"])
KWARGS = st.sampled_from(["", ", dim=0", ", dim=-1", ", [2]", ", 0, 1", ", keepdim=True", ", eps=1e-5", ", 3"])


def trees(leaves):
    binary = st.tuples(leaves, st.sampled_from(["+", "-", "*", "/", "@", "**"]), leaves).map(" ".join)
    call = st.tuples(FUNCS, leaves, KWARGS).map(lambda t: f"{t[0]}({t[1]}{t[2]})")
    unary = leaves.map(lambda s: f"-({s})")
    return st.one_of(binary.map(lambda s: f"({s})"), call, unary)


@FUZZ
@given(
    st.recursive(NAMES, trees, max_leaves=12), st.sampled_from(["", "x: 2x2, W: 2x2, y: 2", "x: 2, y: 3", "W = [[1]]"])
)
def test_fuzz_random_expression_trees(text, declarations):
    compile_or_expr_error(text, declarations)
