"""Graphviz drawings laid out on the server (no st.* calls): `dot -Tsvg` turns a drawing's DOT into SVG,
which the page shows inline. Left to `st.graphviz_chart`, each new browser session first downloads and
starts Graphviz compiled to WebAssembly (a 770 KB chunk) and lays the graph out itself: measured here, the
Graph page's first drawing showed 0.8 s after the page's title. `dot` lays a page's graphs out in tens
of milliseconds, and the same DOT is laid out once for every session (cached).

Without the `dot` program (Graphviz not installed), `drawing_svg` returns None and the page lets the
browser lay the drawing out, as before.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading

DOT = shutil.which("dot")  # the Graphviz program; None: not installed, the browser lays drawings out
LAYOUT_TIMEOUT_S = 10.0  # a page's drawing; past it the browser gets the DOT instead
MAX_LAYOUTS = 2  # `dot` processes at once for page drawings (a class opening the Graph page together)
_layouts = threading.BoundedSemaphore(MAX_LAYOUTS)


class GraphvizError(RuntimeError):
    """`dot` failed or ran too long; the message says why and what to do instead."""


def run_dot(dot: str, timeout_s: float, command: tuple[str, ...] = ("dot", "-Tsvg")) -> bytes:
    """The output of Graphviz's `command` on `dot`, killed after `timeout_s` (a GraphvizError then)."""
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(dot.encode(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise GraphvizError(
            f"Graphviz took longer than {timeout_s:.0f} s and was stopped: download the DOT instead"
        ) from None
    finally:
        if process.poll() is None:  # timed out, or interrupted: never leave it running
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise GraphvizError(f"Graphviz failed: {err.decode(errors='replace').strip()[:200]}")
    return out


@functools.lru_cache(maxsize=256)  # every session opening a page draws the same default graphs
def _laid_out(dot: str) -> str:
    """The SVG markup; a failure raises (an exception is not cached: the next run tries again)."""
    if not _layouts.acquire(timeout=LAYOUT_TIMEOUT_S):
        raise GraphvizError("every Graphviz slot stayed busy")
    try:
        svg = run_dot(dot, LAYOUT_TIMEOUT_S, (DOT, "-Tsvg")).decode()
    finally:
        _layouts.release()
    # The <svg> element alone (no XML prolog or doctype), on one line: the page puts it in a Markdown HTML
    # block, which a blank line would end. Graphviz writes one element per line and escapes every label.
    return " ".join(svg[svg.index("<svg") :].splitlines())


def drawing_svg(dot: str) -> str | None:
    """The drawing as inline SVG markup laid out by `dot`, or None when this server has no `dot`, or it
    failed or was too slow (the caller then hands the DOT to the browser)."""
    if DOT is None:
        return None
    try:
        return _laid_out(dot)
    except (GraphvizError, OSError, ValueError):  # ValueError: no <svg> in the output
        return None
