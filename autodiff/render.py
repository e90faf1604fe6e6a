"""Graphs as pictures and as text: DOT for Graphviz, and a jaxpr-like listing one line per node.

A drawing is made of sections (forward, backward, second order...): each section holds the nodes its
outputs need that no earlier section holds, drawn in its own styled cluster; a value it reads from an
earlier section (the backward pass reading a forward value) appears in it as a dashed ghost node.
Nodes are numbered t0, t1... in the same order in both forms, so picture and text read side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from autodiff.graph import Node, Tensor, topological_sort

# fill colour and cluster title per section kind; the first section is drawn as the forward one
STYLES = [
    ("#e8f0fe", "#1a73e8"),  # forward: blue
    ("#fde7d9", "#e8710a"),  # backward: orange
    ("#e6f4ea", "#188038"),  # second order: green
    ("#f3e8fd", "#9334e6"),
]
VARIABLE_FILL = "#fff7cc"
MAX_NAME = 28


@dataclass
class Section:
    """A part of a drawing: its title and the nodes it shows (with everything they need)."""

    title: str
    outputs: Sequence[Node]


@dataclass
class Layout:
    """Sections resolved to node lists, with one id per node (`x` for a variable, `t3` otherwise)."""

    sections: list[Section]
    nodes: list[list[Node]] = field(default_factory=list)
    ids: dict[Node, str] = field(default_factory=dict)
    section_of: dict[Node, int] = field(default_factory=dict)


def layout(sections: Sequence[Section]) -> Layout:
    """Assign each node to the first section that needs it and number nodes in topological order."""
    result = Layout(list(sections))
    names = {n.name for s in sections for n in topological_sort(list(s.outputs)) if not n.inputs}
    counter = 0
    for index, section in enumerate(sections):
        mine = []
        for node in topological_sort(list(section.outputs)):
            if node in result.section_of:
                continue
            result.section_of[node] = index
            mine.append(node)
            if node.inputs:
                while f"t{counter}" in names:  # never reuse a variable's name
                    counter += 1
                result.ids[node] = f"t{counter}"
                counter += 1
            else:
                result.ids[node] = node.name
        result.nodes.append(mine)
    return result


def summarize(value: Tensor) -> str:
    """A short text for a tensor: the number, a few entries, or mean/std and range."""
    if value.numel() == 1:
        return _num(value.item())
    flat = value.detach().reshape(-1).double()
    if flat.numel() <= 4:
        return "[" + ", ".join(_num(v) for v in flat.tolist()) + "]"
    mean, std, low, high = (_num(v.item()) for v in (flat.mean(), flat.std(), flat.min(), flat.max()))
    return f"μ {mean} σ {std} ∈ [{low}, {high}]"


def _num(x: float) -> str:
    return f"{x:.3g}"


def shape_text(shape: tuple[int, ...] | None, dtype: str = "f64") -> str:
    """`f64[2,4]` (jaxpr style); `?` when the shape is unknown."""
    return f"{dtype}[{','.join(str(d) for d in shape)}]" if shape is not None else "?"


def gradient_note(node: Node, ids: dict[Node, str]) -> str:
    """`∂ x1 (via t3 mul)` for a node that `gradients()` marked as (part of) an input's gradient."""
    notes = []
    for wrt, via in node.gradient_of:
        where = f" via {ids.get(via, via.name)} {via.op.name}" if via is not None else " (sum of parts)"
        notes.append(f"∂ {ids.get(wrt, wrt.name)}{where}")
    return "; ".join(dict.fromkeys(notes))


def _short_name(name: str) -> str:
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(
    sections: Sequence[Section],
    shapes: dict[Node, tuple[int, ...]] | None = None,
    values: dict[Node, Tensor] | None = None,
    notes: dict[Node, str] | None = None,
) -> str:
    """DOT source: one cluster per section; every node shows id, op, name, shape, and when given a
    value summary, what it is the gradient of, and a note (e.g. `out`, `∂out/∂x`).

    A value that a section reads from an earlier one appears in it as a dashed "ghost" of that node,
    not as an edge between clusters: such edges cross everything and make Graphviz's layout take
    tens of seconds past a few hundred nodes, while ghosts keep it well under a second."""
    shapes, values, notes = shapes or {}, values or {}, notes or {}
    lay = layout(sections)
    # Ids carry a digest of the structure: Graphviz in the browser matches nodes of the previous
    # drawing by id and would morph a box into an ellipse badly; a new structure gets new ids.
    structure = "|".join(f"{lay.ids[n]}:{n.op.name}:{lay.section_of[n]}" for n in lay.section_of)
    digest = hashlib.sha1(structure.encode()).hexdigest()[:6]
    dot_id = {node: f"n{digest}_{i}" for i, node in enumerate(lay.section_of)}
    lines = [
        "digraph G {",
        '  rankdir=TB; nodesep=0.25; ranksep=0.35; fontname="Helvetica"; fontsize=11;',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, margin="0.08,0.04"];',
        '  edge [color="#5f6368", arrowsize=0.6];',
    ]
    edges = []
    for index, (section, nodes) in enumerate(zip(lay.sections, lay.nodes)):
        fill, border = STYLES[min(index, len(STYLES) - 1)]
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(
            f'    label={_quote(section.title)}; style="rounded,dashed"; color="{border}"; fontcolor="{border}";'
        )
        ghosts: dict[Node, str] = {}
        for node in nodes:
            label = _label(node, lay.ids, shapes.get(node), values.get(node), notes.get(node))
            if not node.inputs:
                attrs = f'shape=ellipse, fillcolor="{VARIABLE_FILL}"'
            else:
                attrs = f'fillcolor="{fill}", color="{border}"'
            if node in notes:
                attrs += ", penwidth=2"
            lines.append(f"    {dot_id[node]} [label={_quote(label)}, {attrs}];")
            for inp in node.inputs:
                source = dot_id[inp]
                if lay.section_of[inp] < index:  # a value from an earlier section: draw its ghost here
                    if inp not in ghosts:
                        ghosts[inp] = f"{dot_id[inp]}_in{index}"
                        home = lay.sections[lay.section_of[inp]].title.split(" ")[0]
                        shape = "ellipse" if not inp.inputs else "box"
                        lines.append(
                            f"    {ghosts[inp]} [label={_quote(f'{lay.ids[inp]} (from {home})')}, shape={shape}, "
                            'style="rounded,dashed", color="#9aa0a6", fontcolor="#5f6368", fontsize=9];'
                        )
                    source = ghosts[inp]
                edges.append(f"  {source} -> {dot_id[node]};")
        lines.append("  }")
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(node: Node, ids: dict[Node, str], shape, value, note: str | None) -> str:
    if node.inputs:
        lines = [f"{ids[node]} = {node.op.name}", _short_name(node.name)]
    else:
        lines = [_short_name(node.name)]
    lines.append(shape_text(shape) + (f" = {summarize(value)}" if value is not None else ""))
    grad = gradient_note(node, ids)
    if grad:
        lines.append(grad)
    if note:
        lines.append(note)
    return "\n".join(lines)


def _attr_text(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return repr(value)


def listing(sections: Sequence[Section], shapes: dict[Node, tuple[int, ...]] | None = None) -> str:
    """The program as text, jaxpr-like: `t3: f64[2,4] = matmul(x, W)`, a block per section."""
    shapes = shapes or {}
    lay = layout(sections)
    out = []
    for section, nodes in zip(lay.sections, lay.nodes):
        out.append(f"{section.title}:")
        inputs = [n for n in nodes if not n.inputs]
        if inputs:
            out.append("  in  " + ", ".join(f"{lay.ids[n]}: {shape_text(shapes.get(n))}" for n in inputs))
        for node in nodes:
            if not node.inputs:
                continue
            args = [lay.ids[i] for i in node.inputs] + [f"{k}={_attr_text(v)}" for k, v in node.attrs.items()]
            line = f"  {lay.ids[node]}: {shape_text(shapes.get(node))} = {node.op.name}({', '.join(args)})"
            grad = gradient_note(node, lay.ids)
            out.append(f"{line:<48}  # {grad}" if grad else line)
        out.append("  out " + ", ".join(lay.ids[n] for n in section.outputs))
    return "\n".join(out) + "\n"
