"""The Graph page's inputs in Streamlit's session state, kept across page switches.

Streamlit forgets a widget's value when its page is not shown, so each input also lives under a
plain key that the page copies back before drawing the widget; examples are requested the same way.
"""

import streamlit as st

from playground.explore import EXAMPLES

EXPRESSION, DECLARATIONS = "graph_expression", "graph_declarations"
DEFAULT_EXAMPLE = "scalar"


def _saved(key: str) -> str:
    return f"saved_{key}"


def restore_inputs() -> None:
    """Before the widgets are drawn: put back the saved inputs (the default example at first)."""
    expression, declarations = EXAMPLES[DEFAULT_EXAMPLE]
    st.session_state.setdefault(_saved(EXPRESSION), expression)
    st.session_state.setdefault(_saved(DECLARATIONS), declarations)
    for key in (EXPRESSION, DECLARATIONS):
        st.session_state[key] = st.session_state[_saved(key)]


def save_input(key: str) -> None:
    """on_change callback of an input widget: remember what was typed."""
    st.session_state[_saved(key)] = st.session_state[key]


def request_example(label: str) -> None:
    """Fill the Graph page's inputs with an example (a button callback, or before switching pages)."""
    expression, declarations = EXAMPLES[label]
    st.session_state[_saved(EXPRESSION)] = expression
    st.session_state[_saved(DECLARATIONS)] = declarations
