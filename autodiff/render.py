"""Graphs as pictures and as text: DOT for Graphviz, and a jaxpr-like listing one line per node.

A drawing is made of sections (forward, backward, second order...): each section holds the nodes its
outputs need that no earlier section holds, drawn in its own styled cluster; a value it reads from an
earlier section (the backward pass reading a forward value) appears in it as a dashed ghost node.
Nodes are numbered t0, t1... per drawing, in the same order in both forms, so picture and text read
side by side; a `sum_to_shape` that changes nothing (its input already has the shape) is not drawn:
its users read its input, and what it was the gradient of is told on that input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from autodiff.graph import Node, Tensor, topological_sort

# (fill, border and title colour) per section; the first section is drawn as the forward one
STYLES = [
    ("#e8f0fe", "#1a73e8"),  # forward: blue
    ("#fde7d9", "#e8710a"),  # backward: orange
    ("#e6f4ea", "#188038"),  # second order: green
    ("#f3e8fd", "#9334e6"),
]
VARIABLE_FILL = "#fff7cc"
MAX_NAME = 28
MAX_STACKING_EDGES = 40


@dataclass
class Section:
    """A part of a drawing: its title and the nodes it shows (with everything they need)."""

    title: str
    outputs: Sequence[Node]


@dataclass
class Layout:
    """Sections resolved to node lists, with one id per node (`x` for a variable, `t3` otherwise).
    `alias` maps each hidden no-op node to the node whose value it passes on."""

    sections: list[Section]
    nodes: list[list[Node]] = field(default_factory=list)
    ids: dict[Node, str] = field(default_factory=dict)
    section_of: dict[Node, int] = field(default_factory=dict)
    alias: dict[Node, Node] = field(default_factory=dict)
    hidden: dict[Node, list[Node]] = field(default_factory=dict)  # the inverse of alias

    def shown(self, node: Node) -> Node:
        """The node drawn for `node` (itself, or what a hidden no-op passes on)."""
        return self.alias.get(node, node)

    def hidden_behind(self, node: Node) -> list[Node]:
        """The hidden no-op nodes drawn as `node`."""
        return self.hidden.get(node, [])


def _is_noop(node: Node, shapes: dict[Node, tuple[int, ...]]) -> bool:
    # sum_to_shape(a, like) with a already of like's shape returns a itself (the usual case: no broadcast)
    if node.op.name != "sum_to_shape" or node not in shapes:
        return False
    source = node.inputs[0]
    return source in shapes and shapes[source] == shapes[node]


def layout(sections: Sequence[Section], shapes: dict[Node, tuple[int, ...]] | None = None) -> Layout:
    """Assign each node to the first section that needs it and number nodes in topological order;
    with shapes, hide the sum_to_shape nodes that change nothing."""
    shapes = shapes or {}
    result = Layout(list(sections))
    names = {n.name for s in sections for n in topological_sort(list(s.outputs)) if not n.inputs}
    counter = 0
    for index, section in enumerate(sections):
        mine = []
        for node in topological_sort(list(section.outputs)):
            if node in result.section_of or node in result.alias:
                continue
            if _is_noop(node, shapes):
                result.alias[node] = shown = result.shown(node.inputs[0])
                result.hidden.setdefault(shown, []).append(node)
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


def gradient_note(node: Node, lay: Layout) -> str:
    """`∂ x1 (via t3 mul)` for a node that `gradients()` marked as (part of) an input's gradient,
    including what the hidden no-op nodes passing this node on were marked as."""
    notes = []
    marked = [node, *lay.hidden_behind(node)]
    for each in marked:
        for wrt, via in each.gradient_of:
            if via is not None:
                via = lay.shown(via)
                where = f" via {lay.ids.get(via, via.name)} {via.op.name}"
            else:
                where = " (sum of parts)"
            wrt = lay.shown(wrt)
            notes.append(f"∂ {lay.ids.get(wrt, wrt.name)}{where}")
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
    lay = layout(sections, shapes)
    shown_notes: dict[Node, str] = {}
    for node, note in notes.items():  # a hidden node's note goes to the node drawn for it
        shown = lay.shown(node)
        shown_notes[shown] = f"{shown_notes[shown]}; {note}" if shown in shown_notes else note
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
    edges: dict[str, None] = {}  # ordered set: a hidden no-op can make the same edge twice
    previous_last: str | None = None
    for index, (section, nodes) in enumerate(zip(lay.sections, lay.nodes)):
        fill, border = STYLES[min(index, len(STYLES) - 1)]
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(
            f'    label={_quote(section.title)}; style="rounded,dashed"; color="{border}"; fontcolor="{border}";'
        )
        ghosts: dict[Node, str] = {}
        sources: list[str] = []  # nodes of this section with no edge into them
        for node in nodes:
            label = _label(node, lay, shapes.get(node), values.get(node), shown_notes.get(node))
            if not node.inputs:
                attrs = f'shape=ellipse, fillcolor="{VARIABLE_FILL}"'
                sources.append(dot_id[node])
            else:
                attrs = f'fillcolor="{fill}", color="{border}"'
            if node in shown_notes:
                attrs += ", penwidth=2"
            lines.append(f"    {dot_id[node]} [label={_quote(label)}, {attrs}];")
            for inp in map(lay.shown, node.inputs):
                source = dot_id[inp]
                if lay.section_of[inp] < index:  # a value from an earlier section: draw its ghost here
                    if inp not in ghosts:
                        ghosts[inp] = f"{dot_id[inp]}_in{index}"
                        sources.append(ghosts[inp])
                        home = lay.sections[lay.section_of[inp]].title.split(" ")[0]
                        shape = "ellipse" if not inp.inputs else "box"
                        lines.append(
                            f"    {ghosts[inp]} [label={_quote(f'{lay.ids[inp]} (from {home})')}, shape={shape}, "
                            'style="rounded,dashed", color="#9aa0a6", fontcolor="#5f6368", fontsize=9];'
                        )
                    source = ghosts[inp]
                edges[f"  {source} -> {dot_id[node]};"] = None
        lines.append("  }")
        # Stack the sections instead of setting them side by side (a narrower drawing keeps its text
        # readable when the page scales it to its width): invisible edges from the previous section's
        # last node to this section's sources, few enough to keep the layout quick.
        if previous_last is not None:
            for target in sources[:MAX_STACKING_EDGES]:
                edges[f"  {previous_last} -> {target} [style=invis];"] = None
        if nodes:
            previous_last = dot_id[nodes[-1]]
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(node: Node, lay: Layout, shape, value, note: str | None) -> str:
    # A numbered name (`add_2020`) says nothing the per-drawing id does not: only real names are shown.
    name = [] if node.auto_named else [_short_name(node.name)]
    lines = [f"{lay.ids[node]} = {node.op.name}", *name] if node.inputs else name
    lines.append(shape_text(shape) + (f" = {summarize(value)}" if value is not None else ""))
    grad = gradient_note(node, lay)
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
    lay = layout(sections, shapes)
    out = []
    for section, nodes in zip(lay.sections, lay.nodes):
        out.append(f"{section.title}:")
        inputs = [n for n in nodes if not n.inputs]
        if inputs:
            out.append("  in  " + ", ".join(f"{lay.ids[n]}: {shape_text(shapes.get(n))}" for n in inputs))
        for node in nodes:
            if not node.inputs:
                continue
            args = [lay.ids[lay.shown(i)] for i in node.inputs]
            args += [f"{k}={_attr_text(v)}" for k, v in node.attrs.items()]
            line = f"  {lay.ids[node]}: {shape_text(shapes.get(node))} = {node.op.name}({', '.join(args)})"
            grad = gradient_note(node, lay)
            out.append(f"{line:<48}  # {grad}" if grad else line)
        out.append("  out " + ", ".join(lay.ids[lay.shown(n)] for n in section.outputs))
    return "\n".join(out) + "\n"
