"""Tests of the shared SVG charts (playground/common/svg.py): text is escaped onto one line, the colour scales
match Viridis and Blues, axis labels are thinned so they never overlap, and the heatmap and bars are
well-formed SVG with one hover text per cell or bar."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import plotly.colors
import pytest

from playground.common import svg

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = ["a\n\nb", "<script>alert(1)</script>", '" onmouseover="x', "$x$", "*b*", "&amp;", "tab\there\r\n", "_u_"]


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[k : k + 2], 16) for k in (1, 3, 5))


def cells(root: ET.Element) -> list[ET.Element]:
    """The elements with a hover text: heatmap cells or bars."""
    return [e for e in root.iter(f"{NS}rect") if e.find(f"{NS}title") is not None]


def labels(root: ET.Element, rotated: bool) -> list[ET.Element]:
    """Axis labels: rotated (x) or at the left (y, anchored at their end)."""
    texts = [e for e in root.iter(f"{NS}text") if e.get("class") != "mark"]
    if rotated:
        return [e for e in texts if "rotate(-60" in (e.get("transform") or "")]
    return [e for e in texts if e.get("text-anchor") == "end" and e.get("transform") is None]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_text_escapes_markup_and_stays_on_one_line(hostile: str) -> None:
    out = svg.text(hostile)
    assert not set(out) & set("\n\r\t<>\"'$*_")  # no tag, no attribute end, no line, no Markdown mark
    # As content and as an attribute value, the parsed text is the original.
    element = ET.fromstring(f'<t a="{out}">{out}</t>')
    assert element.get("a") == hostile and element.text == hostile
    assert svg.text("a\n\nb") == "a&#10;&#10;b"


def test_text_shows_controls_that_xml_forbids_as_pictures() -> None:
    out = svg.text("nul\x00 esc\x1b del\x7f c1\x85 sep\u2028")
    assert ET.fromstring(f"<t>{out}</t>").text == "nul␀ esc␛ del␡ c1\ufffd sep\u2028"  # well-formed XML
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize(("scale", "name"), [(svg.viridis, "Viridis"), (svg.blues, "Blues")])
def test_colour_scales_follow_plotlys(scale, name: str) -> None:
    stops = [plotly.colors.hex_to_rgb(c) if c.startswith("#") else plotly.colors.unlabel_rgb(c)
             for c in getattr(plotly.colors.sequential, name)]  # fmt: skip
    for v in [i / 40 for i in range(41)]:
        expected = plotly.colors.unlabel_rgb(plotly.colors.sample_colorscale(
            plotly.colors.make_colorscale([plotly.colors.label_rgb(s) for s in stops]), v)[0])  # fmt: skip
        assert all(abs(a - b) <= 1 for a, b in zip(rgb(scale(v)), expected)), v
    assert scale(-1) == scale(0) and scale(2) == scale(1)  # clamped


def test_colour_scales_at_known_colours() -> None:
    assert svg.viridis(0) == "#440154" and svg.viridis(1) == "#fde725"
    assert all(abs(a - b) <= 2 for a, b in zip(rgb(svg.viridis(0.5)), rgb("#21918c")))  # matplotlib's viridis(0.5)
    assert svg.blues(0) == "#f7fbff" and svg.blues(0.5) == "#6baed6" and svg.blues(1) == "#08306b"


@pytest.mark.parametrize("spacing", [0.5, 2.7, 5.9, 6.0, 10.4, 11.99, 12.0, 12.1, 30.0])
def test_label_stride_is_the_smallest_that_keeps_labels_apart(spacing: float) -> None:
    n = svg.label_stride(spacing, 12)
    assert n * spacing >= 12 - 1e-9
    assert n == 1 or (n - 1) * spacing < 12


def small_heatmap(**options) -> ET.Element:
    z = [[0.0, 0.5, math.nan, 1.0], [0.25, None, 0.75, 0.1], [0.3, 0.3, 0.3, 0.3]]
    out = svg.heatmap(
        z, ["a", "b", "c", "d"], ["r0", "r1", "r2"], title="A title", colors=svg.blues,
        tooltip=lambda i, j, v: f"{i},{j}={v:.2f}", cell_width=20, cell_height=15, **options,
    )  # fmt: skip
    assert "\n" not in out
    return ET.fromstring(out)


def test_heatmap_draws_one_cell_per_finite_value_with_its_hover_text() -> None:
    root = small_heatmap(marks={0: 3, 2: 1})
    assert root.tag == f"{NS}svg" and root.get("class") == "heatmap" and root.get("role") == "img"
    assert root.find(f"{NS}title").text == "A title"
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    drawn = {c.find(f"{NS}title").text: c for c in cells(root)}
    assert len(drawn) == 10 and "0,2=nan" not in drawn and not any(k.startswith("1,1") for k in drawn)
    cell = drawn["1,2=0.75"]
    assert (float(cell.get("x")), float(cell.get("y")), cell.get("fill")) == (40, 15, svg.blues(0.75))
    marks = [(float(m.get("x")), float(m.get("y"))) for m in root.iter(f"{NS}text") if m.get("class") == "mark"]
    assert marks == [(70, 7.5), (30, 37.5)]  # the centres of cells (0, 3) and (2, 1)
    assert root.find(f".//{NS}g[@class='color-bar']") is not None
    assert small_heatmap(color_bar=False).find(f".//{NS}g[@class='color-bar']") is None


def test_heatmap_puts_x_labels_on_top_or_below() -> None:
    for on_top in (True, False):
        root = small_heatmap(x_labels_on_top=on_top)
        xs = labels(root, rotated=True)
        assert [e.text for e in xs] == ["a", "b", "c", "d"]
        assert all((float(e.get("y")) < 0) == on_top for e in xs)  # the cells start at y = 0
        assert [e.text for e in labels(root, rotated=False)] == ["r0", "r1", "r2"]


@pytest.mark.parametrize(("cell_width", "cell_height"), [(3, 2), (6, 5.9), (13, 11), (14, 12), (30, 30)])
def test_heatmap_labels_never_overlap(cell_width: float, cell_height: float) -> None:
    n = 60
    out = svg.heatmap(
        [[0.5] * n] * n, [f"x{j}" for j in range(n)], [f"y{i}" for i in range(n)], title="t", colors=svg.viridis,
        tooltip=lambda i, j, v: "", cell_width=cell_width, cell_height=cell_height,
    )  # fmt: skip
    root = ET.fromstring(out)
    ys = [float(e.get("y")) for e in labels(root, rotated=False)]
    xs = [float(e.get("x")) for e in labels(root, rotated=True)]
    # the first row and column are labelled (coordinates are written to 0.1 px)
    assert ys[0] == pytest.approx(cell_height / 2, abs=0.05) and xs[0] == pytest.approx(cell_width / 2, abs=0.05)
    assert all(b - a >= svg.FONT_SIZE - 0.1 for a, b in zip(ys, ys[1:]))
    # rotated by 60 degrees, labels dx apart horizontally are dx * sin(60) apart across their text
    assert all((b - a) * math.sin(math.radians(60)) >= svg.FONT_SIZE - 0.1 for a, b in zip(xs, xs[1:]))
    assert len(ys) == math.ceil(n / max(1, math.ceil(svg.FONT_SIZE / cell_height)))  # no more thinned than needed


def test_heatmap_cuts_long_labels_and_grows_with_them() -> None:
    def drawn(label: str) -> ET.Element:
        return ET.fromstring(svg.heatmap(
            [[0.5]], [label], [label], title="t", colors=svg.blues, tooltip=lambda i, j, v: label,
            cell_width=20, cell_height=20,
        ))  # fmt: skip

    short, long = drawn("ab"), drawn("a-very-long-token-label")
    assert labels(long, rotated=False)[0].text == "a-very-long-t…" and len("a-very-long-t…") == svg.MAX_LABEL_CHARS
    assert cells(long)[0].find(f"{NS}title").text == "a-very-long-token-label"  # the whole label on hover
    assert int(long.get("width")) > int(short.get("width")) + 60 and int(long.get("height")) > int(short.get("height"))


def test_hostile_labels_are_escaped_everywhere() -> None:
    out = svg.heatmap(
        [[0.5] * len(HOSTILE)],
        HOSTILE,
        ["<y>"],
        title="<b>title</b>\n",
        colors=svg.blues,
        tooltip=lambda i, j, v: HOSTILE[j],
        cell_width=20,
        cell_height=20,
    ) + svg.bars(HOSTILE, [0.5] * len(HOSTILE), title="\n\n", colors=["#000000"] * len(HOSTILE), value_text=str)
    assert "\n" not in out and "\r" not in out and len(out.splitlines()) == 1
    heat, bar = (ET.fromstring(part + "</svg>") for part in out.split("</svg>")[:2])
    for root in (heat, bar):
        assert {e.tag for e in root.iter()} <= {f"{NS}{t}" for t in ("svg", "title", "g", "rect", "text", "path")}
        assert not any(name.startswith("on") for e in root.iter() for name in e.attrib)
    assert [c.find(f"{NS}title").text for c in cells(heat)] == HOSTILE
    assert [c.find(f"{NS}title").text for c in cells(bar)] == [f"{h}: 0.5" for h in HOSTILE]


def test_bars_are_in_order_with_lengths_over_zero_to_one() -> None:
    root = ET.fromstring(svg.bars(["first", "second", "third"], [0.5, 1.0, 0.0], title="Bars",
                                  colors=["#111111", "#222222", "#333333"], value_text="{:.1%}".format))  # fmt: skip
    assert root.get("class") == "bars" and root.find(f"{NS}title").text == "Bars"
    bars = cells(root)
    assert [b.find(f"{NS}title").text for b in bars] == ["first: 50.0%", "second: 100.0%", "third: 0.0%"]
    assert [float(b.get("y")) for b in bars] == sorted(float(b.get("y")) for b in bars)  # the first on top
    assert [float(b.get("width")) for b in bars] == [svg.BAR_LENGTH / 2, svg.BAR_LENGTH, 0]
    assert [b.get("fill") for b in bars] == ["#111111", "#222222", "#333333"]
    texts = [e.text for e in root.iter(f"{NS}text")]
    assert {"first", "second", "third", "50.0%", "100.0%", "0.0%"} <= set(texts)
