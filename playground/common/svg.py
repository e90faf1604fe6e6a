"""Charts drawn on the server as small SVG documents (plain strings; no st.*, no plotly): a heatmap with
hover text per cell and horizontal bars. A page shows them inline, so the browser needs no charting library
(plotly.js is a 4.7 MB download and parse before a session's first chart). Every string is one line:
Markdown ends an HTML block at a blank line, so a newline inside a label must never reach the output.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence

FONT_SIZE = 12  # px, axis labels
TITLE_SIZE = 14  # px, the title line
CHAR_WIDTH = 0.6  # an average sans-serif character is about this many font sizes wide
MAX_LABEL_CHARS = 14  # longer axis labels are cut with "…" (a cell's hover text keeps the whole label)
GAP = 4  # px between the cells and their labels
PAD = 6  # px around the whole chart
ANGLE = -60  # degrees: x labels rotate this much, as plotly does for a crowded category axis
BAR_HEIGHT = 20  # px, one horizontal bar
BAR_GAP = 4  # px between bars
BAR_LENGTH = 300  # px, a bar of value 1

# Control characters as numeric character references. Tab, line feed and carriage return keep their own code;
# the other C0 controls and DEL are illegal in XML even as references, so they show as their Unicode Control
# Pictures (␀, ␛, ␡); C1 controls would read as Windows-1252 letters in HTML, so they become U+FFFD. The line
# and paragraph separators are line breaks to some readers: referenced too. Markdown's inline marks ($ * _ `
# ~ [ ] \) are referenced as well, so a label reads as itself even where Markdown parses the text around it.
_REFERENCES = {code: f"&#{code};" for code in (9, 10, 13, 0x2028, 0x2029, *map(ord, "$*_`~[]\\"))}
_REFERENCES.update({code: f"&#{0x2400 + code};" for code in range(32) if code not in (9, 10, 13)})
_REFERENCES[0x7F] = "&#9249;"
_REFERENCES.update({code: "&#65533;" for code in range(0x80, 0xA0)})


def text(s: object) -> str:
    """Any text made safe for SVG/HTML content and attribute values, on one line: HTML-escaped (quotes too),
    then every control character and line break as a numeric character reference."""
    return html.escape(str(s), quote=True).translate(_REFERENCES)


def shorten(label: str, max_chars: int = MAX_LABEL_CHARS) -> str:
    """An axis label of at most max_chars characters: a longer one is cut and ends with '…'."""
    return label if len(label) <= max_chars else label[: max_chars - 1] + "…"


def text_width(s: str, size: float = FONT_SIZE) -> float:
    """An estimate of the width of s in px (the server cannot measure text: no fonts, no browser)."""
    return len(s) * CHAR_WIDTH * size


def label_stride(spacing: float, size: float = FONT_SIZE) -> int:
    """Show every n-th label, n the smallest for which labels `spacing` px apart (measured across the text)
    are at least a font size apart, so that shown labels never overlap."""
    return max(1, math.ceil(size / spacing - 1e-9))


def num(x: float) -> str:
    """A coordinate as SVG text: one decimal at most ('12', '12.5')."""
    return f"{round(x, 1):g}"


MIN_MARK = 10.0  # px: the × on a thin row (a long generation's) stays as readable as any label


# ---------------------------------------------------------------- colour scales
VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"]
BLUES = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"]


def interpolate(stops: Sequence[str], v: float) -> str:
    """The colour at v in [0, 1] (clamped) of evenly spaced '#rrggbb' stops, mixed linearly between the two
    nearest."""
    v = min(1.0, max(0.0, float(v)))
    position = v * (len(stops) - 1)
    i = min(int(position), len(stops) - 2)
    t = position - i
    low, high = stops[i], stops[i + 1]
    channels = (round(int(low[k : k + 2], 16) * (1 - t) + int(high[k : k + 2], 16) * t) for k in (1, 3, 5))
    return "#" + "".join(f"{c:02x}" for c in channels)


def viridis(v: float) -> str:
    """Viridis (plotly's stops, matplotlib's colours): dark purple at 0, yellow at 1."""
    return interpolate(VIRIDIS, v)


def blues(v: float) -> str:
    """ColorBrewer Blues (plotly's 'Blues'): near white at 0, dark blue at 1."""
    return interpolate(BLUES, v)


# ---------------------------------------------------------------- a drawing and its bounding box
class Drawing:
    """SVG elements in free coordinates and the box that holds them: the finished chart is shifted so the box
    starts at the padding, and sized to it, so no label is ever clipped whatever its length."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.left = self.top = math.inf
        self.right = self.bottom = -math.inf

    def add(self, element: str, left: float, top: float, right: float, bottom: float) -> None:
        """Add an element that covers the box (left, top)-(right, bottom)."""
        self.parts.append(element)
        self.left, self.top = min(self.left, left), min(self.top, top)
        self.right, self.bottom = max(self.right, right), max(self.bottom, bottom)

    def label(self, s: str, x: float, y: float, size: float, anchor: str = "start", angle: float = 0) -> None:
        """One line of (already shortened) text whose anchor point is (x, y) and vertical middle is y,
        rotated by angle degrees around that point."""
        w = text_width(s, size)
        x0 = {"start": 0, "middle": -w / 2, "end": -w}[anchor]
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        corners = [(cx * cos - cy * sin, cx * sin + cy * cos) for cx in (x0, x0 + w) for cy in (-size / 2, size / 2)]
        rotate = f' transform="rotate({num(angle)} {num(x)} {num(y)})"' if angle else ""
        self.add(
            f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}" text-anchor="{anchor}" '
            f'dominant-baseline="central"{rotate}>{text(s)}</text>',
            x + min(c[0] for c in corners), y + min(c[1] for c in corners),
            x + max(c[0] for c in corners), y + max(c[1] for c in corners),
        )  # fmt: skip

    def svg(self, kind: str, title: str) -> str:
        """The finished chart: the title on a line above everything, left-aligned, then the root element."""
        self.label(title, self.left, self.top - 2 * GAP - TITLE_SIZE / 2, TITLE_SIZE)
        width, height = math.ceil(self.right - self.left + 2 * PAD), math.ceil(self.bottom - self.top + 2 * PAD)
        dx, dy = PAD - self.left, PAD - self.top
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" class="{kind}" role="img" font-family="sans-serif" '
            f'fill="currentColor"><title>{text(title)}</title>'  # text takes the page's colour (light or dark)
            f'<g transform="translate({num(dx)} {num(dy)})">{"".join(self.parts)}</g></svg>'
        )


# ---------------------------------------------------------------- the charts
def heatmap(
    z: Sequence[Sequence[float | None]],
    x_labels: Sequence[str],
    y_labels: Sequence[str],
    *,
    title: str,
    colors: Callable[[float], str],
    tooltip: Callable[[int, int, float], str],
    cell_width: float,
    cell_height: float,
    marks: Mapping[int, int] | None = None,
    x_labels_on_top: bool = False,
    x_title: str = "",
    y_title: str = "",
    color_bar: bool = True,
    font_size: float = FONT_SIZE,
    floor: float | None = None,
) -> str:
    """Rows of cells, z[i][j] coloured by colors(z[i][j]) with tooltip(i, j, z[i][j]) as its hover text; a
    None or NaN cell is not drawn. marks maps a row to the column drawn with a red '×'. x labels are rotated
    (on top or below), y labels at the left, every n-th when cells are smaller than the font; a colour bar
    from 0 to 1 at the right. With a `floor`, the cells under it are one background of colors(0) rather than
    a rectangle each: a probability heatmap is mostly such cells, and each drawn cell costs ~120 bytes (200
    steps of 65 tokens were 1.6 MB, sent again on every rerun)."""
    rows, columns = len(y_labels), len(x_labels)
    grid_w, grid_h = columns * cell_width, rows * cell_height
    d = Drawing()
    d.add("", 0, 0, grid_w, grid_h)
    if floor is not None:
        d.parts.append(
            f'<rect x="0" y="0" width="{num(grid_w)}" height="{num(grid_h)}" fill="{colors(0.0)}" class="floor">'
            f"<title>{text(f'under {floor:g}')}</title></rect>"
        )

    cells = []
    for i, row in enumerate(z):
        for j, v in enumerate(row):
            if v is None or math.isnan(v) or (floor is not None and v < floor):
                continue  # masked or missing: left empty; under the floor: the background
            cells.append(
                f'<rect x="{num(j * cell_width)}" y="{num(i * cell_height)}" width="{num(cell_width)}" '
                f'height="{num(cell_height)}" fill="{colors(v)}"><title>{text(tooltip(i, j, v))}</title></rect>'
            )
    # crispEdges: no hairline seams between cells at fractional coordinates
    d.parts.append(f'<g shape-rendering="crispEdges">{"".join(cells)}</g>')

    # The cell's size, but readable on thin rows (a long generation's): it may then cover its neighbours.
    size = max(MIN_MARK, min(cell_width, cell_height, 16))
    for row, column in sorted((marks or {}).items()):
        cx, cy = (column + 0.5) * cell_width, (row + 0.5) * cell_height
        d.parts.append(
            f'<text x="{num(cx)}" y="{num(cy)}" font-size="{num(size)}" font-weight="bold" fill="#d62728" '
            f'text-anchor="middle" dominant-baseline="central" pointer-events="none" class="mark">×</text>'
        )  # the cell's hover text stays reachable through the mark

    for i in range(0, rows, label_stride(cell_height, font_size)):
        d.label(shorten(y_labels[i]), -GAP, (i + 0.5) * cell_height, font_size, anchor="end")
    # Rotated labels are cell_width * sin(60°) apart across their text.
    x_stride = label_stride(cell_width * math.sin(math.radians(-ANGLE)), font_size)
    y_edge = -GAP if x_labels_on_top else grid_h + GAP
    for j in range(0, columns, x_stride):
        anchor = "start" if x_labels_on_top else "end"  # reading away from the cells, up-right or down-left
        d.label(shorten(x_labels[j]), (j + 0.5) * cell_width, y_edge, font_size, anchor=anchor, angle=ANGLE)

    if x_title:
        y = d.top - GAP - font_size / 2 if x_labels_on_top else d.bottom + GAP + font_size / 2
        d.label(x_title, grid_w / 2, y, font_size, anchor="middle")
    if y_title:
        d.label(y_title, d.left - GAP - font_size / 2, grid_h / 2, font_size, anchor="middle", angle=-90)
    if color_bar:
        draw_color_bar(d, colors, grid_w + 3 * GAP, max(40, min(grid_h, 160)), font_size)
    return d.svg("heatmap", title)


def draw_color_bar(d: Drawing, colors: Callable[[float], str], x: float, height: float, font_size: float) -> None:
    """A 10 px wide bar of the colours from 0 (bottom) to 1 (top), ticks at 0, 0.5 and 1."""
    slices = 32
    step = height / slices
    rects = "".join(
        f'<rect x="{num(x)}" y="{num(height - (k + 1) * step)}" width="10" height="{num(step)}" '
        f'fill="{colors((k + 0.5) / slices)}"/>'
        for k in range(slices)
    )
    d.add(f'<g shape-rendering="crispEdges" class="color-bar">{rects}</g>', x, 0, x + 10, height)
    for value in (0, 0.5, 1):
        y = height * (1 - value)
        d.add(f'<path d="M{num(x + 10)} {num(y)}h3" stroke="currentColor"/>', x + 10, y, x + 13, y)
        d.label(f"{value:g}", x + 10 + GAP + 1, y, font_size)


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    colors: Sequence[str],
    value_text: Callable[[float], str],
) -> str:
    """Horizontal bars over 0..1, the first item on top: its label at the left, value_text(value) at the bar's
    end, hover text 'label: value'; grid lines at quarters, labelled at 0, 0.5 and 1."""
    d = Drawing()
    height = len(labels) * (BAR_HEIGHT + BAR_GAP) - BAR_GAP
    for q in (0, 0.25, 0.5, 0.75, 1):
        x = q * BAR_LENGTH
        d.add(f'<path d="M{num(x)} 0V{num(height)}" stroke="#d0d0d0" stroke-width="1"/>', x, 0, x, height)
        if q in (0, 0.5, 1):
            d.label(value_text(q), x, height + GAP + FONT_SIZE / 2, FONT_SIZE - 1, anchor="middle")
    for i, (label, value, color) in enumerate(zip(labels, values, colors)):
        y = i * (BAR_HEIGHT + BAR_GAP)
        length = min(1.0, max(0.0, value)) * BAR_LENGTH
        d.add(
            f'<rect x="0" y="{num(y)}" width="{num(length)}" height="{BAR_HEIGHT}" fill="{color}">'
            f"<title>{text(label)}: {text(value_text(value))}</title></rect>",
            0, y, length, y + BAR_HEIGHT,
        )  # fmt: skip
        d.label(shorten(label), -GAP, y + BAR_HEIGHT / 2, FONT_SIZE, anchor="end")
        d.label(value_text(value), length + GAP, y + BAR_HEIGHT / 2, FONT_SIZE - 1)
    return d.svg("bars", title)
