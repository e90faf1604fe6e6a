"""The Train page's "Language model" mode (widgets and drawing; the logic is
`playground.textrun_session`, the figures `playground.lm_charts`): corpus, tokenizer, preset and its
parts, sizes and schedule; a live fragment with the losses, the learning rate, tokens/s and samples;
Stop / Resume / Reset, the checkpoint download, and the comparison of the session's runs.
"""

from __future__ import annotations

import streamlit as st

from lm.model import PRESETS
from playground import lm_charts
from playground.markdown import literal
from playground.state import DRAWN_RUNNING, lm_session, persistent
from playground.textrun_session import (
    CORPORA,
    LIMITS,
    MAX_BPE_VOCAB,
    MAX_UPLOAD_BYTES,
    LMSession,
    LMSettings,
    LMSettingsError,
    check_text,
    check_text_upload,
)

TICK_S = 0.5
BUDGET_S = 0.35
DEFAULTS = LMSettings()
PART_CHOICES = {  # the parts a learner toggles, with the choices lm.model knows
    "norm": ("layernorm", "rmsnorm"),
    "norm_placement": ("pre", "post"),
    "positions": ("learned", "rope"),
    "ffn": ("relu", "gelu", "swiglu"),
}
TEXT = "train_lm_text"  # the pasted or uploaded corpus, once checked
ERROR = "train_lm_error"


def corpus_ui(disabled: bool) -> tuple[str, str | None, bool]:
    """The corpus choice, for a pasted or uploaded one its checked text, and whether that text was refused
    (its message is shown here, once: Start then does nothing more)."""
    corpus = st.selectbox(
        "Corpus", list(CORPORA), format_func=CORPORA.get, disabled=disabled,
        help="TinyStories (download) fetches stories from the internet when you start: it fails with a message "
        "offline; the sample is bundled.", **persistent("train_lm_corpus", DEFAULTS.corpus),
    )  # fmt: skip
    text, refused = None, False
    try:
        if corpus == "pasted":
            pasted = st.text_area("Text to train on", height=150, disabled=disabled, key="train_lm_paste")
            text = check_text(pasted) if pasted else None
        elif corpus == "upload":
            upload = st.file_uploader(
                f"A UTF-8 .txt file (at most {MAX_UPLOAD_BYTES // 1_000_000} MB)", type=["txt"], key="train_lm_upload"
            )
            text = check_text_upload(upload.getvalue(), upload.name) if upload is not None else None
    except LMSettingsError as err:
        st.error(literal(str(err)), icon=":material/block:")
        refused = True
    return corpus, text, refused


def tokenizer_ui(disabled: bool) -> str:
    kind_col, size_col = st.columns(2)
    kind = kind_col.radio(
        "Tokenizer", ["char", "bpe", "gpt2"], horizontal=True, disabled=disabled,
        format_func={"char": "Characters", "bpe": "BPE trained here", "gpt2": "GPT-2's BPE"}.get,
        **persistent("train_lm_tok", "char"),
    )  # fmt: skip
    size = size_col.number_input(
        "BPE vocabulary", min_value=257, max_value=MAX_BPE_VOCAB, step=64, disabled=disabled or kind != "bpe",
        help="The 256 bytes, <|endoftext|> and the merges learned on the corpus (with a progress bar).",
        **persistent("train_lm_bpe_size", 512),
    )  # fmt: skip
    return f"bpe:{int(size)}" if kind == "bpe" else kind


def model_ui(disabled: bool) -> tuple[str, dict]:
    """The preset and the parts changed from it."""
    preset = st.radio(
        "Preset", list(PRESETS), horizontal=True, disabled=disabled,
        help="classic: post-LayerNorm, learned positions, ReLU. gpt: pre-LayerNorm, GELU, tied head. "
        "llama: pre-RMSNorm, RoPE, SwiGLU.", **persistent("train_lm_preset", DEFAULTS.preset),
    )  # fmt: skip
    base = PRESETS[preset]
    parts = {}
    cols = st.columns(len(PART_CHOICES) + 1)
    for col, (name, choices) in zip(cols, PART_CHOICES.items()):
        value = col.selectbox(
            name.replace("_", " "), choices, index=choices.index(base[name]), disabled=disabled,
            key=f"train_lm_{name}_{preset}",  # per preset: changing the preset shows its own parts
        )  # fmt: skip
        if value != base[name]:
            parts[name] = value
    tied = cols[-1].toggle("tied head", value=base["tie_embeddings"], disabled=disabled, key=f"train_lm_tie_{preset}")
    if tied != base["tie_embeddings"]:
        parts["tie_embeddings"] = tied
    return preset, parts


def numbers_ui(disabled: bool) -> dict:
    specs = [
        ("n_layers", "Layers", 1, LIMITS["n_layers"], 1), ("n_heads", "Heads", 1, LIMITS["n_heads"], 1),
        ("d_model", "d_model", 8, LIMITS["d_model"], 8), ("context", "Context", 2, LIMITS["context"], 8),
        ("batch_size", "Batch", 1, LIMITS["batch_size"], 1), ("steps", "Steps", 1, LIMITS["steps"], 50),
        ("warmup", "Warmup steps", 0, 10_000, 10), ("seed", "Seed", 0, 2**31 - 1, 1),
        ("eval_every", "Validate every", 1, 10_000, 5), ("sample_every", "Sample every", 1, 10_000, 10),
    ]  # fmt: skip
    values = {}
    cols = st.columns(5)
    for i, (name, label, low, high, step) in enumerate(specs):
        values[name] = int(
            cols[i % 5].number_input(
                label,
                min_value=low,
                max_value=high,
                step=step,
                disabled=disabled,
                **persistent(f"train_lm_{name}", getattr(DEFAULTS, name)),
            )  # fmt: skip
        )
    lr_col, prompt_col = st.columns([1, 4])
    values["lr"] = float(
        lr_col.number_input(
            "Peak learning rate",
            min_value=1e-5,
            max_value=1.0,
            format="%g",
            step=1e-3,
            disabled=disabled,
            help="Linear warmup to this, then cosine down to a tenth of it.",
            **persistent("train_lm_lr", DEFAULTS.lr),
        )  # fmt: skip
    )
    values["sample_prompt"] = prompt_col.text_input(
        "Sample prompt (empty: a new document)", disabled=disabled, **persistent("train_lm_sample_prompt", "")
    )
    return values


def settings_ui(disabled: bool) -> tuple[LMSettings, str | None, bool]:
    corpus, text, refused = corpus_ui(disabled)
    tokenizer = tokenizer_ui(disabled)
    preset, parts = model_ui(disabled)
    settings = LMSettings(corpus=corpus, tokenizer=tokenizer, preset=preset, parts=parts, **numbers_ui(disabled))
    return settings, text, refused


def start(session: LMSession, settings: LMSettings, text: str | None) -> None:
    """Build the run here, in the page (a BPE tokenizer trains with a progress bar), then rerun."""
    bar = st.progress(0.0, text="preparing the data")

    def progress(done: int, total: int, stage: str) -> None:
        bar.progress(min(1.0, done / max(1, total)), text=f"{stage}: {done:,} / {total:,}")

    try:
        session.start(settings, text, progress=progress)
    except LMSettingsError as err:
        st.session_state[ERROR] = str(err)
    except OSError as err:
        st.session_state[ERROR] = f"cannot prepare the data: {err}"
    st.rerun()


def controls_ui(session: LMSession, settings: LMSettings, text: str | None, refused: bool) -> None:
    start_col, stop_col, resume_col, reset_col, _ = st.columns([1, 1, 1, 1, 2])
    pressed = start_col.button("Start", type="primary", disabled=session.running, width="stretch", key="train_lm_start")
    if pressed and not refused:  # a refused text's message is already on the page: no second, false one
        start(session, settings, text)
    stop_col.button("Stop", disabled=not session.running, width="stretch", key="train_lm_stop", on_click=session.stop)
    resume_col.button(
        "Resume", disabled=session.status != "stopped", width="stretch", key="train_lm_resume", on_click=session.resume
    )
    reset_col.button(
        "Reset", disabled=session.status == "idle", width="stretch", key="train_lm_reset", on_click=session.reset
    )
    if ERROR in st.session_state:
        st.error(literal(st.session_state.pop(ERROR)), icon=":material/error:")
    st.session_state[DRAWN_RUNNING] = session.running


def live_ui(session: LMSession) -> None:
    """One tick: train a little, then draw the run's progress, curves and samples."""
    session.advance(BUDGET_S)
    run, trainer = session.run, session.trainer
    planned = trainer.config.steps if trainer else None
    if run is not None and run.steps:
        st.progress(min(1.0, run.steps[-1] / planned), text=f"step {run.steps[-1]} / {planned} · {run.seconds:.1f} s")
        cols = st.columns(4)
        cols[0].metric("Training loss", f"{run.losses[-1]:.3f}")
        cols[1].metric("Validation loss", f"{run.val_losses[-1]:.3f}" if run.val_losses else "-")
        cols[2].metric("Unigram baseline", f"{run.unigram:.3f}", help="Each token's frequency, ignoring order.")
        cols[3].metric("Tokens / s", f"{session.tokens_per_s:,.0f}")
    if session.error:
        st.error(literal(session.error), icon=":material/trending_up:")
    tokens = st.toggle("x axis: tokens seen", key="train_lm_tokens_axis")
    loss_col, lr_col = st.columns([3, 2])
    loss_col.plotly_chart(lm_charts.loss_figure(run, tokens, planned), key="train_lm_loss")
    lr_col.plotly_chart(lm_charts.lr_figure(run, planned), key="train_lm_lr_chart")
    if run is not None and run.samples:
        prompt = run.settings["sample_prompt"]
        shown_prompt = f"“{literal(prompt)}”" if prompt else "an empty prompt (a new document)"
        st.markdown(f"**Samples from {shown_prompt}** (every {run.settings['sample_every']} steps, newest last)")
        for step, text in run.samples:
            st.code(f"step {step}: {text}", language=None, wrap_lines=True)
    if session.status in ("stopped", "finished") and session.step:  # drawn by the tick that ends the run
        st.success(
            f"{session.status.capitalize()} at step {session.step}: it is now the **trained model** on the "
            "Generate page.", icon=":material/check_circle:",
        )  # fmt: skip
    if st.session_state.get(DRAWN_RUNNING, False) != session.running:
        st.rerun(scope="app")  # the run ended (or began) since the controls were drawn: redraw them


def results_ui(session: LMSession) -> None:
    """What needs the whole page redrawn after a run: the checkpoint download and the comparison of runs.
    (The outcome itself is drawn in the live fragment, so it never waits on that rerun.)"""
    if session.status in ("stopped", "finished") and session.step:
        if st.toggle("Prepare the checkpoint for download", key="train_lm_prepare"):
            st.download_button(
                "Download checkpoint (.safetensors)", session.checkpoint_bytes(), file_name="checkpoint.safetensors",
                mime="application/octet-stream", key="train_lm_download",
            )  # fmt: skip
    finished = [r for r in session.runs if r.steps and r.status != "running"]
    if not finished:
        return
    st.subheader("Compare runs")
    st.dataframe([r.row() for r in finished], hide_index=True, width="stretch", key="train_lm_runs")
    names = [lm_charts.label(r) for r in finished]
    # keyed by the number of runs: a run that finishes resets the choice to the last two (a kept widget
    # state would ignore the new default and go on showing only the runs chosen before)
    chosen = st.multiselect("Runs to overlay", names, default=names[-2:], key=f"train_lm_compare_{len(names)}")
    validation = st.toggle("Validation loss (off: training loss)", value=True, key="train_lm_compare_val")
    picked = [r for r, n in zip(finished, names) if n in chosen]
    if picked:
        st.plotly_chart(lm_charts.compare_figure(picked, validation=validation), key="train_lm_compare_chart")


def lm_mode() -> None:
    """The whole Language model mode."""
    session = lm_session()
    settings, text, refused = settings_ui(disabled=session.running)
    controls_ui(session, settings, text, refused)
    st.fragment(run_every=TICK_S if session.running else None)(live_ui)(session)
    results_ui(session)
