"""The Attention page: self-attention built step by step on a sentence the learner types (GPT-2 tokens,
small editable embeddings), one step at a time: its matrices as annotated heatmaps, its math and its autodiff graph.
The logic is logic.py (the graphs graphs.py), the heatmaps figures.py: this page reads widgets, turns
the library's errors into messages, and draws."""

import pandas as pd
import streamlit as st

from playground.attention import logic as att
from playground.attention.figures import heatmap, rows_of
from playground.common.markdown import literal
from playground.common.view import graph_chart
from playground.tokenizer.logic import gpt2

DEFAULTS = att.AttentionSettings()
STEP = "att_step"  # the step shown


def settings_ui() -> tuple[str, att.AttentionSettings]:
    """The sentence and the sizes; bounds come from the library (which checks them again)."""
    text = st.text_input(
        "Sentence",
        value=att.DEFAULT_TEXT,
        key="att_text",
        help=f"Tokenized by GPT-2's BPE: 2 to {att.MAX_TOKENS} tokens, at most {att.MAX_CHARS} characters.",
    )
    dim_col, dk_col, heads_col, seed_col = st.columns(4)
    dim = dim_col.number_input("Embedding size d", *att.DIM_RANGE, value=DEFAULTS.dim, key="att_dim")
    d_k = dk_col.number_input("d_k (per head)", *att.DK_RANGE, value=DEFAULTS.d_k, key="att_dk")
    heads = heads_col.number_input("Heads (step 6)", *att.HEADS_RANGE, value=DEFAULTS.heads, key="att_heads")
    seed = seed_col.number_input("Seed", *att.SEED_RANGE, value=DEFAULTS.seed, key="att_seed")
    return text, att.AttentionSettings(int(dim), int(d_k), int(heads), int(seed))


def embeddings_ui(tokens: list[str], settings: att.AttentionSettings):
    """An editable table of the embeddings, one row per token; it starts from the seeded values and
    starts again whenever the tokens, the size or the seed change (or on Reset)."""
    labels = att.axis_labels(tokens)
    default = att.default_embeddings(len(tokens), settings)
    frame = pd.DataFrame(default.numpy(), index=labels, columns=[f"e{j}" for j in range(1, settings.dim + 1)])
    version = st.session_state.get("att_reset", 0)
    key = f"att_x_{hash((tuple(labels), settings.dim, settings.seed))}_{version}"
    st.markdown("**Embeddings x** (one row per token; double-click a cell to edit it)")
    edited = st.data_editor(
        frame, key=key, width="stretch", num_rows="fixed",
        column_config={c: st.column_config.NumberColumn(c, format="%.2f", step=0.01) for c in frame.columns},
    )  # fmt: skip
    # below the table: above it, the table's own toolbar would cover the button
    if st.button("Reset to the seeded values", icon=":material/restart_alt:", key="att_reset_button"):
        st.session_state["att_reset"] = version + 1
        st.rerun()
    return edited.to_numpy(dtype=float, na_value=float("nan"))


def step_ui(step: att.Step) -> None:
    st.header(f"{step.number}. {step.title}", divider="gray")
    st.latex(step.math)
    st.markdown(step.text)
    for r, row in enumerate(rows_of(step.matrices)):
        columns = st.columns(len(row) if len(row) > 1 else 1)
        for c, (column, matrix) in enumerate(zip(columns, row)):
            column.plotly_chart(heatmap(matrix), key=f"att_{step.number}_{r}_{c}", config={"displayModeBar": False})
            if matrix.note:
                column.caption(matrix.note)
    for fact in step.facts:
        st.caption(f":material/check_circle: {fact}")
    title = f"Autodiff graph of step {step.number}" + (", with its backward pass" if step.backward else "")
    # laid out only while open (the browser's Graphviz takes a while on the larger steps)
    with st.expander(title, expanded=step.number <= 3, key=f"att_graph_open_{step.number}", on_change="rerun") as graph:
        if not graph.open:
            return
        if step.backward is None:
            graph_chart(step.dot)
            return
        st.caption(
            "Gradients of L = sum(out ⊙ r), r random (seeded): what training W_q, W_k, W_v... would use. "
            "Dashed nodes are forward values the backward pass reads."
        )
        graph_chart(step.backward.dot)


def go_to(number: int) -> None:
    """The next/previous button's callback: pick that step before the selector is drawn again."""
    st.session_state[STEP] = number


st.title("Attention")
st.markdown(
    "Self-attention built in six steps, the way the classic walk-through builds it, on a sentence you type. "
    "Every matrix below is computed by our `autodiff` engine (the graph of each step is drawn under it) and "
    "is checked against plain PyTorch in the tests. Rows are the tokens that look (queries); columns, in the "
    "square matrices, the tokens they look at (keys)."
)
text, settings = settings_ui()
try:
    settings.check()
    ids, tokens = att.tokenize(text, gpt2())
except att.AttentionInputError as err:
    st.error(literal(str(err)), icon=":material/error:")
    st.stop()
st.caption(f"{len(ids)} GPT-2 tokens: " + " · ".join(literal(tok) for tok in tokens))
labels = att.axis_labels(tokens)
x = embeddings_ui(tokens, settings)
backward = st.toggle(
    "Draw the backward pass in the step's graph", key="att_backward",
    help="The graph of the gradients too: reverse-mode autodiff builds it from the forward graph.",
)  # fmt: skip
# One step at a time: all six drew 29 heatmaps and 6 graphs on every change (4-6 s, 10,000 px tall).
number = st.segmented_control(
    "Step", list(att.STEP_NAMES), format_func=lambda n: f"{n}. {att.STEP_NAMES[n]}", default=1, required=True,
    key=STEP,
)  # fmt: skip
focus = 1
if number == 3:
    focus = labels.index(
        st.selectbox(
            "Token to follow", labels, index=min(1, len(labels) - 1), key="att_focus",
            help="This step writes this token's context vector out as a sum, term by term.",
        )
    )  # fmt: skip
try:
    steps = att.build_steps(text, x, settings, gpt2(), focus=focus, backward=backward)
except att.AttentionInputError as err:
    st.error(literal(str(err)), icon=":material/error:")
    st.stop()
step_ui(steps[number - 1])
previous, following = st.columns(2)
if number > 1:
    previous.button(f"← {number - 1}. {att.STEP_NAMES[number - 1]}", on_click=go_to, args=(number - 1,), wrap=True)
if number < len(steps):
    following.button(f"{number + 1}. {att.STEP_NAMES[number + 1]} →", on_click=go_to, args=(number + 1,), wrap=True)
