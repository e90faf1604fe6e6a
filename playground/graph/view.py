"""The Graph page: type an expression, see its forward and backward graphs, values and gradients,
a gradient check against torch.autograd, a second-order graph, the text form and DOT/SVG exports.
The logic is logic.py (graphs, errors, the SVG export) and gradcheck.py (the torch oracle)."""

import shutil
import time

import streamlit as st

from autodiff.expr import ExprError, parse, variables_of
from autodiff.render import shape_text, summarize
from playground.common.markdown import literal
from playground.common.view import graph_chart, persistent, preset
from playground.graph.gradcheck import check
from playground.graph.logic import (
    DECLARATIONS,
    DEFAULT_EXAMPLE,
    DRAW_LIMIT,
    EXAMPLES,
    EXPRESSION,
    Exploration,
    SvgExportError,
    error_display,
    example_inputs,
    explore,
    render_svg,
    svg_refusal,
)

NO_SECOND = "—"


def request_example(label: str) -> None:
    """An example button's callback: fill the inputs with it."""
    for key, value in example_inputs(label).items():
        preset(key, value)


def inputs_ui() -> tuple[str, str, int, bool, str | None]:
    """The examples and input widgets; returns expression, declarations, seed, evaluate, second_of."""
    st.caption("Examples")
    with st.container(horizontal=True):  # each button as wide as its label, wrapping onto a second row
        for label in EXAMPLES:
            st.button(label, key=f"example_{label}", on_click=request_example, args=(label,))
    first = example_inputs(DEFAULT_EXAMPLE)
    left, right = st.columns([3, 2])
    expression = left.text_input(
        "Expression",
        **persistent(EXPRESSION, first[EXPRESSION]),
        help="Operators + - * / @ ** and functions like relu, softmax(a, dim=-1), layernorm(a, [4]), sum(a, dim=0).",
    )
    declarations = right.text_input(
        "Variables: shapes and optional values",
        **persistent(DECLARATIONS, first[DECLARATIONS]),
        help="`x: 2x3, W: 3x4` or `x = [[1, 2], [3, 4]]`. An undeclared variable is a scalar; missing values "
        "are random (seeded).",
    )
    try:
        names = variables_of(parse(expression))
    except ExprError:
        names = []
    seed_col, eval_col, second_col = st.columns([1, 1, 2])
    seed = int(seed_col.number_input("Seed for random values", min_value=0, max_value=2**31 - 1, value=0))
    evaluate = eval_col.toggle("Evaluate", value=True, help="Feed values and compute every node and gradient.")
    second = second_col.selectbox(
        "Differentiate again: gradients of",
        [NO_SECOND, *(f"∂out/∂{n}" for n in names)],
        help="Builds the graph of the gradient of sum(∂out/∂x) with respect to every variable.",
    )
    second_of = None if second == NO_SECOND else second.removeprefix("∂out/∂")
    return expression, declarations, seed, evaluate, second_of


def values_table(ex: Exploration) -> list[dict]:
    """One row per variable: its shape, value and gradient (summaries)."""
    rows = []
    for name, node in ex.program.variables.items():
        row = {"variable": name, "shape": shape_text(ex.shapes[node]), "value": summarize(ex.values[node])}
        row["gradient ∂out/∂variable"] = summarize(ex.values[ex.grads[name]])
        rows.append(row)
    return rows


def check_ui(ex: Exploration) -> None:
    st.subheader("Gradient check")
    st.caption("Each gradient against `torch.autograd` on the same expression in float64 (an oracle for display).")
    try:
        rows = check(ex)
    except Exception as err:  # the oracle is display only: never let it take the page down
        st.warning(literal(f"torch could not run this expression: {err}"))
        return
    st.table(
        [
            {
                "": r.status,
                "compared": r.gradient,
                "shape": str(list(r.shape)),
                "max |diff|": f"{r.max_abs_diff:.1e}",
            }
            for r in rows
        ],
        hide_index=True,
    )


def export_ui(ex: Exploration, dot: str) -> None:
    left, right = st.columns(2)
    left.download_button("Download DOT", dot, file_name="graph.dot", mime="text/vnd.graphviz")
    refusal = svg_refusal(ex)
    if not shutil.which("dot"):
        right.caption("SVG export needs the Graphviz `dot` program (e.g. `apt-get install graphviz`).")
    elif refusal:
        right.caption(literal(refusal))
    elif right.button("Make SVG", help="Runs Graphviz on the server (at most one at a time, stopped after 20 s)."):
        try:
            svg = render_svg(dot)
        except SvgExportError as err:
            right.warning(literal(str(err)), icon=":material/warning:")
        else:
            right.download_button("Download SVG", svg, file_name="graph.svg", mime="image/svg+xml", on_click="ignore")


st.title("Graph")
st.markdown(
    "Type an expression: the engine builds its **forward** graph, and `gradients()` builds the **backward** "
    "graph — more nodes, evaluated by the same evaluator. Dashed nodes in the backward graph are forward "
    "values it reads. Gradients are of the sum of the output (the backward pass starts from ones), which is "
    "why the softmax and layernorm examples multiply by a random `y`. A wide graph scrolls sideways; the DOT "
    "and SVG downloads are below."
)
expression, declarations, seed, evaluate, second_of = inputs_ui()
start = time.perf_counter()
try:
    ex = explore(expression, declarations, seed, evaluate, second_of)
except ExprError as err:
    message, code = error_display(err, expression, declarations)
    st.error(message, icon=":material/error:")
    if code is not None:
        st.code(code, language=None)
    st.stop()

total = ex.node_count()
draw_all = total <= DRAW_LIMIT or st.toggle(
    f"Draw all {total} nodes", help="Laying out several hundred nodes takes the browser a few seconds."
)
dots = ex.section_dots(forward_only=not draw_all)  # one drawing per section, stacked
steps = "built, evaluated and laid out" if evaluate else "built (not evaluated) and laid out"
st.caption(f"{total} nodes · {steps} as DOT in {(time.perf_counter() - start) * 1e3:.0f} ms")
if not draw_all:
    st.info(
        f"Showing the forward graph only: all {total} nodes would take the browser seconds to lay out. "
        "Turn on *Draw all* above, or read every node in the text form below.",
        icon=":material/info:",
    )
for dot in dots:  # up to DRAW_LIMIT nodes laid out on the server; a larger graph by the browser
    graph_chart(dot, on_server=total <= DRAW_LIMIT)
if evaluate:  # one under the other: side by side, a 1,024 px window squeezed both tables
    st.subheader("Values and gradients")
    st.table(values_table(ex), hide_index=True)
    check_ui(ex)
# Made only while open: a new session's page then loads no code highlighter before its drawing shows.
with st.expander("Text form (jaxpr-like) and generated code", key="graph_text_open", on_change="rerun") as text_form:
    if text_form.open:
        # the whole width for each, long lines wrapped: in half a narrow window they were cut off
        text_tab, code_tab = st.tabs(["Text form", "Generated code"])
        text_tab.caption("One line per node, ids as in the drawing; `#` says what a node is the gradient of")
        text_tab.code(ex.text(), language=None, wrap_lines=True)
        code_tab.caption("The straight-line Python `Evaluator.run` calls (the same ids)")
        code_tab.code(ex.generated_code(), language="python", wrap_lines=True)
export_ui(ex, ex.dot())
