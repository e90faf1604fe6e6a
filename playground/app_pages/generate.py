"""The Generate page: pick a model, type a prompt, and see the continuation with the probabilities and
the causal attention that produced each token, and what the KV cache saves per token.

The logic is `playground.generation`, the figures `playground.charts`; models live in session state.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from lm.generate import STOP_REASONS
from lm.model import LanguageModel
from playground import charts
from playground.generate_text_ui import text_model_page
from playground.generation import (
    DEFAULT,
    MAX_NEW_TOKENS,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    SHAKESPEARE,
    TRAINED,
    UPLOADED,
    GenerateError,
    Generation,
    default_model,
    fingerprint,
    highlighted_markdown,
    latest_trained,
    model_from_upload,
    run_generation,
    step_labels,
)
from playground.markdown import literal
from playground.state import GEN_MODEL, GEN_PROMPT, lm_session, persistent, training_session
from playground.text_generation import (
    TextGenerateError,
    is_text_model,
    shakespeare_model,
)

HEADS_SHOWN = 4  # heads drawn at first; the others are picked by name
GRID_COLUMNS = 3  # heatmaps per row: each keeps ~250 px at a 1024 px window (narrow screens stack them)


def session_model(key: str, make) -> LanguageModel:
    """A model kept in this browser session's state (each session gets its own copy)."""
    if key not in st.session_state:
        st.session_state[key] = make()
    return st.session_state[key]


def uploaded_model() -> LanguageModel | None:
    """The uploader; the model of the uploaded file, or None (with an error shown for a bad file)."""
    upload = st.file_uploader(
        "Weights file or checkpoint (.safetensors from the Train page, `python -m lm train` or "
        "a run folder's checkpoint.safetensors)",
        type=["safetensors"],
        key="gen_upload",
    )
    if upload is None:
        st.info("Upload a weights file to use it.")
        return None
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    cached = st.session_state.get("gen_uploaded")
    if cached is not None and cached[0] == digest:
        return cached[1]
    try:
        model = model_from_upload(data, upload.name)  # a weights file or a run's checkpoint, any model
    except (GenerateError, TextGenerateError) as err:
        st.error(literal(str(err)), icon=":material/block:")
        return None
    st.session_state["gen_uploaded"] = (digest, model)
    return model


def model_ui() -> LanguageModel | None:
    """Which model to generate with; None (with a message) when that one is not available."""
    choice = st.radio(
        "Model", [SHAKESPEARE, DEFAULT, TRAINED, UPLOADED], horizontal=True, **persistent(GEN_MODEL, SHAKESPEARE)
    )
    if choice == SHAKESPEARE:
        return session_model("gen_shakespeare_model", shakespeare_model)
    if choice == DEFAULT:
        return session_model("gen_default_model", default_model)
    if choice == TRAINED:
        text_run, training = lm_session(), training_session()  # the router paused them when Train was left
        if latest_trained(training, text_run) == "text":  # the language-model run was started last
            st.caption(f"The Train page's language-model run ({text_run.status}, step {text_run.step}).")
            return text_run.model
        if training.status == "stopped":
            st.caption(
                f"The Train page's run is paused at epoch {training.epoch} of {training.epochs} (leaving the Train "
                "page pauses it); this is its model as it is now. Press Resume there to go on."
            )
        if training.status in ("stopped", "finished"):
            return training.model
        reason = {
            "idle": "No model has been trained in this session yet",
            "diverged": "The last training run diverged",
        }[training.status]
        st.info(f"{reason}: train one on the **Train** page (press Start, then let it finish or press Stop).")
        return None
    return uploaded_model()


def options_ui(model: LanguageModel) -> dict:
    """Prompt and decoding widgets; returns run_generation's keyword arguments."""
    prompt_col, max_col = st.columns([3, 1])
    prompt = prompt_col.text_input(
        "Prompt",
        max_chars=2000,
        help="Words of the model's vocabulary, e.g. the first two words of a sentence.",
        **persistent(GEN_PROMPT, "the red"),
    )
    max_new = max_col.number_input(
        "Max new tokens",
        min_value=1,
        max_value=MAX_NEW_TOKENS,
        step=1,
        help=f"Generation also stops when the model's context ({model.config.context} positions) is full.",
        **persistent("gen_max_new", 10),
    )
    # Toggles apart from the numbers: five columns at a 1024 px window cut the toggles' labels.
    mode_col, cache_col = st.columns(2)
    temp_col, k_col, seed_col = st.columns(3)
    sample = mode_col.toggle(
        "Sample",
        help="Off: greedy (the most likely token). On: temperature and top-k.",
        **persistent("gen_sample", False),
    )
    temperature = temp_col.number_input(
        "Temperature",
        min_value=0.05,
        max_value=MAX_TEMPERATURE,
        step=0.1,
        disabled=not sample,
        **persistent("gen_temperature", 1.0),
    )
    top_k = k_col.number_input(
        "Top-k", min_value=1, max_value=MAX_TOP_K, step=1, disabled=not sample, **persistent("gen_top_k", 5)
    )
    seed = seed_col.number_input(
        "Seed", min_value=0, max_value=2**31 - 1, step=1, disabled=not sample, **persistent("gen_seed", 0)
    )
    use_cache = cache_col.toggle(
        "KV cache",
        help="Which decoding the trace below comes from. With the cache, each step after the first computes only "
        "the newest position and reads earlier keys and values from the cache; without it, every step recomputes "
        "all positions. Both are always run and timed (below): the tokens, probabilities and attention are the "
        "same, only the time differs.",
        **persistent("gen_cache", True),
    )
    return {
        "prompt": prompt,
        "max_new_tokens": int(max_new),
        "temperature": float(temperature) if sample else 0.0,
        "top_k": int(top_k) if sample else None,
        "seed": int(seed),
        "use_cache": use_cache,
    }


def cache_ui(gen: Generation, use_cache: bool) -> None:
    """Time per generated token with and without the KV cache, and whether their tokens agree."""
    with_col, without_col, same_col = st.columns(3)
    with_col.metric(
        "KV cache: ms per token",
        f"{gen.cached.ms_per_token:.2f}",
        help="Each step after the first computes only the newest position and reads the cached keys and values.",
    )
    without_col.metric(
        "No cache: ms per token",
        f"{gen.uncached.ms_per_token:.2f}",
        help="Each step recomputes every position from scratch.",
    )
    same_col.metric("Same tokens?", "yes" if gen.same_tokens else "no")
    st.caption(
        f"The switch picks which decoding the text and the trace come from: this is the "
        f"{'cached' if use_cache else 'uncached'} run. Both runs give the same tokens, probabilities and attention; "
        "only their time differs. Time per token after the first (each step's best of 5 runs); the first step "
        f"reads the whole prompt in both modes: {gen.cached.first_ms:.2f} ms with the cache, "
        f"{gen.uncached.first_ms:.2f} ms without. At these small sizes each step costs mostly the engine's per-op "
        "overhead, so the cache saves little; it pays off as the text and the model grow "
        "(`bench/bench_decode.py` measures it against the context length)."
    )


def trace_ui(gen: Generation) -> None:
    """For a chosen step: top-k bars and one attention heatmap per layer and head; then every step's
    distribution as a steps x vocabulary heatmap."""
    trace = gen.trace
    if not trace.steps:
        st.info("The model's context is already full: there is no room for a new token.")
        return
    labels = step_labels(trace)
    index = 0
    if len(labels) > 1:
        chosen = st.select_slider("Step to inspect", labels, value=labels[-1], key="gen_step")
        index = labels.index(chosen) if chosen in labels else 0
    step = trace.steps[index]
    st.plotly_chart(charts.topk_figure(gen.vocab, step.probs, step.token_id, k=10), key="gen_topk")
    attention_ui(step, index)
    st.plotly_chart(
        charts.probability_heatmap(
            gen.vocab, [s.probs for s in trace.steps], [s.token_id for s in trace.steps], labels
        ),
        key="gen_prob_heatmap",
    )


def pick(label: str, count: int, key: str) -> list[int]:
    """Which layers or heads to draw: all of a few; past HEADS_SHOWN, the first few and a picker for the rest."""
    if count <= HEADS_SHOWN:
        return list(range(count))
    names = [str(i + 1) for i in range(count)]
    chosen = st.multiselect(label, names, default=names[:HEADS_SHOWN], key=key)
    return [names.index(name) for name in chosen]


def attention_ui(step, index: int) -> None:
    """One heatmap per chosen layer and head, GRID_COLUMNS per row, each filling its cell at any width."""
    st.markdown(
        f"**Causal attention at step {index + 1}**: each query position (row) mixes the values of the positions "
        "it may see (columns); the upper triangle is the future, masked out."
    )
    layer_col, head_col = st.columns(2)
    with layer_col:
        layers = pick("Layers to show", len(step.attention), "gen_layers")
    with head_col:
        heads = pick("Heads to show", step.attention[0].shape[0], "gen_heads")
    cells = [(layer, head) for layer in layers for head in heads]
    for row in range(0, len(cells), GRID_COLUMNS):
        for col, (layer, head) in zip(st.columns(GRID_COLUMNS), cells[row : row + GRID_COLUMNS]):
            with col:
                st.plotly_chart(
                    charts.attention_figure(
                        step.attention[layer][head], step.labels, f"layer {layer + 1} · head {head + 1}"
                    ),
                    key=f"gen_attention_{layer}_{head}",
                )


st.title("Generate")
st.markdown(
    "Type a prompt: the model continues it one token at a time, each step a softmax over the vocabulary "
    "computed by an `autodiff` graph. See the probabilities behind every choice and what each attention head "
    "looked at. The Shakespeare model reads characters (any text made of the characters of Tiny Shakespeare); "
    "the classic model reads the words of its ten sentences."
)
model = model_ui()
if model is None:
    st.stop()
if is_text_model(model):
    text_model_page(model, st.session_state.get(GEN_MODEL, ""))
    st.stop()
cfg = model.config
st.caption(
    f"{model.num_parameters():,} parameters · {cfg.n_layers} layer(s) × {cfg.n_heads} head(s) · "
    f"d_model {cfg.d_model} · vocabulary {len(model.tokenizer.words)} words (+ "
    f"{', '.join(f'`{t}`' for t in model.tokenizer.special_tokens)}) · context {cfg.context}"
)
options = options_ui(model)
# Generate once per model and options (both modes, timed); inspecting another step reuses it.
request = (fingerprint(model), tuple(sorted(options.items())))
if st.session_state.get("gen_last", (None,))[0] != request:
    try:
        st.session_state["gen_last"] = (request, run_generation(model, **options))
    except GenerateError as err:
        st.session_state.pop("gen_last", None)
        st.error(literal(str(err)), icon=":material/error:")
        st.stop()
generation = st.session_state["gen_last"][1]
st.markdown("#### " + highlighted_markdown(generation.trace))
reason = STOP_REASONS.get(generation.trace.stop_reason, generation.trace.stop_reason)
st.caption(f"Generated {len(generation.trace.new_tokens)} token(s); it stopped because {reason}.")
cache_ui(generation, options["use_cache"])
trace_ui(generation)
