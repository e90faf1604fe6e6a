"""The Home page: what the playground is, what each page teaches, and a one-click example for each."""

import streamlit as st

from playground.explore import EXAMPLES
from playground.state import request_example

st.title("Autodiff Playground")
st.markdown(
    "See, touch and measure how a deep-learning framework works inside: a small static-graph autodiff "
    "engine (`autodiff/`), a transformer language model built only on it (`lm/`), and this app."
)

graph, train, generate = st.columns(3)
with graph:
    st.subheader(":material/account_tree: Graph")
    st.markdown(
        "Type any expression and see its **forward graph** and the **backward graph** that `gradients()` "
        "builds from it: reverse-mode autodiff is just more graph. Evaluate it, compare every gradient with "
        "`torch.autograd`, and differentiate a gradient again."
    )
    if st.button("Try: one attention head", key="home_graph_example"):
        request_example("attention head")
        st.switch_page("app_pages/graph.py")
    st.caption(f"`{EXAMPLES['attention head'][0]}`")
with train:
    st.subheader(":material/show_chart: Train")
    st.markdown("Train a small transformer on the engine and watch the loss fall live.")
    if st.button("Open Train", key="home_train_example"):
        st.switch_page("app_pages/train.py")
with generate:
    st.subheader(":material/edit_note: Generate")
    st.markdown("Sample text from the model and see what each attention head looks at.")
    if st.button("Open Generate", key="home_generate_example"):
        st.switch_page("app_pages/generate.py")
