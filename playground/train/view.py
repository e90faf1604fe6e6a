"""The Train page: edit the settings, press Start and watch the loss fall live. Two modes over one
`TrainingSession` class (logic.py), one session each: "Memorize sentences" (the classic recipe on ten
sentences, memorization scored) and "Language model" (real text, a tokenizer, a preset; runs compared).

A run trains in its own worker process (logic.py, worker.py), under the server's bound on trainers at
once (scheduler.py: past it the run waits in a queue, its place shown); a fragment rerun every TICK_S
seconds (`st.fragment(run_every=...)`) draws what the worker sent since, so the page stays responsive.
The run's outcome is drawn inside the fragment too, so it never depends on one rerun of the whole page.
The settings (modes.py) and the figures (figures.py) hold no Streamlit.
"""

from __future__ import annotations

import streamlit as st

from lm.data import MemorizationRow
from lm.model import PRESETS
from playground.common.markdown import literal
from playground.common.view import persistent
from playground.train import figures
from playground.train.logic import LANGUAGE_MODEL, MEMORIZE, TrainingSession, session_of
from playground.train.modes import (
    CORPORA,
    LM_LIMITS,
    MAX_BPE_VOCAB,
    MAX_CORPUS_LINES,
    MAX_CORPUS_WORDS,
    MAX_UPLOAD_BYTES,
    MAX_VOCABULARY,
    MEMORIZE_LIMITS,
    LanguageModelSettings,
    MemorizeSettings,
    SettingsError,
    check_text,
    check_text_upload,
)

# A fragment rerun every TICK_S seconds draws what the run's worker sent since (the worker runs at most
# about two seconds ahead of the page: worker.py); each draw costs the server and the browser the charts'
# JSON, so a classroom's pages stay quick when it is not more often. A queued run's fragment only checks
# its place (`queue_ui`).
TICK_S = 1.0
QUEUED_TICK_S = 2.0
DRAWN_RUNNING = "train_drawn_running"  # what the controls (and the tick) were last drawn for: `drawn_for`
DEFAULTS = {MEMORIZE: MemorizeSettings(), LANGUAGE_MODEL: LanguageModelSettings()}
# What differs between the modes' controls: their widget keys, and whether Start doubles as Resume (the
# Memorize mode) or a run is resumed by its own button (the Language model mode starts a new run to compare).
CONTROLS = {
    MEMORIZE: dict(key="train", start="▶ Start", resume="▶ Resume", stop="■ Stop", reset="↺ Reset", own_resume=False),
    LANGUAGE_MODEL: dict(key="train_lm", start="Start", resume="Resume", stop="Stop", reset="Reset", own_resume=True),
}
INTRO = {
    MEMORIZE: (
        "Train a small transformer — every forward and backward pass an `autodiff` graph — to memorize a corpus. "
        "Press **Start** and watch the loss fall; the model is scored on how many sentences it completes from "
        "their first two words (and ends: every sentence is followed by an end token, `<eos>`).",
        "Training runs in its own process, only while this page is open: leaving it for another page pauses the "
        "run (press **Resume** when you are back); when every trainer of the server is busy, a run waits its turn "
        "in a queue. The trained model lives in this browser tab: reloading or closing the tab loses it, so "
        "download its weights to keep them.",
    ),
    LANGUAGE_MODEL: (
        "Train a language model on real text — Tiny Shakespeare, TinyStories, or your own — and watch the "
        "training and validation loss fall below the unigram baseline while the samples turn from noise into "
        "words. Every finished or stopped run stays in the comparison table below.",
        "Training runs in its own process, only while this page is open: leaving it pauses the run (press "
        "**Resume** when you are back); when every trainer of the server is busy, a run waits its turn in a "
        "queue. Runs live in this browser tab: download a checkpoint to keep one.",
    ),
}
PART_CHOICES = {  # the parts a learner toggles, with the choices lm.model knows
    "norm": ("layernorm", "rmsnorm"),
    "norm_placement": ("pre", "post"),
    "positions": ("learned", "rope"),
    "ffn": ("relu", "gelu", "swiglu"),
}


# ---------------------------------------------------------------- Memorize sentences: settings
def memorize_settings_ui(disabled: bool) -> tuple[MemorizeSettings, None, bool]:
    """The corpus, model and optimizer widgets; returns their values (no text to upload, nothing refused)."""
    defaults = DEFAULTS[MEMORIZE]
    corpus = st.text_area(
        f"Corpus: one sentence per line (at most {MAX_CORPUS_LINES})",
        height=230,
        help=f"At most {MAX_CORPUS_LINES} sentences and {MAX_VOCABULARY} distinct words, and sentences × words "
        f"of the longest sentence at most {MAX_CORPUS_WORDS:,} (every line is padded to the longest), so each "
        "epoch stays a fraction of a second.",
        disabled=disabled,
        **persistent("train_corpus", defaults.corpus),
    )
    numbers = {}
    specs = [
        ("n_layers", "Layers", "Decoder layers stacked on top of each other."),
        ("n_heads", "Heads", "Attention heads per layer; they must divide d_model."),
        ("d_model", "d_model", "Width of the embeddings and the residual stream."),
        ("d_ff", "d_ff", "Hidden width of each feed-forward block."),
    ]
    for col, (name, label, help_text) in zip(st.columns(4), specs):
        # Heads may be typed as 0 so lm can explain why a model needs at least one.
        numbers[name] = col.number_input(
            label, min_value=0 if name == "n_heads" else 1, max_value=int(MEMORIZE_LIMITS[name]), step=1,
            help=help_text, disabled=disabled, **persistent(f"train_{name}", getattr(defaults, name)),
        )  # fmt: skip
    opt_col, lr_col, epochs_col, seed_col = st.columns(4)
    optimizer = opt_col.selectbox(
        "Optimizer", ["sgd", "adamw"], format_func={"sgd": "SGD", "adamw": "AdamW"}.get, disabled=disabled,
        **persistent("train_optimizer", defaults.optimizer),
    )  # fmt: skip
    lr = lr_col.number_input(
        "Learning rate", min_value=0.0, max_value=MEMORIZE_LIMITS["lr"], format="%g", step=0.01, disabled=disabled,
        help="SGD: try 0.05. AdamW: try 0.01. Too large and the run diverges.",  # lm explains why lr must be > 0
        **persistent("train_lr", defaults.lr),
    )  # fmt: skip
    epochs = epochs_col.number_input(
        "Epochs", min_value=1, max_value=int(MEMORIZE_LIMITS["epochs"]), step=50, disabled=disabled,
        help="Full-batch epochs: one optimizer step over the whole corpus each.",
        **persistent("train_epochs", defaults.epochs),
    )  # fmt: skip
    seed = seed_col.number_input(
        "Seed", min_value=0, max_value=int(MEMORIZE_LIMITS["seed"]), step=1, disabled=disabled,
        help="The initialization's seed: the same seed gives the same run.", **persistent("train_seed", defaults.seed),
    )  # fmt: skip
    sizes = (int(numbers[n]) for n in ("n_layers", "n_heads", "d_model", "d_ff"))
    return MemorizeSettings(corpus, *sizes, optimizer, float(lr), int(epochs), int(seed)), None, False


# ---------------------------------------------------------------- Language model: settings
def corpus_ui(disabled: bool) -> tuple[str, str | None, bool]:
    """The corpus choice, for a pasted or uploaded one its checked text, and whether that text was refused
    (its message is shown here, once: Start then does nothing more)."""
    corpus = st.selectbox(
        "Corpus", list(CORPORA), format_func=CORPORA.get, disabled=disabled,
        help="TinyStories (download) fetches stories from the internet when you start: it fails with a message "
        "offline; the sample is bundled.", **persistent("train_lm_corpus", DEFAULTS[LANGUAGE_MODEL].corpus),
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
    except SettingsError as err:
        st.error(literal(err), icon=":material/block:")
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
        "llama: pre-RMSNorm, RoPE, SwiGLU.", **persistent("train_lm_preset", DEFAULTS[LANGUAGE_MODEL].preset),
    )  # fmt: skip
    base = PRESETS[preset]
    parts = {}
    cols = [*st.columns(3), *st.columns(3)]  # two rows of three: "layernorm" whole at a 1,024 px window
    for col, (name, choices) in zip(cols, PART_CHOICES.items()):
        value = col.selectbox(
            name.replace("_", " "), choices, index=choices.index(base[name]), disabled=disabled,
            key=f"train_lm_{name}_{preset}",  # per preset: changing the preset shows its own parts
        )  # fmt: skip
        if value != base[name]:
            parts[name] = value
    tied = cols[len(PART_CHOICES)].toggle(
        "tied head", value=base["tie_embeddings"], disabled=disabled, key=f"train_lm_tie_{preset}"
    )
    if tied != base["tie_embeddings"]:
        parts["tie_embeddings"] = tied
    return preset, parts


def numbers_ui(disabled: bool) -> dict:
    defaults = DEFAULTS[LANGUAGE_MODEL]
    specs = [
        ("n_layers", "Layers", 1, LM_LIMITS["n_layers"], 1), ("n_heads", "Heads", 1, LM_LIMITS["n_heads"], 1),
        ("d_model", "d_model", 8, LM_LIMITS["d_model"], 8), ("context", "Context", 2, LM_LIMITS["context"], 8),
        ("batch_size", "Batch", 1, LM_LIMITS["batch_size"], 1), ("steps", "Steps", 1, LM_LIMITS["steps"], 50),
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
                **persistent(f"train_lm_{name}", getattr(defaults, name)),
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
            **persistent("train_lm_lr", defaults.lr),
        )  # fmt: skip
    )
    values["sample_prompt"] = prompt_col.text_input(
        "Sample prompt (empty: a new document)", disabled=disabled, **persistent("train_lm_sample_prompt", "")
    )
    return values


def language_model_settings_ui(disabled: bool) -> tuple[LanguageModelSettings, str | None, bool]:
    corpus, text, refused = corpus_ui(disabled)
    tokenizer = tokenizer_ui(disabled)
    preset, parts = model_ui(disabled)
    settings = LanguageModelSettings(corpus, tokenizer, preset, parts, **numbers_ui(disabled))
    return settings, text, refused


# ---------------------------------------------------------------- both modes: controls and the live tick
def begin(session: TrainingSession, settings, text: str | None, resume: bool, error_key: str) -> None:
    """Start (or resume), then rerun. With a trainer free, the worker prepares the run while the page shows
    its progress (a BPE tokenizer training); else the run is queued."""
    bar = st.progress(0.0, text="preparing the data")

    def progress(done: int, total: int, stage: str) -> None:
        bar.progress(min(1.0, done / max(1, total)), text=f"{stage}: {done:,} / {total:,}")

    try:
        session.resume() if resume else session.start(settings, text, progress=progress)
    except SettingsError as err:
        st.session_state[error_key] = str(err)
    except OSError as err:
        st.session_state[error_key] = f"cannot prepare the data: {err}"
    st.rerun()


def controls_ui(session: TrainingSession, mode: str, settings, text: str | None, refused: bool) -> None:
    """Start (in the Memorize mode, Resume when the paused run's settings are unchanged), Stop, Resume
    (the Language model mode's own button) and Reset."""
    c = CONTROLS[mode]
    key, error_key = c["key"], f"{c['key']}_error"
    # wide enough at a 1,024 px window for "▶ Resume" whole (issue 18, finding 8: "▶ Resu…")
    cols = st.columns([1, 1, 1, 1, 1] if c["own_resume"] else [4, 3, 3, 5])
    resumes = not c["own_resume"] and session.resumable(settings)
    pressed = cols[0].button(
        c["resume"] if resumes else c["start"], type="primary", disabled=session.running, width="stretch",
        key=f"{key}_start",
    )  # fmt: skip
    cols[1].button(c["stop"], disabled=not session.running, width="stretch", key=f"{key}_stop", on_click=session.stop)
    if c["own_resume"]:
        cols[2].button(
            c["resume"], disabled=not session.resumable(session.settings), width="stretch", key=f"{key}_resume",
            on_click=session.resume,
        )  # fmt: skip
    cols[-2].button(
        c["reset"], disabled=session.status == "idle", width="stretch", key=f"{key}_reset", on_click=session.reset
    )
    if pressed and not refused:  # a refused text's message is already on the page: no second, false one
        begin(session, settings, text, resumes, error_key)
    if error_key in st.session_state:
        st.error(literal(st.session_state.pop(error_key)), icon=":material/error:")
    # What the controls were drawn for: a tick that finds the run in another state reruns the page.
    st.session_state[DRAWN_RUNNING] = drawn_for(session)


def drawn_for(session: TrainingSession) -> bool | str:
    """What the page's controls and tick depend on: running or not, and queued (a slower tick)."""
    return "queued" if session.status == "queued" else session.running


def live_ui(session: TrainingSession, mode: str, planned: int) -> None:
    """One tick: apply what the run's worker sent, then draw progress (or the run's place in the queue), the
    mode's metrics and charts and the run's outcome. When the run has ended since the controls were drawn,
    rerun the whole page (Start enabled, settings editable)."""
    session.advance()
    unit = DEFAULTS[mode].unit
    if session.progress is not None:
        done, total, stage = session.progress
        st.progress(min(1.0, done / max(1, total)), text=f"preparing the run: {stage} {done:,} / {total:,}")
    elif session.steps:
        st.progress(
            min(1.0, session.step / session.steps),
            text=f"{unit} {session.step} / {session.steps} · {session.elapsed_s:.1f} s of training",
        )
    LIVE[mode](session, planned)
    outcome_ui(session, mode)
    if st.session_state.get(DRAWN_RUNNING, False) != drawn_for(session):
        st.rerun(scope="app")  # the run ended (or began) since the controls were drawn: redraw them


def queue_ui(session: TrainingSession) -> None:
    """A queued run's tick: its place in the queue only (its charts are drawn once, outside this fragment:
    redrawing them for every waiting learner cost the server and the browsers); when its turn has come,
    rerun the whole page, which draws the live fragment."""
    position = session.queue_position()
    if position is not None:
        st.info(
            f"Every trainer of this server is busy: your run is **number {position}** in the queue and starts by "
            "itself when one frees (Stop leaves the queue).",
            icon=":material/hourglass_top:",
        )
    if st.session_state.get(DRAWN_RUNNING, False) != drawn_for(session):
        st.rerun(scope="app")


def outcome_ui(session: TrainingSession, mode: str) -> None:
    """How the run ended (or where it paused): lm's reason when it diverged, what happened when its worker
    died."""
    if session.status in ("diverged", "failed") and session.message:
        icon = ":material/trending_up:" if session.status == "diverged" else ":material/error:"
        st.error(literal(session.message), icon=icon)
        return
    if session.status not in ("stopped", "finished") or not session.step:
        return
    if session.status == "stopped" and not session.resumable(session.settings):
        st.caption(
            "This paused run's trainer was closed after a long pause to free the server's memory: its model is "
            "kept (download it, or use it on the Generate page); Start begins a new run."
        )
    verb = "Finished" if session.status == "finished" else "Stopped"
    detail = OUTCOME[mode](session)
    where = f"{DEFAULTS[mode].unit} {session.step}"
    st.success(
        f"{verb} at {where}.{detail} It is now the **trained model** on the Generate page.",
        icon=":material/check_circle:",
    )


def memorized_sentence(session: TrainingSession) -> str:
    """The Memorize mode's outcome: the sentences reproduced now, and from which epoch all of them were."""
    run = session.run
    score = run.mem_scores[-1] if run.mem_scores else 0
    when = (
        f" It first reproduced all {session.n_sentences} at epoch {run.first_full_step} "
        f"({run.first_full_s:.1f} s of training)."
        if run.first_full_step
        else ""
    )
    return (
        f" The model reproduces {score} of {session.n_sentences} sentences from their first two words, each "
        f"ending where it should.{when}"
    )


# ---------------------------------------------------------------- each mode's live charts and results
def memorize_live(session: TrainingSession, planned: int) -> None:
    run = session.run
    if run is None or not run.steps:  # an empty curve before the first run: the browser loads its charting code
        st.plotly_chart(figures.loss_figure([], [], planned=planned), key="train_loss_chart")
        return
    loss_col, mem_col, grad_col = st.columns(3)
    loss_col.metric(
        "Loss", f"{run.losses[-1]:.4f}", f"{run.losses[-1] - run.losses[0]:+.3f} since epoch 1", delta_color="inverse"
    )
    if run.mem_scores:
        mem_col.metric(
            "Memorized",
            f"{run.mem_scores[-1]} / {session.n_sentences}",
            help="Sentences reproduced exactly from their first two words (greedy decoding).",
        )
    grad_col.metric("Gradient norm", f"{run.grad_norms[-1]:.3g}")
    log_y = st.toggle("Log-scale loss", key="train_log_y")
    st.plotly_chart(figures.loss_figure(run.steps, run.losses, log_y, planned), key="train_loss_chart")
    mem_col, grad_col = st.columns(2)
    with mem_col:
        st.plotly_chart(
            figures.memorization_figure(run.mem_steps, run.mem_scores, session.n_sentences, planned),
            key="train_mem_chart",
        )
    with grad_col:
        st.plotly_chart(figures.grad_norm_figure(run.steps, run.grad_norms, planned), key="train_grad_chart")


def language_model_live(session: TrainingSession, planned: int) -> None:
    run = session.run
    if run is not None and run.steps:
        cols = st.columns(4)
        cols[0].metric("Training loss", f"{run.losses[-1]:.3f}")
        cols[1].metric("Validation loss", f"{run.val_losses[-1]:.3f}" if run.val_losses else "-")
        cols[2].metric("Unigram baseline", f"{run.unigram:.3f}", help="Each token's frequency, ignoring order.")
        cols[3].metric("Tokens / s", f"{session.tokens_per_s:,.0f}")
    tokens = st.toggle("x axis: tokens seen", key="train_lm_tokens_axis")
    loss_col, lr_col = st.columns(2)  # halves: in 2/5 of a 1,024 px window the schedule's title was cut
    loss_col.plotly_chart(figures.run_loss_figure(run, tokens, planned), key="train_lm_loss")
    lr_col.plotly_chart(figures.lr_figure(run, planned), key="train_lm_lr_chart")
    if run is not None and run.samples:
        prompt = run.settings.sample_prompt
        shown_prompt = f"“{literal(prompt)}”" if prompt else "an empty prompt (a new document)"
        st.markdown(f"**Samples from {shown_prompt}** (every {run.settings.sample_every} steps, newest last)")
        for step, text in run.samples:
            st.code(f"step {step}: {text}", language=None, wrap_lines=True)


LIVE = {MEMORIZE: memorize_live, LANGUAGE_MODEL: language_model_live}
OUTCOME = {MEMORIZE: memorized_sentence, LANGUAGE_MODEL: lambda session: ""}  # a sentence after "Finished at ..."


def table_rows(rows: list[MemorizationRow]) -> list[dict]:
    """lm's memorization rows as the table shows them (a checkbox column, not emoji a browser may lack)."""
    return [
        {"reproduced": r.correct, "sentence": r.sentence, "prompt": r.prompt, "model generates": r.generated}
        for r in rows
    ]


def memorize_results(session: TrainingSession) -> None:
    """After a run stops or finishes: its weights and what it generates."""
    if session.status not in ("stopped", "finished"):
        return
    st.download_button(
        "Download weights (.safetensors)", session.weights_bytes(), file_name="trained.safetensors",
        mime="application/octet-stream", key="train_download",
    )  # fmt: skip
    st.subheader("What the model generates from each sentence's first two words")
    st.dataframe(
        table_rows(session.memorization_table()), hide_index=True, width="stretch",
        column_config={"reproduced": st.column_config.CheckboxColumn("reproduced", width="small")},
    )  # fmt: skip


def language_model_results(session: TrainingSession) -> None:
    """What needs the whole page redrawn after a run: the checkpoint download and the comparison of runs."""
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
    names = [r.label() for r in finished]
    # keyed by the number of runs: a run that finishes resets the choice to the last two (a kept widget
    # state would ignore the new default and go on showing only the runs chosen before)
    chosen = st.multiselect("Runs to overlay", names, default=names[-2:], key=f"train_lm_compare_{len(names)}")
    validation = st.toggle("Validation loss (off: training loss)", value=True, key="train_lm_compare_val")
    picked = [r for r, n in zip(finished, names) if n in chosen]
    if picked:
        st.plotly_chart(figures.compare_figure(picked, validation=validation), key="train_lm_compare_chart")


SETTINGS_UI = {MEMORIZE: memorize_settings_ui, LANGUAGE_MODEL: language_model_settings_ui}
RESULTS = {MEMORIZE: memorize_results, LANGUAGE_MODEL: language_model_results}

st.title("Train")
mode = st.segmented_control("Mode", [MEMORIZE, LANGUAGE_MODEL], required=True, **persistent("train_mode", MEMORIZE))
intro, caption = INTRO[mode]
st.markdown(intro)
st.caption(caption)
session = session_of(st.session_state, mode)
settings, text, refused = SETTINGS_UI[mode](disabled=session.running)
controls_ui(session, mode, settings, text, refused)
planned = session.steps or settings.planned  # before a run: the steps the settings plan
if session.status == "queued":
    st.fragment(run_every=QUEUED_TICK_S)(queue_ui)(session)
    LIVE[mode](session, planned)  # the paused run's charts (none for a new run), drawn once
else:
    st.fragment(run_every=TICK_S if session.running else None)(live_ui)(session, mode, planned)
RESULTS[mode](session)
