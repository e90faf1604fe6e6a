"""Per-browser-session state of the Train and Generate pages, in `st.session_state` (never module
globals, so two users never share a model): the TrainingSession, and widget values kept across page
switches (Streamlit forgets a widget's value when its page is not shown, so each is saved aside).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from playground.training import TrainingSession

TRAINING = "train_session"


def training_session() -> TrainingSession:
    """This browser session's training (created on first use)."""
    if TRAINING not in st.session_state:
        st.session_state[TRAINING] = TrainingSession()
    return st.session_state[TRAINING]


def _saved(key: str) -> str:
    return f"saved_{key}"


def restore(key: str, default: Any) -> str:
    """Before drawing the widget with this key: put back its saved value (the default at first).
    Returns the key; pass `on_change=remember, args=(key,)` to the widget."""
    st.session_state.setdefault(_saved(key), default)
    st.session_state[key] = st.session_state[_saved(key)]
    return key


def remember(key: str) -> None:
    """on_change callback: save what the widget holds."""
    st.session_state[_saved(key)] = st.session_state[key]


def persistent(key: str, default: Any) -> dict[str, Any]:
    """Keyword arguments for a widget whose value survives page switches: `st.slider(..., **persistent(k, 3))`."""
    return {"key": restore(key, default), "on_change": remember, "args": (key,)}
