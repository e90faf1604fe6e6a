"""The Home page: what the playground is, and a card per page (home/logic.py's CARDS) with a one-click
example that opens the page ready to show it."""

import streamlit as st

from playground.home.logic import CARDS, apply

st.title("Autodiff Playground")
st.markdown(
    "See, touch and measure how a deep-learning framework works inside: a small static-graph autodiff "
    "engine (`autodiff/`), a transformer language model built only on it (`lm/`), and this app."
)
for row in range(0, len(CARDS), 3):
    for column, card in zip(st.columns(3), CARDS[row : row + 3]):
        with column:
            st.subheader(f"{card.icon} {card.title}")
            st.markdown(card.text)
            if st.button(card.button, key=card.key, wrap=True):  # whole on two lines in a narrow window
                apply(card, st.session_state)
                st.switch_page(card.page)
            st.caption(card.caption)
