"""`gradients()`: reverse-mode differentiation as graph building, for any graph of ops.

It seeds the walk of `graph.walk_backward` with ones like the output and turns a variable the
output does not depend on into a real zero tensor. It sits above both graph.py and the ops.
"""

from __future__ import annotations

from collections.abc import Sequence

from autodiff.graph import Node, walk_backward
from autodiff.ops import add, ones_like, zeros_like


def gradients(output_node: Node, nodes: Sequence[Node]) -> list[Node]:
    """Gradient nodes of `output_node` w.r.t. each of `nodes`, seeded with ones like the output."""
    seed = ones_like(output_node)
    seed.name, seed.auto_named = f"grad_{output_node.name}", output_node.auto_named
    result = []
    for n, g in zip(nodes, walk_backward(output_node, seed, nodes, add)):
        if g is None:  # the output does not depend on n: its gradient is a real zero tensor
            g = zeros_like(n)
            g.name = f"grad_{n.name}"
        result.append(g)
    return result
