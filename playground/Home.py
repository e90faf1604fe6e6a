"""The app's entry point: `streamlit run playground/Home.py`. It only routes between the pages, one
folder each (`<page>/view.py` is the page script; with `st.navigation`, Streamlit ignores a `pages/`
folder). Each page keeps its url path: the router pauses training when the `train` page is left.
"""

import streamlit as st
import torch
import torch._dynamo  # noqa: F401  (once, at start-up: see playground/train/child.py; else the first Graph page waits ~1.2 s)

import playground.common.charts  # noqa: F401  (plotly and pandas imported once, at start-up: see charts.py)
from playground.train import worker
from playground.train.logic import pause_training_off_page

# Every tensor in the app is tiny: waking torch's intra-op worker threads costs more than they save
# (one thread trains the default model about 6x faster in the server on a busy 2-core machine).
torch.set_num_threads(1)
worker.warm_up()  # the training workers' process server starts (imports torch) once, at the server's start

st.set_page_config(page_title="Autodiff Playground", page_icon=":material/functions:", layout="wide")

pages = [
    st.Page("home/view.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("graph/view.py", title="Graph", icon=":material/account_tree:", url_path="graph"),
    st.Page("tokenizer/view.py", title="Tokenizer", icon=":material/text_fields:", url_path="tokenizer"),
    st.Page("attention/view.py", title="Attention", icon=":material/grid_on:", url_path="attention"),
    st.Page("train/view.py", title="Train", icon=":material/show_chart:", url_path="train"),
    st.Page("systems/view.py", title="Systems", icon=":material/speed:", url_path="systems"),
    st.Page("generate/view.py", title="Generate", icon=":material/edit_note:", url_path="generate"),
]
page = st.navigation(pages)
pause_training_off_page(st.session_state, page.url_path)  # leaving the Train page, for any page, pauses its run
page.run()
