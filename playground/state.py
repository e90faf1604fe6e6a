"""Per-browser-session state, all in `st.session_state` (never module globals, so two users never
share a model or an input): widget values kept across page switches, the Graph page's inputs and
examples, and the Train page's TrainingSession (whose model the Generate page can use).

Streamlit forgets a widget's value when its page is not shown, so each persistent widget's value is
also saved under a plain key and copied back before the widget is drawn.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from playground.explore import EXAMPLES
from playground.textrun_session import LMSession
from playground.training import TrainingSession

TRAINING = "train_session"
LM_TRAINING = "train_lm_session"  # the Train page's language-model mode and the session's runs
DRAWN_RUNNING = "train_drawn_running"  # whether the Train page's controls were last drawn for a running run
TRAIN_PAGE = "train"  # the Train page's url path: training runs only while it is shown
EXPRESSION, DECLARATIONS = "graph_expression", "graph_declarations"
DEFAULT_EXAMPLE = "scalar"
GEN_MODEL, GEN_PROMPT = "gen_model", "gen_prompt"  # the Generate page's model choice and prompt widgets


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


def preset(key: str, value: Any) -> None:
    """Set a persistent widget's value before its page is shown (a one-click example)."""
    st.session_state[_saved(key)] = value


def persistent(key: str, default: Any) -> dict[str, Any]:
    """Keyword arguments for a widget whose value survives page switches: `st.slider(..., **persistent(k, 3))`."""
    return {"key": restore(key, default), "on_change": remember, "args": (key,)}


def training_session() -> TrainingSession:
    """This browser session's training (created on first use)."""
    if TRAINING not in st.session_state:
        st.session_state[TRAINING] = TrainingSession()
    return st.session_state[TRAINING]


def lm_session() -> LMSession:
    """This browser session's language-model runs (created on first use)."""
    if LM_TRAINING not in st.session_state:
        st.session_state[LM_TRAINING] = LMSession()
    return st.session_state[LM_TRAINING]


def pause_training_off_page(url_path: str) -> bool:
    """The one rule for leaving the Train page: showing any other page pauses a running run (its ticks
    run only on the Train page; Resume goes on). Called by the router for every page; True if it paused."""
    if url_path == TRAIN_PAGE:
        return False
    paused = False
    for key in (TRAINING, LM_TRAINING):
        training = st.session_state.get(key)
        if training is not None and training.running:
            training.stop()
            paused = True
    return paused


def graph_input(key: str) -> dict[str, Any]:
    """`persistent` for the Graph page's expression or declarations, defaulting to the first example."""
    expression, declarations = EXAMPLES[DEFAULT_EXAMPLE]
    return persistent(key, expression if key == EXPRESSION else declarations)


def request_example(label: str) -> None:
    """Fill the Graph page's inputs with an example (a button callback, or before switching pages)."""
    expression, declarations = EXAMPLES[label]
    preset(EXPRESSION, expression)
    preset(DECLARATIONS, declarations)
