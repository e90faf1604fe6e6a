"""User text shown literally: Streamlit renders every message as Markdown, so a file name such as
`**BOLD** [link](https://evil.example)` would become bold text and a clickable link, and an expression's
`__import__` a bold `import`. Every message that can hold what a user typed or uploaded (errors naming a
file, a word, an expression) goes through `literal`.
"""

import re


def literal(text: object) -> str:
    """`text` with every ASCII punctuation mark backslash-escaped (CommonMark lets any of them be), so
    it renders exactly as written: `:x:` and `$...$` stay as typed."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", str(text))


def shown(markdown: str) -> str:
    """What a reader sees of `literal`'s output: the text with its escapes undone (for tests and checks)."""
    return re.sub(r"\\(.)", r"\1", markdown)
