"""The Home page: what the playground is, what each page teaches, and a one-click example for each."""

import streamlit as st

from playground.explore import EXAMPLES
from playground.generation import DEFAULT
from playground.state import GEN_MODEL, GEN_PROMPT, preset, request_example, training_session
from playground.training import TrainSettings

GENERATE_EXAMPLE = "a bright"  # the first two words of a default-corpus sentence

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
    st.markdown(
        "Train a small transformer whose every forward and backward pass is an `autodiff` graph, and watch "
        "the loss fall live while it learns to complete ten sentences from their first two words; or, in the "
        "**Language model** mode, train on Tiny Shakespeare or your own text and compare runs."
    )
    if st.button("Try: train the default model", key="home_train_example"):
        training_session().start(TrainSettings())
        st.switch_page("app_pages/train.py")
    st.caption("SGD, lr 0.05, d_model 64, 1 layer, 1 head")
with generate:
    st.subheader(":material/edit_note: Generate")
    st.markdown(
        "Type a prompt and watch a model continue it — the bundled character-level Shakespeare model, the "
        "classic word model or your own: the probability of every next token at each step, and what each "
        "attention head looked at."
    )
    if st.button(f"Try: continue “{GENERATE_EXAMPLE}”", key="home_generate_example"):
        preset(GEN_MODEL, DEFAULT)
        preset(GEN_PROMPT, GENERATE_EXAMPLE)
        st.switch_page("app_pages/generate.py")
    st.caption("with the pretrained default model")

tokenizer_card, attention_card, _ = st.columns(3)
with tokenizer_card:
    st.subheader(":material/text_fields: Tokenizer")
    st.markdown(
        "See text as the model sees it: GPT-2's byte-level BPE tokens as coloured chips. Train your own BPE "
        "and step through its merges, watching the bytes per token grow."
    )
    if st.button("Try: train a BPE on five stories", key="home_tokenizer_example"):
        st.session_state["tok_autotrain"] = True  # the Tokenizer page trains on its story sample at once
        st.switch_page("app_pages/tokenizer.py")
    st.caption("vocabulary 400, with <|endoftext|>")
with attention_card:
    st.subheader(":material/grid_on: Attention")
    st.markdown(
        "Build self-attention in six steps on a sentence you type: dot-product scores, softmax, context "
        "vectors, trainable queries, keys and values, the causal mask and several heads, each as heatmaps "
        "with its math and its autodiff graph."
    )
    if st.button("Try: attention step by step", key="home_attention_example"):
        st.switch_page("app_pages/attention.py")
    st.caption("“Your journey starts with one step”, 3-d embeddings")
