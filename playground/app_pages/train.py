"""The Train page: edit the corpus and the model, press Start and watch the loss fall live. Two modes:
"Memorize sentences" (below) and "Language model" (`playground.train_lm_ui`: real text, compare runs).

Training runs a fraction of a second per fragment tick (`st.fragment(run_every=...)`), so the page
stays responsive; the logic is `playground.training`, the figures `playground.charts`. The run's
outcome is drawn inside the fragment too, so it never depends on one rerun of the whole page.
"""

from __future__ import annotations

import math

import streamlit as st

from lm.data import MemorizationRow
from playground import charts
from playground.markdown import literal
from playground.state import DRAWN_RUNNING, persistent, training_session
from playground.train_lm_ui import lm_mode
from playground.training import (
    LIMITS,
    MAX_CORPUS_LINES,
    MAX_CORPUS_WORDS,
    MAX_VOCABULARY,
    SettingsError,
    TrainingSession,
    TrainSettings,
)

TICK_S = 0.4  # a fragment rerun every TICK_S seconds ...
BUDGET_S = 0.25  # ... trains for BUDGET_S of it (a click waits at most about this), leaving time to draw
MIN_UPDATES = 15  # a run is drawn at least this many times, however fast the machine: the fall is visible
DEFAULTS = TrainSettings()


def settings_ui(disabled: bool) -> TrainSettings:
    """The corpus, model and optimizer widgets; returns their values."""
    corpus = st.text_area(
        f"Corpus: one sentence per line (at most {MAX_CORPUS_LINES})",
        height=230,
        help=f"At most {MAX_CORPUS_LINES} sentences and {MAX_VOCABULARY} distinct words, and sentences × words "
        f"of the longest sentence at most {MAX_CORPUS_WORDS:,} (every line is padded to the longest), so each "
        "epoch stays a fraction of a second.",
        disabled=disabled,
        **persistent("train_corpus", DEFAULTS.corpus),
    )
    model_cols = st.columns(4)
    numbers = {}
    for col, (name, label, help_text) in zip(
        model_cols,
        [
            ("n_layers", "Layers", "Decoder layers stacked on top of each other."),
            ("n_heads", "Heads", "Attention heads per layer; they must divide d_model."),
            ("d_model", "d_model", "Width of the embeddings and the residual stream."),
            ("d_ff", "d_ff", "Hidden width of each feed-forward block."),
        ],
    ):
        # Heads may be typed as 0 so lm can explain why a model needs at least one.
        numbers[name] = col.number_input(
            label,
            min_value=0 if name == "n_heads" else 1,
            max_value=int(LIMITS[name]),
            step=1,
            help=help_text,
            disabled=disabled,
            **persistent(f"train_{name}", getattr(DEFAULTS, name)),
        )
    opt_col, lr_col, epochs_col, seed_col = st.columns(4)
    optimizer = opt_col.selectbox(
        "Optimizer",
        ["sgd", "adamw"],
        format_func={"sgd": "SGD", "adamw": "AdamW"}.get,
        disabled=disabled,
        **persistent("train_optimizer", DEFAULTS.optimizer),
    )
    lr = lr_col.number_input(
        "Learning rate",
        min_value=0.0,  # lm explains why a learning rate must be positive
        max_value=LIMITS["lr"],
        format="%g",
        step=0.01,
        disabled=disabled,
        help="SGD: try 0.05. AdamW: try 0.01. Too large and the run diverges.",
        **persistent("train_lr", DEFAULTS.lr),
    )
    epochs = epochs_col.number_input(
        "Epochs",
        min_value=1,
        max_value=int(LIMITS["epochs"]),
        step=50,
        disabled=disabled,
        help="Full-batch epochs: one optimizer step over the whole corpus each.",
        **persistent("train_epochs", DEFAULTS.epochs),
    )
    seed = seed_col.number_input(
        "Seed",
        min_value=0,
        max_value=int(LIMITS["seed"]),
        step=1,
        disabled=disabled,
        help="The initialization's seed: the same seed gives the same run.",
        **persistent("train_seed", DEFAULTS.seed),
    )
    return TrainSettings(
        corpus,
        *(int(numbers[n]) for n in ("n_layers", "n_heads", "d_model", "d_ff")),
        optimizer,
        float(lr),
        int(epochs),
        int(seed),
    )


FIELDS = ("corpus", "n_layers", "n_heads", "d_model", "d_ff", "optimizer", "lr", "epochs", "seed")
ERROR = "train_error"  # a Start callback's message, shown once by the next run


def settings_from_state() -> TrainSettings:
    """The settings widgets' values as a button callback sees them (before the page runs)."""
    values = {name: st.session_state.get(f"train_{name}", getattr(DEFAULTS, name)) for name in FIELDS}
    return TrainSettings(**values)


def on_start() -> None:
    try:
        training_session().start(settings_from_state())
    except SettingsError as err:
        st.session_state[ERROR] = str(err)


def controls_ui(session: TrainingSession, settings: TrainSettings) -> None:
    """Start (Resume when the stopped run's settings are unchanged), Stop and Reset. They act in callbacks,
    before the page runs, so the page draws the new state in the same run (one rerun per click)."""
    start_col, stop_col, reset_col, _ = st.columns([1, 1, 1, 3])
    label = "▶ Resume" if session.status == "stopped" and settings == session.settings else "▶ Start"
    start_col.button(
        label, type="primary", disabled=session.running, width="stretch", key="train_start", on_click=on_start
    )
    stop_col.button("■ Stop", disabled=not session.running, width="stretch", key="train_stop", on_click=session.stop)
    reset_col.button(
        "↺ Reset", disabled=session.status == "idle", width="stretch", key="train_reset", on_click=session.reset
    )
    if ERROR in st.session_state:
        st.error(literal(st.session_state.pop(ERROR)), icon=":material/error:")
    # What the controls were drawn for: a tick that finds the run in another state reruns the page.
    st.session_state[DRAWN_RUNNING] = session.running


def live_ui(session: TrainingSession, settings: TrainSettings) -> None:
    """One tick: train a little, then draw progress, charts and the run's outcome. When the run has
    ended since the controls were drawn, rerun the whole page (Start enabled, settings editable)."""
    session.advance(budget_s=BUDGET_S, max_epochs=max(1, math.ceil(session.epochs / MIN_UPDATES)))
    h = session.history
    planned = session.epochs or settings.epochs  # before a run: the epochs the settings plan
    if session.epochs:
        st.progress(
            min(1.0, session.epoch / session.epochs),
            text=f"epoch {session.epoch} / {session.epochs} · {session.elapsed_s:.1f} s of training",
        )
    if h.epochs:
        loss_col, mem_col, grad_col = st.columns(3)
        loss_col.metric(
            "Loss", f"{h.losses[-1]:.4f}", f"{h.losses[-1] - h.losses[0]:+.3f} since epoch 1", delta_color="inverse"
        )
        if h.mem_scores:
            mem_col.metric(
                "Memorized",
                f"{h.mem_scores[-1]} / {session.n_sentences}",
                help="Sentences reproduced exactly from their first two words (greedy decoding).",
            )
        grad_col.metric("Gradient norm", f"{h.grad_norms[-1]:.3g}")
        log_y = st.toggle("Log-scale loss", key="train_log_y")
        st.plotly_chart(charts.loss_figure(h.epochs, h.losses, log_y, planned), key="train_loss_chart")
        mem_col, grad_col = st.columns(2)
        with mem_col:
            st.plotly_chart(
                charts.memorization_figure(h.mem_epochs, h.mem_scores, session.n_sentences, planned),
                key="train_mem_chart",
            )
        with grad_col:
            st.plotly_chart(charts.grad_norm_figure(h.epochs, h.grad_norms, planned), key="train_grad_chart")
    else:  # an empty curve before the first run: the browser loads its charting code before Start is pressed
        st.plotly_chart(charts.loss_figure([], [], planned=planned), key="train_loss_chart")
    outcome_ui(session)
    if st.session_state.get(DRAWN_RUNNING, False) != session.running:
        st.rerun(scope="app")  # the run ended (or began) since the controls were drawn: redraw them


def outcome_ui(session: TrainingSession) -> None:
    """How the run ended (or where it paused), and from which epoch it reproduced every sentence."""
    if session.status == "diverged":
        st.error(literal(session.message), icon=":material/trending_up:")
        return
    if session.status not in ("stopped", "finished"):
        return
    score = session.history.mem_scores[-1] if session.history.mem_scores else 0
    when = (
        f" It first reproduced all {session.n_sentences} at epoch {session.first_full_epoch} "
        f"({session.first_full_s:.1f} s of training)."
        if session.first_full_epoch
        else ""
    )
    verb = "Finished" if session.status == "finished" else "Stopped"
    st.success(
        f"{verb} at epoch {session.epoch}: the model reproduces {score} of {session.n_sentences} sentences "
        f"from their first two words, each ending where it should.{when} It is now the **trained model** on "
        "the Generate page.",
        icon=":material/check_circle:",
    )


def table_rows(rows: list[MemorizationRow]) -> list[dict]:
    """lm's memorization rows as the table shows them (a checkbox column, not emoji a browser may lack)."""
    return [
        {"reproduced": r.correct, "sentence": r.sentence, "prompt": r.prompt, "model generates": r.generated}
        for r in rows
    ]


def results_ui(session: TrainingSession) -> None:
    """After a run stops or finishes: its weights and what it generates."""
    if session.status not in ("stopped", "finished"):
        return
    st.download_button(
        "Download weights (.safetensors)",
        session.weights_bytes(),
        file_name="trained.safetensors",
        mime="application/octet-stream",
        key="train_download",
    )
    st.subheader("What the model generates from each sentence's first two words")
    st.dataframe(
        table_rows(session.memorization_table()),
        hide_index=True,
        width="stretch",
        column_config={"reproduced": st.column_config.CheckboxColumn("reproduced", width="small")},
    )


MEMORIZE, LANGUAGE_MODEL = "Memorize sentences", "Language model"
st.title("Train")
mode = st.segmented_control("Mode", [MEMORIZE, LANGUAGE_MODEL], required=True, **persistent("train_mode", MEMORIZE))
if mode == LANGUAGE_MODEL:
    st.markdown(
        "Train a language model on real text — Tiny Shakespeare, TinyStories, or your own — and watch the "
        "training and validation loss fall below the unigram baseline while the samples turn from noise into "
        "words. Every finished or stopped run stays in the comparison table below."
    )
    st.caption(
        "Training runs only while this page is open: leaving it pauses the run (press **Resume** when you are "
        "back). Runs live in this browser tab: download a checkpoint to keep one."
    )
    lm_mode()
    st.stop()
st.markdown(
    "Train a small transformer — every forward and backward pass an `autodiff` graph — to memorize a corpus. "
    "Press **Start** and watch the loss fall; the model is scored on how many sentences it completes from "
    "their first two words (and ends: every sentence is followed by an end token, `<eos>`)."
)
st.caption(
    "Training runs only while this page is open: leaving it for another page pauses the run (press **Resume** "
    "when you are back). The trained model lives in this browser tab: reloading or closing the tab loses it, "
    "so download its weights to keep them."
)
session = training_session()
settings = settings_ui(disabled=session.running)
controls_ui(session, settings)

st.fragment(run_every=TICK_S if session.running else None)(live_ui)(session, settings)
results_ui(session)
