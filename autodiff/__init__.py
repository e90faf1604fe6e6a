"""autodiff: a static-graph (TensorFlow-v1 style) automatic-differentiation engine over torch tensors.

Build a graph of Nodes, feed values through `Evaluator.run`, and get gradients as more graph with
`gradients()`. This module is the public API only: nodes and ops' base in `graph.py`, the ops in
the package `ops/`, reverse mode in `backward.py`, running in `plan.py` -> `codegen.py` -> `evaluator.py`.
"""

from autodiff.backward import gradients
from autodiff.evaluator import Evaluator
from autodiff.graph import (
    GradientCountError,
    GradientShapeError,
    Node,
    Op,
    OpError,
    PlaceholderOp,
    Variable,
    topological_sort,
)
from autodiff.ops import *  # noqa: F403  (every op instance; the list is ops.__all__)
from autodiff.ops import __all__ as OP_NAMES

__all__ = [
    "Evaluator",
    "GradientCountError",
    "GradientShapeError",
    "Node",
    "Op",
    "OpError",
    "PlaceholderOp",
    "Variable",
    "gradients",
    "topological_sort",
    "OP_NAMES",
    *OP_NAMES,
]
