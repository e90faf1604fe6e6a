"""The Streamlit side of `common/state.py`, shared by every page's view: widgets whose values survive a
trip to another page, and objects kept for this browser session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from playground.common import state

T = TypeVar("T")


def _remember(key: str) -> None:
    state.remember(st.session_state, key)


def persistent(key: str, default: Any) -> dict[str, Any]:
    """Keyword arguments for a widget whose value survives page switches: `st.slider(..., **persistent(k, 3))`."""
    return {"key": state.restore(st.session_state, key, default), "on_change": _remember, "args": (key,)}


def preset(key: str, value: Any) -> None:
    """Set a persistent widget's value before its page is shown (a one-click example)."""
    state.preset(st.session_state, key, value)


def kept(key: str, make: Callable[[], T]) -> T:
    """The object this browser session keeps under `key`, made on first use."""
    return state.kept(st.session_state, key, make)
