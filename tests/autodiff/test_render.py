"""The DOT builder and the text listing: nodes, edges and labels for `x1 * x2 + x1`, the backward graph
of a small expression (styled apart, reading forward values through dashed ghost nodes), value summaries,
and DOT that the `dot` program accepts when it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch

import autodiff as ad
from autodiff.render import Section, layout, listing, summarize, to_dot


def small_graph():
    x1, x2 = ad.Variable("x1"), ad.Variable("x2")
    y = x1 * x2 + x1
    return x1, x2, y


def labels(dot: str) -> dict[str, str]:
    """DOT node id -> label text (with real newlines)."""
    return {
        m[0]: m[1].replace("\\n", "\n")
        for m in re.findall(r"^\s+(n[0-9a-f]{6}_\d+) \[label=\"((?:[^\"\\]|\\.)*)\"", dot, re.M)
    }


def edges(dot: str) -> list[tuple[str, str]]:
    """(from, to) for every edge."""
    return re.findall(r"^\s+(n[0-9a-f]{6}_\d+(?:_in\d+)?) -> (n[0-9a-f]{6}_\d+);$", dot, re.M)


def test_forward_dot_of_x1_times_x2_plus_x1():
    x1, x2, y = small_graph()
    dot = to_dot([Section("forward", [y])], shapes={x1: (), x2: (), y: ()})
    found = labels(dot)
    assert sorted(found.values()) == sorted(
        ["x1\nf64[]", "x2\nf64[]", "t0 = mul\n(x1*x2)\n?", "t1 = add\n((x1*x2)+x1)\nf64[]"]
    )
    by_label = {text.split("\n")[0]: node_id for node_id, text in found.items()}
    expected = {("x1", "t0 = mul"), ("x2", "t0 = mul"), ("t0 = mul", "t1 = add"), ("x1", "t1 = add")}
    assert set(edges(dot)) == {(by_label[a], by_label[b]) for a, b in expected}
    assert dot.startswith("digraph G {") and dot.rstrip().endswith("}")
    assert 'label="forward"' in dot and "shape=ellipse" in dot  # variables are ellipses


def test_backward_graph_is_its_own_cluster_and_reads_forward_values():
    x1, x2, y = small_graph()
    g1, g2 = ad.gradients(y, [x1, x2])
    sections = [Section("forward", [y]), Section("backward", [g1, g2])]
    dot = to_dot(sections, notes={g1: "∂out/∂x1", g2: "∂out/∂x2"})
    lay = layout(sections)
    assert [len(n) for n in lay.nodes] == [4, 8]  # the backward pass adds 8 nodes
    assert "cluster_1" in dot and 'label="backward"' in dot and "#fde7d9" in dot  # styled apart
    found = labels(dot)
    grad_labels = [text for text in found.values() if "∂out/∂x1" in text]
    assert len(grad_labels) == 1 and "∂ x1 (sum of parts)" in grad_labels[0]
    assert any("∂ x2 via t0 mul" in text for text in found.values())
    # Backward nodes read forward values (x1, x2, t0, t1) through dashed ghosts in their own cluster:
    # no edge crosses between clusters (those make Graphviz's layout very slow).
    ghosts = re.findall(r"^\s+(n[0-9a-f]{6}_\d+_in1) \[label=\"([^\"]*)\".*dashed", dot, re.M)
    assert sorted(label for _, label in ghosts) == sorted(f"{n} (from forward)" for n in ["x1", "x2", "t0", "t1"])
    cluster_of = {}
    for index, body in enumerate(re.findall(r"subgraph cluster_\d+ \{(.*?)\n  \}", dot, re.S)):
        cluster_of.update(
            {node_id: index for node_id in re.findall(r"^\s+(n[0-9a-f]{6}_\d+(?:_in\d+)?) \[", body, re.M)}
        )
    assert all(cluster_of[a] == cluster_of[b] for a, b in edges(dot))


def test_values_and_shapes_in_labels():
    x1, x2, y = small_graph()
    g1, _ = ad.gradients(y, [x1, x2])
    nodes = ad.topological_sort([y, g1])
    feed = {x1: torch.tensor(2.0, dtype=torch.float64), x2: torch.tensor(3.0, dtype=torch.float64)}
    values = dict(zip(nodes, ad.Evaluator(nodes).run(feed)))
    dot = to_dot([Section("forward", [y]), Section("backward", [g1])], {n: () for n in nodes}, values)
    text = "\n".join(labels(dot).values())
    assert "t1 = add\n((x1*x2)+x1)\nf64[] = 8" in text  # 2 * 3 + 2
    assert "f64[] = 4\n∂ x1 (sum of parts)" in text  # x2 + 1


def test_summaries_stay_short():
    assert summarize(torch.tensor(3.14159)) == "3.14"
    assert summarize(torch.tensor([1.0, -2.0])) == "[1, -2]"
    long = summarize(torch.arange(1000.0).reshape(10, 100))
    assert long.startswith("μ 500 σ 289") and "[0, 999]" in long and len(long) < 40


def test_listing_reads_like_jaxpr():
    x, w = ad.Variable("x"), ad.Variable("W")
    y = ad.relu(ad.matmul(x, w))
    gx, gw = ad.gradients(y, [x, w])
    shapes = {x: (2, 3), w: (3, 4)}
    shapes.update({n: (2, 4) for n in ad.topological_sort(y) if n.inputs})
    text = listing([Section("forward", [y]), Section("backward", [gx, gw])], shapes)
    lines = text.splitlines()
    assert lines[:5] == [
        "forward:",
        "  in  x: f64[2,3], W: f64[3,4]",
        "  t0: f64[2,4] = matmul(x, W)",
        "  t1: f64[2,4] = relu(t0)",
        "  out t1",
    ]
    assert "  t2: ? = ones_like(t1)" in lines
    assert any(re.fullmatch(r"  t\d+: \? = greater\(t0, constant=0.0\)", line) for line in lines)
    assert any(line.endswith("# ∂ x via t0 matmul") for line in lines)
    assert lines[-1].startswith("  out t")


def test_generated_ids_never_clash_with_a_variable_named_like_one():
    t0, t1 = ad.Variable("t0"), ad.Variable("t1")
    lay = layout([Section("forward", [t0 * t1 + t0])])
    ids = [lay.ids[n] for n in lay.nodes[0]]
    assert len(set(ids)) == len(ids) == 4


def test_labels_are_escaped():
    a = ad.Variable('a"b\\c')
    dot = to_dot([Section('say "hi"', [a * 2])])
    assert 'label="say \\"hi\\""' in dot and 'a\\"b\\\\c' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
def test_dot_program_accepts_the_output():
    x1, x2, y = small_graph()
    g = ad.gradients(y, [x1, x2])
    dot = to_dot([Section("forward", [y]), Section("backward", g)])
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True).stdout
    assert b"<svg" in svg and b"cluster_1" in svg


def test_numbering_is_per_drawing_not_a_global_counter():
    """Labels carry t0, t1... of this drawing: building other graphs in between changes nothing."""

    def drawing():
        x1, x2, y = small_graph()
        g = ad.gradients(ad.sum_op(ad.softmax(y * x1)), [x1, x2])
        return to_dot([Section("forward", [y]), Section("backward", g)], notes={g[0]: "∂out/∂x1"})

    first = drawing()
    for _ in range(50):  # thousands of numbered nodes elsewhere
        small = ad.Variable("z")
        ad.gradients(ad.sum_op(ad.exp(small) * small + small), [small])
    assert drawing() == first
    assert not re.search(r"[a-z_]+_\d{2,}", "\n".join(labels(first).values()))  # no `add_2020`


def test_a_sum_to_shape_that_changes_nothing_is_not_drawn():
    x1, x2, y = small_graph()
    g1, g2 = ad.gradients(y, [x1, x2])
    nodes = ad.topological_sort([y, g1, g2])
    assert sum(n.op is ad.sum_to_shape for n in nodes) == 4  # the engine's graph has four
    shapes = {n: () for n in nodes}
    sections = [Section("forward", [y]), Section("backward", [g1, g2])]
    dot = to_dot(sections, shapes, notes={g1: "∂out/∂x1", g2: "∂out/∂x2"})
    text = listing(sections, shapes)
    assert "sum_to_shape" not in dot and "sum_to_shape" not in text
    found = "\n".join(labels(dot).values())
    assert "∂out/∂x2" in found and "∂ x2 via t0 mul" in found  # the hidden output's note moved on
    assert text.splitlines()[-1] == "  out t4, t5"

    # Broadcasting: the sum_to_shape that sums b's gradient over rows stays.
    x, b = ad.Variable("x"), ad.Variable("b")
    z = x + b
    gx, gb = ad.gradients(z, [x, b])
    shapes = {x: (2, 3), b: (3,)}
    shapes.update({n: (2, 3) for n in ad.topological_sort([z, gx, gb]) if n.inputs})
    shapes[gb] = (3,)
    text = listing([Section("forward", [z]), Section("backward", [gx, gb])], shapes)
    assert text.count("sum_to_shape") == 1 and "f64[3] = sum_to_shape(" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
def test_every_example_drawing_keeps_its_text_readable():
    """The page scales a drawing to its width (about 1,100 px at a 1,400 px window): the sections are
    stacked, not side by side, so 10 pt labels stay at least 10 px tall for every example."""
    from playground.graph.logic import EXAMPLES, explore

    for label, (expression, declarations) in EXAMPLES.items():
        dot = explore(expression, declarations).dot()
        svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True, timeout=60)
        width_pt = float(re.search(rb'<svg width="([\d.]+)pt"', svg.stdout)[1])
        font_px = 10 * 4 / 3 * min(1.0, 1100 / (width_pt * 4 / 3))
        assert font_px >= 10, f"{label}: {width_pt:.0f} pt wide, labels {font_px:.1f} px"
