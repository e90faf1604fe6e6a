"""What the Graph page shows, computed without Streamlit: an expression's forward graph, its backward
graph from `gradients()`, optionally a second-order graph, every node's shape and (when evaluated) value.

The page calls `explore(...)` and draws the result; tests call it directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from autodiff import Evaluator, Node, gradients, ops, topological_sort
from autodiff.expr import ExprError, Program, compile_program, infer_shapes
from autodiff.graph import Tensor
from autodiff.render import Section, listing, to_dot

MAX_TOTAL_NODES = 4000  # forward + backward + second order, so the text form stays readable
# Work over forward + backward + second order together. Every node's value is kept (the drawing shows
# a summary of each), so MAX_GRAPH_ELEMENTS also bounds memory: 20M float64 = 160 MB, and about as
# much again for the torch.autograd check. Measured worst cases evaluate, check and render in ~1 s.
MAX_GRAPH_ELEMENTS = 20_000_000
MAX_GRAPH_MACS = 1_000_000_000
# Graphviz (WASM, in the browser) lays out a few hundred nodes in about a second on a shared CPU;
# past this many the page draws the forward graph only unless asked (the text form has it all).
DRAW_LIMIT = 200

EXAMPLES = {  # label -> (expression, declarations)
    "scalar": ("x1 * x2 + x1", ""),
    "matmul + ReLU layer": ("relu(x @ W + b)", "x: 2x3, W: 3x4, b: 4"),
    # softmax rows and layernorm outputs sum to a constant, so the gradient of their plain sum is zero:
    # a random `y` acts as a generic upstream gradient.
    "softmax": ("softmax(x @ W, dim=-1) * y", "x: 2x3, W: 3x4, y: 2x4"),
    "layernorm": ("layernorm(x, [4]) * y", "x: 2x4, y: 2x4"),
    "attention head": ("softmax(q @ transpose(k, 0, 1) / 8) @ v", "q: 3x4, k: 3x4, v: 3x4"),
}


@dataclass
class Exploration:
    """An expression's graphs, shapes and values, ready to draw."""

    program: Program
    grads: dict[str, Node]  # variable name -> node of d(sum out)/d var
    second: dict[str, Node] = field(default_factory=dict)  # var -> d(sum grads[second_of])/d var
    second_of: str | None = None
    shapes: dict[Node, tuple[int, ...]] = field(default_factory=dict)
    values: dict[Node, Tensor] = field(default_factory=dict)  # empty until evaluated
    seconds: float = 0.0  # time to build, evaluate and (after `dot()`/`text()`) render

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

    def text(self) -> str:
        return listing(self.sections(), self.shapes)

    def node_count(self) -> int:
        return len(topological_sort([self.program.output, *self.grads.values(), *self.second.values()]))


def explore(
    expression: str, declarations: str = "", seed: int = 0, evaluate: bool = True, second_of: str | None = None
) -> Exploration:
    """Build the graphs of `expression`; with `evaluate`, feed values and compute every node.
    `second_of` names a variable whose gradient is differentiated again. Raises ExprError."""
    start = time.perf_counter()
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
            result.values = dict(zip(nodes, Evaluator(nodes).run(feed)))
        except Exception as err:  # an engine failure: show it, keep the page alive
            raise ExprError(f"evaluation failed: {str(err).splitlines()[0]}") from err
    result.seconds = time.perf_counter() - start
    return result
