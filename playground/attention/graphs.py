"""The Attention page's expressions as autodiff graphs: every step's output over the embeddings x, the
seeded weights and the causal mask, built once and run by one `Evaluator`; each step's drawing (DOT, with
values) and, on request, its backward pass. Plain torch appears only as the values fed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import autodiff as ad
from autodiff.render import Section, to_dot


@dataclass
class Backward:
    """A step's graph with its backward pass: the gradients training would use, as more graph."""

    dot: str
    gradients: dict[str, torch.Tensor]  # input name (x, W_q...) -> ∂L/∂input
    upstream: torch.Tensor  # r in L = sum(out ⊙ r)


def _named(node: ad.Node, name: str) -> ad.Node:
    # the drawing shows a node's real name (ω, α, z...) instead of its per-graph number alone
    node.name, node.auto_named = name, False
    return node


@dataclass
class Graphs:
    """Every step's output nodes over shared inputs, evaluated once."""

    inputs: dict[str, ad.Node]
    outputs: dict[str, ad.Node]
    values: dict[ad.Node, torch.Tensor]
    shapes: dict[ad.Node, tuple[int, ...]]
    feed: dict[ad.Node, torch.Tensor]

    def value(self, name: str) -> torch.Tensor:
        return self.values[self.outputs[name]]

    def dot(self, title: str, names: list[str], notes: dict[str, str]) -> str:
        """The forward graph of the named outputs, with values, each output labelled by its note."""
        nodes = [self.outputs[n] for n in names]
        return to_dot([Section(title, nodes)], self.shapes, self.values, {self.outputs[n]: notes[n] for n in notes})


def build_graphs(x: torch.Tensor, weights: dict[str, torch.Tensor], d_k: int, heads: int, focus: int = 1) -> Graphs:
    """All six steps as autodiff graphs over x, the weights and the causal mask; one Evaluator runs them.
    `focus` is the query token whose context vector step 3 takes apart term by term."""
    X = ad.Variable("x")
    W = {name: ad.Variable(name) for name in weights}
    mask = ad.Variable("causal mask")  # True above the diagonal: a query never sees later keys
    out: dict[str, ad.Node] = {}
    # 1. scores without weights: every token's dot product with every other
    out["omega"] = _named(ad.matmul(X, ad.transpose(X)), "ω")  # (T, T)
    # 2. normalization: divide by the row sum, or softmax; and both on scores shifted to sum to zero
    out["naive"] = _named(ad.div(out["omega"], ad.sum_op(out["omega"], dim=-1, keepdim=True)), "α naive")
    out["alpha"] = _named(ad.softmax(out["omega"], dim=-1), "α")  # (T, T)
    shifted = _named(ad.sub(out["omega"], ad.mean(out["omega"], dim=-1, keepdim=True)), "ω - mean")
    out["shifted"] = shifted
    out["naive_shifted"] = _named(ad.div(shifted, ad.sum_op(shifted, dim=-1, keepdim=True)), "naive(ω - mean)")
    out["softmax_shifted"] = _named(ad.softmax(shifted, dim=-1), "softmax(ω - mean)")
    # 3. context vectors: each token's weighted sum of all embeddings
    out["z"] = _named(ad.matmul(out["alpha"], X), "z")  # (T, d)
    # ... and one query's sum written out: its terms α_ij x^(j), one row per key j, and their column sums
    terms = ad.mul(ad.unsqueeze(out["alpha"], dim=-1), ad.unsqueeze(X, dim=0))  # (T, T, d): [i, j] = α_ij x_j
    out["focus_terms"] = _named(ad.squeeze(ad.slice_op(terms, dim=0, start=focus, end=focus + 1), dim=0), "α_ij x_j")
    out["focus_z"] = _named(ad.sum_op(out["focus_terms"], dim=0, keepdim=True), f"z of token {focus}")  # (1, d)
    # 4. trainable projections and scaled scores
    scale = math.sqrt(d_k)
    out["q"], out["k"], out["v"] = (_named(ad.matmul(X, W[n]), n[-1].lower()) for n in ("W_q", "W_k", "W_v"))
    out["scores"] = _named(ad.div_by_const(ad.matmul(out["q"], ad.transpose(out["k"])), scale), "q kᵀ / √d_k")
    out["weights"] = _named(ad.softmax(out["scores"], dim=-1), "α")
    out["context"] = _named(ad.matmul(out["weights"], out["v"]), "z")
    out["unscaled_weights"] = _named(ad.softmax(ad.matmul(out["q"], ad.transpose(out["k"])), dim=-1), "α unscaled")
    # 5. the causal mask: -inf above the diagonal before softmax, so those weights are exactly 0
    out["masked"] = _named(ad.masked_fill(out["scores"], mask, float("-inf")), "masked scores")
    out["causal_weights"] = _named(ad.softmax(out["masked"], dim=-1), "α causal")
    out["causal_context"] = _named(ad.matmul(out["causal_weights"], out["v"]), "z causal")
    # the other way round: softmax first, zero the future, then a second normalization (the same weights)
    out["zeroed"] = _named(ad.masked_fill(out["weights"], mask, 0.0), "softmax, future zeroed")
    out["renormalized"] = _named(ad.div(out["zeroed"], ad.sum_op(out["zeroed"], dim=-1, keepdim=True)), "renormalized")
    # 6. several heads, each with its own projections, concatenated and projected by W_o
    contexts = []
    for h in range(1, heads + 1):
        q, k, v = (ad.matmul(X, W[f"{n}{h}"]) for n in ("W_q", "W_k", "W_v"))
        scores = ad.masked_fill(ad.div_by_const(ad.matmul(q, ad.transpose(k)), scale), mask, float("-inf"))
        out[f"head{h}_weights"] = _named(ad.softmax(scores, dim=-1), f"α head {h}")
        contexts.append(_named(ad.matmul(out[f"head{h}_weights"], v), f"z head {h}"))
    out["concat"] = _named(ad.concat(contexts, dim=-1), "concat")  # (T, heads * d_k)
    out["mha"] = _named(ad.matmul(out["concat"], W["W_o"]), "out")  # (T, d)

    t = x.shape[0]
    feed = {X: x, mask: torch.ones(t, t, dtype=torch.bool).triu(1)}
    feed.update({W[name]: value for name, value in weights.items()})
    nodes = ad.topological_sort(list(out.values()))
    values = dict(zip(nodes, ad.Evaluator(nodes).run(feed)))
    shapes = {node: tuple(value.shape) for node, value in values.items()}
    return Graphs({"x": X, "mask": mask, **W}, out, values, shapes, feed)


MAIN_OUTPUT = {1: "omega", 2: "alpha", 3: "z", 4: "context", 5: "causal_context", 6: "mha"}  # per step


def backward_passes(g: Graphs, seed: int) -> dict[int, Backward]:
    """Each step's backward graph (by step number): the gradients of L = sum(out ⊙ r) for every input its
    output reads (r seeded random: softmax rows sum to 1, so a plain sum would have zero gradients)."""
    generator = torch.Generator().manual_seed(seed + 2)
    feed, parts = dict(g.feed), []
    for number, name in MAIN_OUTPUT.items():
        out = g.outputs[name]
        r = ad.Variable("r")
        feed[r] = torch.randn(g.shapes[out], generator=generator, dtype=torch.float64)
        loss = _named(ad.sum_op(ad.mul(out, r)), "L")
        inputs = [n for n in ad.topological_sort(out) if not n.inputs and n is not g.inputs["mask"]]
        parts.append((number, r, loss, inputs, ad.gradients(loss, inputs)))
    nodes = ad.topological_sort([node for _, _, loss, _, grads in parts for node in (loss, *grads)])
    values = dict(zip(nodes, ad.Evaluator(nodes).run(feed)))
    shapes = {node: tuple(value.shape) for node, value in values.items()}
    passes = {}
    for number, r, loss, inputs, grads in parts:
        notes = {loss: "L = sum(out ⊙ r)", **{grad: f"∂L/∂{n.name}" for n, grad in zip(inputs, grads)}}
        sections = [Section(f"forward (step {number}), to L", [loss]), Section("backward (gradients)", grads)]
        passes[number] = Backward(
            to_dot(sections, shapes, values, notes),
            {n.name: values[grad] for n, grad in zip(inputs, grads)},
            feed[r],
        )
    return passes
