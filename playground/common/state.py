"""Per-browser-session state, without Streamlit: every function takes the session's state mapping (the
views pass `st.session_state`; tests a dict), so two users never share a model or an input.

Streamlit forgets a widget's value when its page is not shown, so each persistent widget's value is also
saved under a plain key and copied back before the widget is drawn (`common/view.py` wires this up).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

T = TypeVar("T")


def saved(key: str) -> str:
    """Where a persistent widget's value is kept while its page is not shown."""
    return f"saved_{key}"


def restore(state: MutableMapping, key: str, default: Any) -> str:
    """Before drawing the widget with this key: put back its saved value (the default at first). Returns the key."""
    state.setdefault(saved(key), default)
    state[key] = state[saved(key)]
    return key


def remember(state: MutableMapping, key: str) -> None:
    """After the widget changed: save what it holds."""
    state[saved(key)] = state[key]


def preset(state: MutableMapping, key: str, value: Any) -> None:
    """Set a persistent widget's value before its page is shown (a one-click example)."""
    state[saved(key)] = value


def kept(state: MutableMapping, key: str, make: Callable[[], T]) -> T:
    """The object this browser session keeps under `key` (made on first use: a model, a training session)."""
    if key not in state:
        state[key] = make()
    return state[key]
