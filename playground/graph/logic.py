"""What the Graph page shows, computed without Streamlit: an expression's forward graph, its backward
graph from `gradients()`, optionally a second-order graph, every node's shape and (when evaluated) value,
the code the evaluator generates, how an error is shown, the bounded SVG export, and the examples.

The page calls these and draws the result; tests call them directly. The gradient check against
torch.autograd is gradcheck.py.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from autodiff import Evaluator, Node, gradients, ops, topological_sort
from autodiff.expr import ExprError, Program, compile_program, infer_shapes
from autodiff.graph import Tensor
from autodiff.render import Section, layout, listing, to_dot
from playground.common.drawing import GraphvizError, run_dot
from playground.common.markdown import literal

MAX_TOTAL_NODES = 4000  # forward + backward + second order, so the text form stays readable
# Work over forward + backward + second order together. Every node's value is kept (the drawing shows
# a summary of each), so MAX_GRAPH_ELEMENTS also bounds memory: 20M float64 = 160 MB, and about as
# much again for the torch.autograd check. Measured worst cases evaluate, check and render in ~1 s.
MAX_GRAPH_ELEMENTS = 20_000_000
MAX_GRAPH_MACS = 1_000_000_000
# Past this many nodes the page draws the forward graph only unless asked (the text form has it all);
# up to it `dot` lays drawings out on the server, past it the browser does (Graphviz in WebAssembly, with
# its fullscreen button: a few hundred nodes take it seconds on a shared CPU).
DRAW_LIMIT = 200
# SVG export runs the `dot` program on the server: bounded in size and time, one at a time. Measured
# here (a loaded 2-core machine): 838 nodes lay out in 2.7 s; the 2,396-node and 145,161-edge
# graphs ran for minutes.
MAX_SVG_NODES = 1000
MAX_SVG_EDGES = 3000
SVG_TIMEOUT_S = 20.0

EXAMPLES = {  # label -> (expression, declarations)
    "scalar": ("x1 * x2 + x1", ""),
    "matmul + ReLU layer": ("relu(x @ W + b)", "x: 2x3, W: 3x4, b: 4"),
    # softmax rows and layernorm outputs sum to a constant, so the gradient of their plain sum is zero:
    # a random `y` acts as a generic upstream gradient.
    "softmax": ("softmax(x @ W, dim=-1) * y", "x: 2x3, W: 3x4, y: 2x4"),
    "layernorm": ("layernorm(x, [4]) * y", "x: 2x4, y: 2x4"),
    "attention head": ("softmax(q @ transpose(k, 0, 1) / 8) @ v", "q: 3x4, k: 3x4, v: 3x4"),
}
DEFAULT_EXAMPLE = "scalar"  # what the page shows first
EXPRESSION, DECLARATIONS = "graph_expression", "graph_declarations"  # the input widgets' keys (kept across pages)


def example_inputs(label: str) -> dict[str, str]:
    """An example as the values of the page's two input widgets."""
    expression, declarations = EXAMPLES[label]
    return {EXPRESSION: expression, DECLARATIONS: declarations}


@dataclass
class Exploration:
    """An expression's graphs, shapes and values, ready to draw."""

    program: Program
    grads: dict[str, Node]  # variable name -> node of d(sum out)/d var
    second: dict[str, Node] = field(default_factory=dict)  # var -> d(sum grads[second_of])/d var
    second_of: str | None = None
    shapes: dict[Node, tuple[int, ...]] = field(default_factory=dict)
    values: dict[Node, Tensor] = field(default_factory=dict)  # empty until evaluated

    def sections(self) -> list[Section]:
        parts = [Section("forward", [self.program.output]), Section("backward (gradients)", list(self.grads.values()))]
        if self.second:
            parts.append(Section(f"second order (gradients of ∂out/∂{self.second_of})", list(self.second.values())))
        return parts

    def notes(self) -> dict[Node, str]:
        """Extra label lines: the output, the seed of the backward pass, the requested gradients."""
        out = self.program.output
        notes = {out: "out"}
        for node in topological_sort(list(self.grads.values())):
            if node.op is ops.ones_like and node.inputs == [out]:
                notes[node] = "seed: ∂out/∂out = 1"
        for name, node in self.grads.items():
            notes[node] = f"∂out/∂{name}"
        for name, node in self.second.items():
            notes[node] = f"∂²out/∂{self.second_of}∂{name}"
        return notes

    def dot(self, forward_only: bool = False) -> str:
        """The DOT of every section, or of the forward graph only (quick to lay out when big)."""
        sections = self.sections()[:1] if forward_only else self.sections()
        return to_dot(sections, self.shapes, self.values, self.notes())

    def section_dots(self, forward_only: bool = False) -> list[str]:
        """One DOT per section, each laid out on its own (what the page draws): `split_sections` says why."""
        return split_sections(self.dot(forward_only))

    def text(self) -> str:
        return listing(self.sections(), self.shapes)

    def node_count(self) -> int:
        return len(topological_sort(self.outputs()))

    def edge_count(self) -> int:
        return sum(len(n.inputs) for n in topological_sort(self.outputs()))

    def outputs(self) -> list[Node]:
        return [self.program.output, *self.grads.values(), *self.second.values()]

    def generated_code(self) -> str:
        """The straight-line Python `Evaluator.run` calls for these graphs, its locals named like the
        text form's ids (t0, t1...) so the two read side by side."""
        lay = layout(self.sections(), self.shapes)
        names = dict(lay.ids)
        for hidden, shown in lay.alias.items():  # not in the text form: named after what they pass on
            names[hidden] = f"{lay.ids[shown]}_same"
        return Evaluator(self.outputs()).source(self.program.feed(), names=names)


def explore(
    expression: str, declarations: str = "", seed: int = 0, evaluate: bool = True, second_of: str | None = None
) -> Exploration:
    """Build the graphs of `expression`; with `evaluate`, feed values and compute every node.
    `second_of` names a variable whose gradient is differentiated again. Raises ExprError."""
    program = compile_program(expression, declarations, seed)
    names = list(program.variables)
    grads = dict(zip(names, gradients(program.output, list(program.variables.values()))))
    result = Exploration(program, grads)
    if second_of is not None:
        if second_of not in grads:
            raise ExprError(f"cannot differentiate again by '{second_of}': it is not a variable of the expression")
        result.second = dict(zip(names, gradients(grads[second_of], list(program.variables.values()))))
        result.second_of = second_of
    outputs = [program.output, *result.grads.values(), *result.second.values()]
    total = len(topological_sort(outputs))
    if total > MAX_TOTAL_NODES:
        raise ExprError(
            f"the graphs have {total} nodes together; the limit is {MAX_TOTAL_NODES}: shorten the expression"
        )
    feed = program.feed()
    graphs = "the forward and backward graphs" + (" with the second order" if second_of is not None else "")
    result.shapes = infer_shapes(
        outputs, {node: tuple(v.shape) for node, v in feed.items()}, None, MAX_GRAPH_ELEMENTS, MAX_GRAPH_MACS, graphs
    )
    if evaluate:
        nodes = topological_sort(outputs)
        try:
            # Run once: the interpreted loop (generating code pays off only when a graph runs many times).
            result.values = dict(zip(nodes, Evaluator(nodes, compiled=False).run(feed)))
        except Exception as err:  # an engine failure: show it, keep the page alive
            raise ExprError(f"evaluation failed: {str(err).splitlines()[0]}") from err
    return result


_NODE = re.compile(r"^    (\S+) \[label=")  # a node line inside a cluster of to_dot's output
_EDGE = re.compile(r"^  (\S+) -> (\S+?)[;\s]")


def split_sections(dot: str) -> list[str]:
    """to_dot's drawing cut into one DOT per section (forward, backward, second order). Drawn as one graph,
    the sections were stacked by invisible edges into a staircase as wide as all of them together, which
    the page then shrank to ~3 px labels; apart, each is only as wide as itself. A value a section reads
    from an earlier one is already a dashed ghost node inside it, so only the stacking edges are dropped."""
    lines = dot.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  subgraph cluster_"))
    header, clusters, edges = lines[:first], [], []
    owner: dict[str, int] = {}  # node id -> its cluster
    inside = False
    for line in lines[first:-1]:  # the last line closes the graph
        if line.startswith("  subgraph cluster_"):
            clusters.append([line])
            inside = True
        elif inside:
            clusters[-1].append(line)
            inside = line != "  }"
            if node := _NODE.match(line):
                owner[node.group(1)] = len(clusters) - 1
        elif (edge := _EDGE.match(line)) and "style=invis" not in line:
            edges.append((owner[edge.group(2)], line))
    return [
        "\n".join([*header, *cluster, *(line for at, line in edges if at == index), "}"]) + "\n"
        for index, cluster in enumerate(clusters)
    ]


def error_display(err: ExprError, expression: str, declarations: str) -> tuple[str, str | None]:
    """(Markdown message, code block or None) for an error: the expression with a caret under the
    column when the expression is at fault, the declarations when they are, nothing otherwise."""
    message = literal(err)  # `__import__` stays itself, not a bold `import`
    if err.in_declarations:
        return message, declarations
    return message, err.caret(expression) if err.column else None


SvgExportError = GraphvizError  # the export's failures: refused, too slow, or Graphviz's own error

_svg_lock = threading.Lock()  # one export at a time for the whole server: each may take seconds


def svg_refusal(ex: Exploration) -> str | None:
    """Why these graphs are too big to export as SVG, or None."""
    nodes, edges = ex.node_count(), ex.edge_count()
    if nodes > MAX_SVG_NODES or edges > MAX_SVG_EDGES:
        return (
            f"SVG export is limited to {MAX_SVG_NODES:,} nodes and {MAX_SVG_EDGES:,} edges (these graphs have "
            f"{nodes:,} and {edges:,}): download the DOT and run `dot -Tsvg` yourself, or shorten the expression"
        )
    return None


def render_svg(dot: str, timeout_s: float = SVG_TIMEOUT_S, command: tuple[str, ...] = ("dot", "-Tsvg")) -> bytes:
    """The SVG file of `dot` from the Graphviz program, killed after `timeout_s`; one export at a time."""
    if not _svg_lock.acquire(blocking=False):
        raise SvgExportError("another SVG export is running: try again in a few seconds")
    try:
        return run_dot(dot, timeout_s, command)
    finally:
        _svg_lock.release()
