"""The README stays short and true: its architecture map names every module of autodiff/, lm/ and
playground/ (and nothing that is gone), its page list names every page of the app, and every link in it
and in docs/ resolves (files and #anchors). A module added, moved or removed without updating the map
fails here, so the map cannot go stale (issue 18, item 4).

Convention: the map names each module by its path from the repository root (`lm/tokenizers/bpe.py`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path


def _root() -> Path:
    """The repository root: the first folder above this file holding README.md and pyproject.toml
    (so the test keeps working when tests/ is reorganized into subfolders)."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "README.md").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    raise AssertionError("no README.md + pyproject.toml above tests/test_readme.py")


ROOT = _root()
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PACKAGES = ("autodiff", "lm", "playground")
NOT_MAPPED = {"__init__.py", "__main__.py"}  # a package's API or entry point: named where useful, not required
MAX_LINES = 200
DOC_PAGES = ("engine.md", "lm.md", "tokenizers.md", "distributed.md", "app.md", "benchmarks.md")

PY_PATH = re.compile(r"`([\w./-]+\.py)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a bash block is not a heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def section(text: str, title: str) -> str:
    """The body of the `## title` section: from its heading to the next level-2 heading."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == f"## {title}"]
    assert len(starts) == 1, f"README.md needs exactly one '## {title}' section, found {len(starts)}"
    body = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


def level2_headings(text: str) -> list[str]:
    return [line[3:].strip() for line in prose_lines(text) if line.startswith("## ")]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (word characters, '-' and spaces
    kept), spaces turned into hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def modules() -> set[str]:
    """Every module the map must name: *.py under the three packages, recursively, by its root path."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if path.name in NOT_MAPPED or any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            found.add(rel.as_posix())
    return found


def local_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, file it points to, anchor) for every link of a Markdown file that is not a URL."""
    out = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            out.append((target, dest, anchor))
    return out


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; keep it to {MAX_LINES} and move detail into docs/"


def test_architecture_map_comes_first_after_the_quick_start():
    headings = level2_headings(README.read_text(encoding="utf-8"))
    assert headings[:2] == ["Quick start", "Architecture"], f"README's sections are {headings}"


def test_architecture_map_names_every_module():
    named = set(PY_PATH.findall(section(README.read_text(encoding="utf-8"), "Architecture")))
    missing = sorted(modules() - named)
    assert not missing, (
        "modules missing from the README's architecture map (add a row each, named by their path from "
        "the repository root): " + ", ".join(missing)
    )


def test_architecture_map_names_only_existing_files():
    named = set(PY_PATH.findall(section(README.read_text(encoding="utf-8"), "Architecture")))
    gone = sorted(p for p in named if not (ROOT / p).is_file())
    assert not gone, "the README's architecture map names files that do not exist: " + ", ".join(gone)


def test_every_page_of_the_app_is_listed():
    """Each st.Page(..., title=...) of the app is a bold entry of the README's page list."""
    titles = set()
    for path in (ROOT / "playground").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "Page":
                titles.update(
                    kw.value.value for kw in node.keywords
                    if kw.arg == "title" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
                )  # fmt: skip
    assert titles, "no st.Page(..., title=...) found under playground/: where do the pages live now?"
    pages = section(README.read_text(encoding="utf-8"), "The pages")
    missing = sorted(t for t in titles if f"**{t}**" not in pages)
    assert not missing, "pages missing from the README's page list: " + ", ".join(missing)


def test_docs_pages_exist_and_are_linked_from_the_readme():
    linked = {dest for _, dest, _ in local_links(README) if dest.parent == DOCS.resolve() and dest.suffix == ".md"}
    pages = {p.resolve() for p in DOCS.glob("*.md")}
    assert {p.name for p in pages} >= set(DOC_PAGES), f"docs/ must hold {', '.join(DOC_PAGES)}"
    unlinked = sorted(p.name for p in pages - linked)
    assert not unlinked, "docs pages the README does not link: " + ", ".join(unlinked)


def test_every_link_resolves():
    """Every relative link and image of the README and docs/*.md names a file that exists and, for a
    Markdown file, a heading that exists."""
    broken = []
    for doc in [README, *sorted(DOCS.glob("*.md"))]:
        for target, dest, anchor in local_links(doc):
            where = doc.relative_to(ROOT).as_posix()
            if not dest.exists():
                broken.append(f"{where}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: {target} (no heading with that anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_imports_point_only_down_as_the_map_says():
    """playground -> lm -> autodiff, and only the app imports Streamlit."""
    forbidden = {"autodiff": {"lm", "playground", "streamlit"}, "lm": {"playground", "streamlit"}}
    wrong = []
    for package, banned in forbidden.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = _imports(path) & banned
            if bad:
                wrong.append(f"{path.relative_to(ROOT).as_posix()} imports {', '.join(sorted(bad))}")
    assert not wrong, "imports against the README's arrows:\n" + "\n".join(wrong)


def lm_commands(path: Path) -> list[str]:
    """Every `python -m lm ...` command in a Markdown file's code blocks (continuation lines joined), as the
    arguments after `-m lm`."""
    commands, fenced, pending = [], False, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced, pending = not fenced, ""
            continue
        if not fenced:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if re.search(r"(^|\s)-m lm(\s|$)", line) and not line.startswith("#"):
            commands.append(line.split("-m lm", 1)[1])
    return commands


def test_every_documented_lm_command_parses():
    """The command lines in the README and docs/ are spelled as lm/cli.py and lm/tokenizers/cli.py
    spell them today: each parses (nothing is run)."""
    import shlex

    from lm.cli import build_parser

    bad = []
    for doc in [README, *sorted(DOCS.glob("*.md"))]:
        for args in lm_commands(doc):
            try:
                build_parser().parse_args(shlex.split(args, comments=True))
            except SystemExit:
                bad.append(f"{doc.relative_to(ROOT).as_posix()}: python -m lm{args}")
    assert not bad, "commands that python -m lm refuses (see the error above):\n" + "\n".join(bad)
