"""User text shown literally: Streamlit renders every message as Markdown, so a file name such as
`**BOLD** [link](https://evil.example)` would become bold text and a clickable link. Every message that
can hold what a user typed or uploaded (errors naming a file, a word, an expression) goes through `literal`.
"""

import re

_MARKDOWN_SPECIALS = "\\`*_{}[]()#+-.!|<>:~$="


def literal(text: str) -> str:
    """`text` with Markdown's special characters backslash-escaped, so it renders exactly as written."""
    return "".join("\\" + c if c in _MARKDOWN_SPECIALS else c for c in str(text))


def shown(markdown: str) -> str:
    """What a reader sees of `literal`'s output: the text with its escapes undone (for tests and checks)."""
    return re.sub(r"\\(.)", r"\1", markdown)
