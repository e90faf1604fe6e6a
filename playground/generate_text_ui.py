"""The Generate page's widgets and drawing for text models (character or BPE tokens): a free-text
prompt, temperature / top-k / top-p, the continuation as token chips, and per step the top-k bars and
every layer's and head's attention. The logic is `playground.text_generation` (no Streamlit there).
"""

from __future__ import annotations

import streamlit as st

from lm.generate import STOP_REASONS, Step, Trace
from lm.model import LanguageModel
from playground import charts
from playground.markdown import literal
from playground.state import persistent
from playground.text_generation import (
    MAX_NEW_TOKENS,
    TextGenerateError,
    chips_html,
    generate_trace,
    step_labels,
    token_label,
    vocab_labels,
)

HEADS_SHOWN = 4  # heads drawn at first; the others are picked by name
GRID_COLUMNS = 3  # heatmaps per row: each keeps ~250 px at a 1024 px window
MAX_ATTENTION_TOKENS = 32  # a heatmap shows the last this-many positions: 64 x 64 cells are unreadable


def options_ui(model: LanguageModel) -> dict:
    """Prompt and decoding widgets; returns generate_trace's keyword arguments."""
    prompt = st.text_area(
        "Prompt",
        max_chars=2000,
        height=80,
        help="Any text the model's tokenizer can read (a character model only knows the characters of its "
        "training text). Empty: the model starts a new document.",
        **persistent("gen_text_prompt", "ROMEO:\nWhat light is "),
    )
    max_col, temp_col, k_col, p_col, seed_col = st.columns(5)
    max_new = max_col.number_input(
        "Max new tokens", min_value=1, max_value=MAX_NEW_TOKENS, step=10, **persistent("gen_text_max_new", 60)
    )
    temperature = temp_col.number_input(
        "Temperature",
        min_value=0.0,
        max_value=5.0,
        step=0.1,
        help="0: greedy (always the most likely token).",
        **persistent("gen_text_temperature", 0.8),
    )
    top_k = k_col.number_input(
        "Top-k (0: all)", min_value=0, max_value=100_000, step=1, **persistent("gen_text_top_k", 20)
    )
    top_p = p_col.number_input("Top-p", min_value=0.01, max_value=1.0, step=0.05, **persistent("gen_text_top_p", 1.0))
    seed = seed_col.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, **persistent("gen_text_seed", 0))
    return {
        "prompt": prompt,
        "max_new_tokens": int(max_new),
        "temperature": float(temperature),
        "top_k": int(top_k) or None,
        "top_p": float(top_p) if top_p < 1 else None,
        "seed": int(seed),
    }


def pick(label: str, count: int, key: str) -> list[int]:
    """All of a few layers or heads; past HEADS_SHOWN the first few and a picker for the others."""
    if count <= HEADS_SHOWN:
        return list(range(count))
    names = [str(i + 1) for i in range(count)]
    chosen = st.multiselect(label, names, default=names[:HEADS_SHOWN], key=key)
    return [names.index(name) for name in chosen]


def attention_ui(step: Step, index: int) -> None:
    """One heatmap per chosen layer and head, GRID_COLUMNS per row (st.columns wrap on narrow windows)."""
    t = len(step.labels)
    shown = min(t, MAX_ATTENTION_TOKENS)
    st.markdown(
        f"**Causal attention at step {index + 1}**: each query position (row) mixes the values of the positions "
        "it may see (columns); the upper triangle is the future, masked out."
        + (f" The last {shown} of the {t} positions the model read are drawn." if shown < t else "")
    )
    layer_col, head_col = st.columns(2)
    with layer_col:
        layers = pick("Layers to show", len(step.attention), "gen_text_layers")
    with head_col:
        heads = pick("Heads to show", step.attention[0].shape[0], "gen_text_heads")
    cells = [(layer, head) for layer in layers for head in heads]
    for row in range(0, len(cells), GRID_COLUMNS):
        for col, (layer, head) in zip(st.columns(GRID_COLUMNS), cells[row : row + GRID_COLUMNS]):
            with col:
                weights = step.attention[layer][head][t - shown :, t - shown :]  # (shown, shown)
                labels = [token_label(label) for label in step.labels[t - shown :]]
                fig = charts.attention_figure(weights, labels, f"layer {layer + 1} · head {head + 1}")
                fig.update_traces(showscale=True, colorbar=dict(thickness=8, len=0.8, title="weight"))
                st.plotly_chart(fig, key=f"gen_text_attention_{layer}_{head}")


def trace_ui(trace: Trace, vocab: list[str]) -> None:
    """For a chosen step: the top-k bars and the attention grid; then every step's distribution."""
    labels = step_labels(trace)
    index = 0
    if len(labels) > 1:
        chosen = st.select_slider("Step to inspect", labels, value=labels[-1], key="gen_text_step")
        index = labels.index(chosen) if chosen in labels else 0
    step = trace.steps[index]
    st.plotly_chart(charts.topk_figure(vocab, step.probs, step.token_id, k=10), key="gen_text_topk")
    attention_ui(step, index)
    st.plotly_chart(
        charts.probability_heatmap(vocab, [s.probs for s in trace.steps], [s.token_id for s in trace.steps], labels),
        key="gen_text_prob_heatmap",
    )


def text_model_page(model: LanguageModel, name: str) -> None:
    """The whole Generate page for a text model."""
    cfg = model.config
    st.caption(
        f"{name}: {model.num_parameters():,} parameters · preset {cfg.preset} · {cfg.n_layers} layer(s) × "
        f"{cfg.n_heads} head(s) · d_model {cfg.d_model} · {type(model.tokenizer).__name__} vocabulary "
        f"{len(model.tokenizer):,} · context {cfg.context}"
    )
    options = options_ui(model)
    request = (id(model), *(float(p.sum()) for p in model.params.values()), tuple(sorted(options.items())))
    if st.session_state.get("gen_text_last", (None,))[0] != request:
        live, streamed = st.empty(), []  # the continuation as it comes (plain text: small updates)

        def show(step: Step) -> None:
            streamed.append(step.token_id)
            live.code(model.tokenizer.decode(streamed), language=None)

        try:
            with st.spinner("Generating..."):
                st.session_state["gen_text_last"] = (request, generate_trace(model, **options, on_step=show))
        except TextGenerateError as err:
            st.session_state.pop("gen_text_last", None)
            st.error(literal(str(err)), icon=":material/error:")
            return
        finally:
            live.empty()
    trace = st.session_state["gen_text_last"][1]
    st.markdown(chips_html(trace.prompt_tokens, trace.new_tokens), unsafe_allow_html=True)  # HTML-escaped there
    with st.expander("As plain text"):
        st.code(trace.text, language=None)
    reason = STOP_REASONS.get(trace.stop_reason, trace.stop_reason)
    ms = 1e3 * sum(s.seconds for s in trace.steps) / max(1, len(trace.steps))
    st.caption(
        f"Generated {len(trace.new_tokens)} token(s) ({ms:.1f} ms each with the KV cache, every position's attention "
        f"over the window kept for the heatmaps); it stopped because {reason}."
    )
    trace_ui(trace, vocab_labels(model))
