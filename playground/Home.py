"""The app's entry point: `streamlit run playground/Home.py`. It only routes between the pages.

Page files live in `app_pages/` (with `st.navigation`, Streamlit ignores a `pages/` folder).
"""

import streamlit as st
import torch

import playground.charts  # noqa: F401  (plotly and pandas imported once, at start-up: see charts.py)
from playground.state import pause_training_off_page

# Every tensor in the app is tiny: waking torch's intra-op worker threads costs more than they save
# (one thread trains the default model about 6x faster in the server on a busy 2-core machine).
torch.set_num_threads(1)

st.set_page_config(page_title="Autodiff Playground", page_icon=":material/functions:", layout="wide")

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/graph.py", title="Graph", icon=":material/account_tree:"),
    st.Page("app_pages/tokenizer.py", title="Tokenizer", icon=":material/text_fields:"),
    st.Page("app_pages/attention.py", title="Attention", icon=":material/grid_on:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/show_chart:"),
    st.Page("app_pages/generate.py", title="Generate", icon=":material/edit_note:"),
]
page = st.navigation(pages)
pause_training_off_page(page.url_path)  # leaving the Train page, for any page, pauses its run
page.run()
