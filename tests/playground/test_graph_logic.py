"""The Graph page's logic: `explore` builds forward, backward and second-order graphs with shapes and
values, and the torch.autograd oracle agrees with the engine on every example and every language
function, catches a wrong gradient, and treats NaN and infinity sensibly. Also the speed promises:
a ~100-node expression is built, evaluated, checked and rendered in well under a second, and so is
the biggest one the work limits accept. Fuzzing `explore` + `check` as the page calls them finds no
exception other than ExprError.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import playground.graph.logic as explore_module
from autodiff.expr import ALL_NAMES, FUNCTIONS, ExprError
from playground.common.markdown import literal
from playground.graph.gradcheck import TORCH, check, max_abs_diff
from playground.graph.logic import (
    EXAMPLES,
    SvgExportError,
    error_display,
    explore,
    render_svg,
    svg_refusal,
)


@pytest.mark.parametrize("label", EXAMPLES)
def test_every_example_matches_torch_to_first_and_second_order(label):
    expression, declarations = EXAMPLES[label]
    first_variable = next(iter(explore(expression, declarations, evaluate=False).grads))
    ex = explore(expression, declarations, second_of=first_variable)
    rows = check(ex)
    assert len(rows) == 1 + 2 * len(ex.grads)
    assert all(r.ok for r in rows), rows
    assert all(r.max_abs_diff < 1e-12 for r in rows)


FUNCTION_CASES = {  # one expression per language function (the table must cover them all)
    "exp": "exp(x)",
    "log": "log(exp(x) + 1)",
    "sqrt": "sqrt(x * x + 1)",
    "relu": "relu(x)",
    "sigmoid": "sigmoid(x)",
    "tanh": "tanh(x)",
    "erf": "erf(x)",
    "gelu": "gelu(x)",
    "silu": "silu(x)",
    "abs": "abs(x)",
    "sum": "sum(x * x, dim=1, keepdim=True) * y",
    "mean": "mean(x * x, dim=0) * y",
    "max": "max(x * y, dim=-1)",
    "softmax": "softmax(x, dim=0) * y",
    "log_softmax": "log_softmax(x) * y",
    "layernorm": "layernorm(x, [3], eps=0.1) * y",
    "transpose": "transpose(x, 0, 1) @ y",
    "permute": "permute(x, [1, 0]) @ y",
    "reshape": "reshape(x, [3, 2]) * reshape(y, [3, 2])",
    "unsqueeze": "unsqueeze(x, 0) * y",
    "squeeze": "squeeze(unsqueeze(x, 0), 0) * y",
    "slice": "slice(x, 1, 1, None) * slice(y, 1, 0, 2)",
    "concat": "concat([x, x * y], dim=0) ** 2",
}


def test_every_language_function_has_a_torch_counterpart_and_a_case():
    assert set(TORCH) == set(FUNCTIONS) == set(FUNCTION_CASES)


@pytest.mark.parametrize("name", FUNCTION_CASES)
def test_each_function_against_torch(name):
    ex = explore(FUNCTION_CASES[name], "x: 2x3, y: 2x3" if name not in ("transpose", "permute") else "x: 2x3, y: 2x4",
                 second_of="x")  # fmt: skip
    assert all(r.ok for r in check(ex)), check(ex)


def test_a_wrong_gradient_is_caught():
    ex = explore("x * y", "x: 3, y: 3")
    ex.values[ex.grads["x"]] = ex.values[ex.grads["x"]] + 1e-3
    rows = {r.gradient: r for r in check(ex)}
    assert not rows["∂out/∂x"].ok and rows["∂out/∂x"].max_abs_diff == pytest.approx(1e-3)
    assert rows["∂out/∂y"].ok


def test_an_unused_variable_has_a_zero_gradient_on_both_sides():
    ex = explore("x * 2 + 0 * exp(y) + y * 0", "x: 2, y: 2", second_of="y")
    assert all(r.ok for r in check(ex))


def test_max_abs_diff_counts_matching_nan_and_inf_as_equal():
    nan, inf = float("nan"), float("inf")
    assert max_abs_diff(torch.tensor([nan, inf, 1.0]), torch.tensor([nan, inf, 1.5])) == 0.5
    assert max_abs_diff(torch.tensor([nan]), torch.tensor([1.0])) == inf


def test_explore_shapes_values_sections_and_notes():
    ex = explore("relu(x @ W + b)", "x: 2x3, W: 3x4, b: 4", second_of="W")
    assert ex.shapes[ex.program.output] == (2, 4)
    assert all(ex.shapes[ex.grads[n]] == ex.shapes[v] for n, v in ex.program.variables.items())
    assert [s.title.split(" ")[0] for s in ex.sections()] == ["forward", "backward", "second"]
    assert set(ex.notes().values()) >= {"out", "seed: ∂out/∂out = 1", "∂out/∂x", "∂²out/∂W∂b"}
    assert "cluster_2" in ex.dot() and "second order" in ex.text()
    assert not explore("x * 2", evaluate=False).values
    assert "cluster_1" not in ex.dot(forward_only=True) and "t0 = matmul" in ex.dot(forward_only=True)


@pytest.mark.parametrize("label", EXAMPLES)
def test_each_section_is_its_own_drawing_with_every_node_and_edge_of_the_whole(label):
    """split_sections keeps every node and real edge of the one drawing, each in its own section's DOT
    (both ends of an edge in the same one), and drops only the invisible edges that stacked the sections."""
    first = next(iter(explore(*EXAMPLES[label], evaluate=False).program.variables))
    ex = explore(*EXAMPLES[label], second_of=first)  # three sections
    whole, parts = ex.dot(), ex.section_dots()
    node_line = re.compile(r"^    (\S+) \[label=", re.M)
    edge_line = re.compile(r"^  (\S+) -> (\S+?);$", re.M)
    assert len(parts) == len(ex.sections())
    for index, part in enumerate(parts):
        assert part.startswith("digraph G {") and part.rstrip().endswith("}")
        assert re.findall(r"subgraph (cluster_\d+)", part) == [f"cluster_{index}"]
        nodes = set(node_line.findall(part))
        assert all(a in nodes and b in nodes for a, b in edge_line.findall(part))
    assert sorted(n for p in parts for n in node_line.findall(p)) == sorted(node_line.findall(whole))
    assert sorted(e for p in parts for e in edge_line.findall(p)) == sorted(edge_line.findall(whole))
    assert "style=invis" in whole and not any("style=invis" in p for p in parts)


def test_explore_errors_are_expr_errors():
    with pytest.raises(ExprError, match="not a variable"):
        explore("x * 2", second_of="z")
    with pytest.raises(ExprError, match="matmul cannot take"):
        explore("x @ W", "x: 2x3, W: 2x3")


def hundred_node_expression() -> tuple[str, str]:
    """A two-layer MLP with layernorm and softmax, repeated: about 100 forward nodes."""
    block = "softmax(layernorm(gelu(x @ W1 + b1) @ W2, [4]) * y, dim=-1)"
    return " + ".join([block] * 14), "x: 8x16, W1: 16x32, b1: 32, W2: 32x4, y: 8x4"


@pytest.fixture
def one_torch_thread():
    """As in the app's server (playground/Home.py): with two OpenMP threads on a busy shared CPU, each
    small matmul can stall for milliseconds while both threads' spinning counts as CPU time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_hundred_node_expression_is_fast(one_torch_thread):
    expression, declarations = hundred_node_expression()
    explore(expression, declarations)  # warm up torch
    # CPU time, not wall time: the machine is shared, and waiting for a core is not our cost.
    start = time.process_time()
    ex = explore(expression, declarations)
    ex.dot(), ex.text(), check(ex)
    seconds = time.process_time() - start
    assert len(ex.program.shapes) >= 100
    assert seconds < 1.0, f"{len(ex.program.shapes)} forward nodes took {seconds:.2f} s"


def test_the_graph_limits_count_backward_and_second_order_work():
    # 4M elements forward passes compile_program; its backward and second order are ~10x more.
    explore("gelu(x) * y", "x: 1000x1000, y: 1000x1000", evaluate=False)
    with pytest.raises(ExprError, match="forward and backward graphs with the second order would compute more"):
        explore("gelu(x) * y", "x: 1000x1000, y: 1000x1000", second_of="x", evaluate=False)
    with pytest.raises(ExprError, match="multiply-adds in matmuls .* fewer matmuls"):
        explore("relu(x @ x @ x)", "x: 450x450", second_of="x", evaluate=False)


@pytest.mark.parametrize(
    "expression, declarations, second_of",
    [
        ("gelu(x) * y", "x: 1000x1000, y: 1000x1000", None),  # 20M elements over all graphs, the limit
        ("exp(x) * y", "x: 1000x1000, y: 1000x1000", "x"),  # 19M elements with the second order
        ("x @ x", "x: 500x500", "x"),  # 625M multiply-adds with the second order
    ],
)
def test_the_biggest_accepted_expressions_stay_quick(expression, declarations, second_of, one_torch_thread):
    explore("relu(x @ W)", "x: 2x3, W: 3x4", second_of="x")  # warm up torch
    start = time.process_time()  # CPU time of all threads: up to twice the wall time on 2 cores
    ex = explore(expression, declarations, second_of=second_of)
    ex.dot(), ex.text(), check(ex)
    seconds = time.process_time() - start
    assert seconds < 4.0, f"{expression} took {seconds:.2f} s of CPU"


# ---------------------------------------------------------------------------------------------
# Fuzzing the page's calls: explore, then (when evaluated) the gradient check, DOT and text form
# ---------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def explore_like_the_page(expression: str, declarations: str) -> None:
    """What graph.py does, first without then with a second order: only ExprError from explore is
    caught; check() must not raise either (the page would only show its error as a warning)."""
    for second in (False, True):
        try:
            names = list(explore(expression, declarations, evaluate=False).grads)
            ex = explore(expression, declarations, 0, True, names[0] if second else None)
        except ExprError:
            return
        ex.dot(), ex.text(), check(ex)


@FUZZ
@given(st.text(max_size=30), st.text(max_size=30))
def test_fuzz_explore_on_any_unicode(expression, declarations):
    explore_like_the_page(expression, declarations)


TENSORS = st.sampled_from(["x", "y"])
LEAVES = TENSORS | st.sampled_from(["2", "-1", "0.5", "0", "1e308", "1e-308", "True"])
KWARGS = st.sampled_from(["", ", dim=0", ", dim=-1", ", [2]", ", 0, 1", ", keepdim=True", ", -5", ", 1, None"])
DECLARATIONS = st.sampled_from(  # mostly valid, so most examples reach the evaluator and the check
    ["x: 2x2, y: 2", "x = [[0, 1], [-1, 1e308]]", "x: 2x3, y: 3x2", "x = [], y = [[]]", "x = 1e400", "y: 1x1x1", ""]
) | st.text(alphabet="xy:=,;[]()0123456789.-e×x ²٣\n", max_size=24)


def expression_trees(leaves):
    binary = st.tuples(leaves, st.sampled_from(["+", "-", "*", "/", "@", "**"]), leaves).map(" ".join)
    call = st.tuples(st.sampled_from(ALL_NAMES), leaves, KWARGS).map(lambda t: f"{t[0]}({t[1]}{t[2]})")
    concat = st.tuples(leaves, TENSORS).map(lambda t: f"concat([{t[1]}, {t[0]}])")
    return st.one_of(binary.map(lambda s: f"({s})"), call, concat)


@FUZZ
@given(st.recursive(LEAVES, expression_trees, max_leaves=8).filter(lambda e: "x" in e or "y" in e), DECLARATIONS)
def test_fuzz_explore_on_expression_trees(expression, declarations):
    explore_like_the_page(expression, declarations)


# --- what the page shows around an exploration (issue 9 #3, #14, #18) ---


def test_non_finite_gradients_are_flagged_even_when_torch_agrees():
    ex = explore("log(x) + sqrt(y)", "x = [0.0, 1.0], y = [-1.0, 4.0]")
    rows = {r.gradient: r for r in check(ex)}
    assert rows["∂out/∂x"].ok and not rows["∂out/∂x"].finite  # 1/0 = inf on both sides
    assert rows["∂out/∂y"].ok and not rows["∂out/∂y"].finite  # NaN on both sides
    assert rows["∂out/∂x"].status.startswith("✗ not finite")
    clean = check(explore("x * 2", "x: 3"))
    assert all(r.status == "✓" for r in clean)


def test_an_argument_that_cannot_fit_is_named_with_a_caret_under_it():
    expression = "softmax(x, dim=5)"
    with pytest.raises(ExprError) as info:
        explore(expression, "x: 2x3")
    err = info.value
    assert err.message.startswith("softmax: dim=5 is out of range for an input of shape [2, 3]")
    assert "use a dim from -2 to 1" in err.message
    assert err.caret(expression).splitlines()[1] == " " * expression.index("5") + "^"
    with pytest.raises(ExprError, match=r"layernorm: normalized_shape=\[4\] must be the last dims.*e\.g\. \[3\]"):
        explore("layernorm(x, [4])", "x: 2x3")
    with pytest.raises(ExprError, match=r"transpose: dim1=4") as info:
        explore("transpose(x, 0, 4)", "x: 2x3")
    assert info.value.column == len("transpose(x, 0, ") + 1


def test_messages_are_shown_literally_and_the_code_box_shows_what_is_wrong():
    with pytest.raises(ExprError) as info:
        explore("__import__('os')")
    message, code = error_display(info.value, "__import__('os')", "")
    assert "unknown function \\'\\_\\_import\\_\\_\\'" in message  # Markdown would make it bold `import`
    assert re.sub(r"\\(.)", r"\1", message) == str(info.value)  # unescaped, exactly the message
    assert code == "__import__('os')\n^"
    assert literal(":material/error: $x$ [a](b) *b* #") == ("\\:material\\/error\\: \\$x\\$ \\[a\\]\\(b\\) \\*b\\* \\#")
    with pytest.raises(ExprError) as info:  # the declarations are wrong: show them, not the expression
        explore("x * 2", "x: 2y3")
    assert error_display(info.value, "x * 2", "x: 2y3")[1] == "x: 2y3"
    with pytest.raises(ExprError) as info:  # no column, not the declarations: no code box
        explore("x * 2", second_of="z")
    assert error_display(info.value, "x * 2", "")[1] is None


def test_generated_code_reads_beside_the_text_form():
    ex = explore(*EXAMPLES["softmax"])
    code, text = ex.generated_code(), ex.text()
    assert code.startswith("def graph(x, W, y):")
    for line in ("t0 = matmul(x, W)", "t1 = softmax(t0, -1)", "t5 = softmax_backward("):
        assert line in code
    assert "t0: f64[2,4] = matmul(x, W)" in text and "t5: f64[2,4] = softmax_backward(" in text
    assert "sum_to_shape_" not in code  # no global counters in the names


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
def test_svg_export_renders_a_bounded_graph():
    ex = explore(*EXAMPLES["scalar"])
    assert svg_refusal(ex) is None
    assert render_svg(ex.dot()).lstrip().startswith(b"<?xml")


def test_svg_export_refuses_graphs_past_its_bounds():
    # The cases: a balanced product of 400 `x` leaves (2,396 nodes with the backward graph),
    # and concat of 380 2x2 variables (145,161 edges: each part's gradient reads every part).
    def balanced(n: int) -> str:
        return "x" if n == 1 else f"({balanced(n // 2)}*{balanced(n - n // 2)})"

    product = explore(balanced(400), evaluate=False)
    parts = ",".join(f"v{i}" for i in range(380))
    concat = explore(f"concat([{parts}])", ", ".join(f"v{i}: 2x2" for i in range(380)), evaluate=False)
    assert (product.node_count(), concat.edge_count()) == (2396, 145161)
    for ex in (product, concat):
        refusal = svg_refusal(ex)
        assert refusal and "download the DOT" in refusal


def test_svg_export_stops_a_slow_graphviz_and_runs_one_at_a_time():
    slow = (sys.executable, "-c", "import time; time.sleep(60)")
    start = time.monotonic()
    with pytest.raises(SvgExportError, match="longer than 1 s and was stopped"):
        render_svg("digraph {}", timeout_s=1, command=slow)
    assert time.monotonic() - start < 10
    leftovers = subprocess.run(["pgrep", "-f", "time.sleep\\(60\\)"], capture_output=True, text=True).stdout
    assert not leftovers.strip(), "the stopped process is still running"

    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: (explore_module._svg_lock.acquire(), ready.set(), release.wait(),
                                              explore_module._svg_lock.release()))  # fmt: skip
    holder.start()
    ready.wait()
    try:
        with pytest.raises(SvgExportError, match="another SVG export is running"):
            render_svg("digraph {}")
    finally:
        release.set()
        holder.join()
