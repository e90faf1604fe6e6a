"""`gradients()`: reverse-mode differentiation as graph building, for any graph of ops.

It seeds the walk of `graph.walk_backward` with ones like the output and turns a variable the
output does not depend on into a real zero tensor. With `fused=False` each fused backward node (one
torch kernel, e.g. `layernorm_backward`) is written out in primitive ops (`unfuse`): the same values
from more, smaller nodes, to see what fusing saves. It sits above both graph.py and the ops.
"""

from __future__ import annotations

from collections.abc import Sequence

from autodiff.graph import Node, topological_sort, walk_backward
from autodiff.ops import add, ones_like, zeros_like


def gradients(output_node: Node, nodes: Sequence[Node], fused: bool = True) -> list[Node]:
    """Gradient nodes of `output_node` w.r.t. each of `nodes`, seeded with ones like the output; with
    `fused=False`, without fused backward nodes (see `unfuse`)."""
    seed = ones_like(output_node)
    seed.name, seed.auto_named = f"grad_{output_node.name}", output_node.auto_named
    result = []
    for n, g in zip(nodes, walk_backward(output_node, seed, nodes, add)):
        if g is None:  # the output does not depend on n: its gradient is a real zero tensor
            g = zeros_like(n)
            g.name = f"grad_{n.name}"
        result.append(g)
    return result if fused else unfuse(result)


def unfuse(nodes: Sequence[Node]) -> list[Node]:
    """The same values with every fused backward node (an op with `primitive`) replaced by its formula in
    primitive ops. Nodes that read a replaced one are copied; the rest of the graph is shared."""
    new: dict[int, Node] = {}
    for node in topological_sort(nodes):
        inputs = [new[id(i)] for i in node.inputs]
        if hasattr(node.op, "primitive") or any(a is not b for a, b in zip(inputs, node.inputs)):
            copy = Node(inputs, node.op, node.attrs, "" if node.auto_named else node.name)
            out = node.op.primitive(copy) if hasattr(node.op, "primitive") else copy
            if out is not copy and not node.auto_named:
                out.name, out.auto_named = node.name, False  # `grad_w` stays `grad_w`
            # keep the gradient-shape checks: the new node is the gradient the old one was
            out.gradient_of += [(new.get(id(wrt), wrt), via) for wrt, via in node.gradient_of]
            new[id(node)] = out
        else:
            new[id(node)] = node
    return [new[id(n)] for n in nodes]
