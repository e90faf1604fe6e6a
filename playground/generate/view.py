"""The Generate page: pick a model, type a prompt, and see the continuation with the probabilities and the
causal attention that produced each token. One view for every model: what differs (which widgets apply,
their bounds, chips or highlighted words, the KV-cache comparison) is the model's `Profile` (logic.py);
the figures are figures.py's.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from lm.generate import STOP_REASONS, Step
from lm.model import LanguageModel
from playground.common.markdown import literal
from playground.common.view import kept, persistent, svg_chart
from playground.generate import figures
from playground.generate.logic import (
    DEFAULT,
    GEN_MODEL,
    MAX_PROMPT_CHARS,
    MAX_TEMPERATURE,
    SHAKESPEARE,
    TRAINED,
    UPLOADED,
    GenerateError,
    Generation,
    Profile,
    chips_html,
    default_model,
    fingerprint,
    highlighted_markdown,
    model_caption,
    model_from_upload,
    profile_of,
    run_generation,
    shakespeare_model,
    step_labels,
    token_label,
)
from playground.train.logic import LANGUAGE_MODEL, MEMORIZE, latest_trained, session_of

HEADS_SHOWN = 4  # heads drawn at first; the others are picked by name
GRID_COLUMNS = 2  # heatmaps per row: each keeps ~280 px at a 1024 px window (narrow screens stack them)
MAX_ATTENTION_TOKENS = 32  # a heatmap shows the last this-many positions: 64 x 64 cells are unreadable
RUN_NAMES = {MEMORIZE: "sentence-memorizing", LANGUAGE_MODEL: "language-model"}  # the Train page's runs


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
    except GenerateError as err:
        st.error(literal(err), icon=":material/block:")
        return None
    st.session_state["gen_uploaded"] = (digest, model)
    return model


def trained_model() -> LanguageModel | None:
    """The Train page's run started last that has a model (either mode; the router paused it when Train
    was left), with a caption saying which; None with a message when there is none."""
    sessions = {mode: session_of(st.session_state, mode) for mode in (MEMORIZE, LANGUAGE_MODEL)}
    session = latest_trained(*sessions.values())
    if session is None:
        last = max(sessions.values(), key=lambda s: s.started_at)
        diverged = last.status == "diverged"
        reason = "The last training run diverged" if diverged else "No model has been trained in this session yet"
        st.info(f"{reason}: train one on the **Train** page (press Start, then let it finish or press Stop).")
        return None
    name = next(RUN_NAMES[mode] for mode, s in sessions.items() if s is session)
    unit = session.settings.unit
    if session.status == "stopped":
        st.caption(
            f"The Train page's {name} run is paused at {unit} {session.step} of {session.steps} (leaving the Train "
            "page pauses it); this is its model as it is now. Press Resume there to go on."
        )
    else:
        st.caption(f"The Train page's {name} run ({session.status}, {unit} {session.step}).")
    return session.trained_model


def model_ui() -> tuple[str, LanguageModel | None]:
    """Which model to generate with, and its model; None (with a message) when that one is not available."""
    choice = st.radio(
        "Model", [SHAKESPEARE, DEFAULT, TRAINED, UPLOADED], horizontal=True, **persistent(GEN_MODEL, SHAKESPEARE)
    )
    if choice == SHAKESPEARE:
        return choice, kept("gen_shakespeare_model", shakespeare_model)  # each browser session its own copy
    if choice == DEFAULT:
        return choice, kept("gen_default_model", default_model)
    if choice == TRAINED:
        return choice, trained_model()
    return choice, uploaded_model()


def options_ui(model: LanguageModel, profile: Profile) -> dict:
    """The prompt and decoding widgets the profile offers; returns run_generation's keyword arguments."""
    key = profile.widget
    prompt_widget = st.text_area if profile.multiline else st.text_input
    prompt = prompt_widget(
        "Prompt", max_chars=MAX_PROMPT_CHARS, help=profile.prompt_help, **({"height": 80} if profile.multiline else {}),
        **persistent(key("prompt"), profile.prompt),
    )  # fmt: skip
    # Switches apart from the numbers: five columns at a 1024 px window cut the switches' labels.
    sample_col, cache_col = st.columns(2) if profile.sample_switch or profile.compare_cache else (None, None)
    max_col, temp_col, k_col, *p_col, seed_col = st.columns(5 if profile.top_p else 4)
    max_new = max_col.number_input(
        "Max new tokens", min_value=1, max_value=profile.max_new_tokens, step=profile.new_tokens_step,
        help=f"Generation also stops when the model's context ({model.config.context} positions) is full."
        if not profile.slide else "Past the model's context, it reads the last half of it again and goes on.",
        **persistent(key("max_new"), profile.new_tokens),
    )  # fmt: skip
    sample = True
    if profile.sample_switch:
        sample = sample_col.toggle(
            "Sample", help="Off: greedy (the most likely token). On: temperature and top-k.",
            **persistent(key("sample"), False),
        )  # fmt: skip
    temperature = temp_col.number_input(
        "Temperature", min_value=profile.min_temperature, max_value=MAX_TEMPERATURE, step=0.1, disabled=not sample,
        help=None if profile.sample_switch else "0: greedy (always the most likely token).",
        **persistent(key("temperature"), profile.temperature),
    )  # fmt: skip
    low, high = profile.top_k_range
    top_k = k_col.number_input(
        "Top-k (0: all)" if low == 0 else "Top-k", min_value=low, max_value=high, step=1, disabled=not sample,
        **persistent(key("top_k"), profile.top_k),
    )  # fmt: skip
    top_p = 1.0
    if profile.top_p:
        top_p = p_col[0].number_input(
            "Top-p", min_value=0.01, max_value=1.0, step=0.05, **persistent(key("top_p"), 1.0)
        )
    seed = seed_col.number_input(
        "Seed", min_value=0, max_value=2**31 - 1, step=1, disabled=not sample, **persistent(key("seed"), 0)
    )
    use_cache = True
    if profile.compare_cache:
        use_cache = cache_col.toggle(
            "KV cache",
            help="Which decoding the trace below comes from. With the cache, each step after the first computes only "
            "the newest position and reads earlier keys and values from the cache; without it, every step recomputes "
            "all positions. Both are always run and timed (below): the tokens, probabilities and attention are the "
            "same, only the time differs.",
            **persistent(key("cache"), True),
        )
    return {
        "prompt": prompt,
        "max_new_tokens": int(max_new),
        "temperature": float(temperature) if sample else 0.0,
        "top_k": (int(top_k) or None) if sample else None,
        "top_p": float(top_p) if top_p < 1 else None,
        "seed": int(seed),
        "use_cache": use_cache,
    }


BUNDLED = {SHAKESPEARE: shakespeare_model, DEFAULT: default_model}  # the models every session shares


@st.cache_resource(max_entries=8, show_spinner=False)
def bundled_generation(name: str, options: tuple[tuple[str, object], ...]) -> Generation:
    """A bundled model's generation is the same for every session (the settings seed it): it is made once per
    settings for the whole server, so a new session's first heatmap needs no generation. It runs on a model
    of its own: a model's compiled graphs serve one run at a time, and sessions run in parallel threads."""
    return run_generation(BUNDLED[name](), **dict(options))


def generation_ui(name: str, model: LanguageModel, profile: Profile, options: dict) -> Generation | None:
    """Generate once per model and options, showing the text as it comes (a bundled model's is shared, made
    once); inspecting another step reuses it. None (with lm's or the page's message) when the prompt or a
    setting cannot be used."""
    last = profile.widget("last")
    request = (fingerprint(model), tuple(sorted(options.items())))
    if st.session_state.get(last, (None,))[0] != request:
        live, streamed = st.empty(), []  # the continuation as it comes (plain text: small updates)

        def show(step: Step) -> None:
            streamed.append(step.token_id)
            live.code(model.tokenizer.decode(streamed), language=None, wrap_lines=True)

        try:
            with st.spinner("Generating..."):
                if name in BUNDLED:
                    generation = bundled_generation(name, request[1])
                else:
                    generation = run_generation(model, **options, on_step=show)
            st.session_state[last] = (request, generation)
        except GenerateError as err:
            st.session_state.pop(last, None)
            st.error(literal(err), icon=":material/error:")
            return None
        finally:
            live.empty()
    return st.session_state[last][1]


def text_ui(gen: Generation, profile: Profile) -> None:
    """The prompt and its continuation (chips, or words with the new ones highlighted), and why it stopped."""
    trace = gen.trace
    if profile.chips:
        st.markdown(chips_html(trace.prompt_tokens, trace.new_tokens), unsafe_allow_html=True)  # escaped there
        with st.expander("As plain text", key=profile.widget("plain_open"), on_change="rerun") as plain:
            if plain.open:  # made only while open: a new session loads no code highlighter for it
                st.code(trace.text, language=None, wrap_lines=True)  # never cut off on a phone
    else:
        st.markdown("#### " + highlighted_markdown(trace))
    reason = STOP_REASONS.get(trace.stop_reason, trace.stop_reason)
    timing = (
        ""
        if gen.uncached is not None  # both decodings are timed below
        else f" ({gen.cached.ms_per_token:.1f} ms each with the KV cache, every position's attention over the "
        "window kept for the heatmaps)"
    )
    st.caption(f"Generated {len(trace.new_tokens)} token(s){timing}; it stopped because {reason}.")


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


def trace_ui(gen: Generation, profile: Profile) -> None:
    """For a chosen step: top-k bars and one attention heatmap per layer and head; then every step's
    distribution as a steps x vocabulary heatmap."""
    trace, key = gen.trace, profile.widget
    if not trace.steps:
        st.info("The model's context is already full: there is no room for a new token.")
        return
    labels = step_labels(trace)
    index = 0
    if len(labels) > 1:
        chosen = st.select_slider("Step to inspect", labels, value=labels[-1], key=key("step"))
        index = labels.index(chosen) if chosen in labels else 0
    step = trace.steps[index]
    svg_chart(figures.topk_svg(gen.vocab, step.probs, step.token_id, k=10))
    attention_ui(step, index, profile)
    probs, chosen = [s.probs for s in trace.steps], [s.token_id for s in trace.steps]
    svg_chart(figures.probability_svg(gen.vocab, probs, chosen, labels))


def pick(label: str, count: int, key: str) -> list[int]:
    """Which heads to draw: all of a few; past HEADS_SHOWN, the first few and a picker for the rest."""
    if count <= HEADS_SHOWN:
        return list(range(count))
    names = [str(i + 1) for i in range(count)]
    chosen = st.multiselect(label, names, default=names[:HEADS_SHOWN], key=key)
    return [names.index(name) for name in chosen]


def attention_ui(step: Step, index: int, profile: Profile) -> None:
    """One layer's heads (the layer picked above them), GRID_COLUMNS heatmaps per row (st.columns stack on
    a phone), each over the last MAX_ATTENTION_TOKENS positions the model read. Every layer at once was
    twelve heatmaps for the bundled model: a 10,000 px page on a phone."""
    key, t = profile.widget, len(step.labels)
    shown = min(t, MAX_ATTENTION_TOKENS)
    st.markdown(
        f"**Causal attention at step {index + 1}**: each query position (row) mixes the values of the positions "
        "it may see (columns); the upper triangle is the future, masked out. Colour: the weight, from 0 (dark) "
        "to 1 (yellow)." + (f" The last {shown} of the {t} positions the model read are drawn." if shown < t else "")
    )
    layer_col, head_col = st.columns(2)
    layers = list(range(len(step.attention)))
    layer = layer_col.segmented_control(
        "Layer", layers, format_func=lambda i: str(i + 1), default=0, required=True, key=key("layer")
    )
    with head_col:
        heads = pick("Heads to show", step.attention[0].shape[0], key("heads"))
    labels = [token_label(label) for label in step.labels[t - shown :]]
    for row in range(0, len(heads), GRID_COLUMNS):
        for col, head in zip(st.columns(GRID_COLUMNS), heads[row : row + GRID_COLUMNS]):
            with col:
                weights = step.attention[layer][head][t - shown :, t - shown :]  # (shown, shown)
                title = f"layer {layer + 1} · head {head + 1}"
                svg_chart(figures.attention_svg(weights, labels, title))


st.title("Generate")
st.markdown(
    "Type a prompt: the model continues it one token at a time, each step a softmax over the vocabulary "
    "computed by an `autodiff` graph. See the probabilities behind every choice and what each attention head "
    "looked at. The Shakespeare model reads characters (any text made of the characters of Tiny Shakespeare); "
    "the classic model reads the words of its ten sentences."
)
name, model = model_ui()
if model is None:
    st.stop()
profile = profile_of(model)
st.caption(model_caption(name, model))
options = options_ui(model, profile)
generation = generation_ui(name, model, profile, options)
if generation is None:
    st.stop()
text_ui(generation, profile)
if generation.uncached is not None:
    cache_ui(generation, options["use_cache"])
trace_ui(generation, profile)
