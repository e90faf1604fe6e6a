"""The Train page headless with Streamlit's AppTest (one fragment tick per run()), in both modes of its
one training session. Memorize sentences: a short training draws the losses lm computes for the same
settings, Stop pauses and Start resumes, bad settings and a diverging run show messages (and clear the
old run's results), each browser session trains its own model, leaving the page pauses a run. Language
model: a tiny run trains live (both losses on one chart, the lr curve, samples), runs are compared, bad
settings and a refused text are one message each. And what a run gives the Generate page: its model
(one heatmap per layer and head), its downloaded weights (uploaded back, the same text).
"""

from __future__ import annotations

import time

import pytest
import torch
from apptest_helpers import figures, open_page, svg_charts
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from lm.train import TrainConfig, Trainer
from playground.common.markdown import shown


def small_model(at: AppTest, epochs: int) -> AppTest:
    """A narrow model on the default corpus, so a test trains in a second or two."""
    at.number_input(key="train_d_model").set_value(16).run()
    at.number_input(key="train_d_ff").set_value(32).run()
    return at.number_input(key="train_epochs").set_value(epochs).run()


def run_until(at: AppTest, condition, what: str, timeout_s: float = 120.0) -> None:
    """Rerun the page (each run is one tick of its fragment) until `condition()` holds: the run trains in
    a worker process, so what a tick shows depends on what the worker has sent by then."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        at.run()


def train_until_done(at: AppTest, key: str = "train_session") -> None:
    session = at.session_state[key]
    run_until(at, lambda: not session.running, "the run ending")


# ---------------------------------------------------------------- Memorize sentences


def test_a_short_training_draws_decreasing_losses_and_shows_results() -> None:
    at = small_model(open_page("train"), epochs=40)
    at.button(key="train_start").click().run()
    assert not at.exception
    train_until_done(at)
    assert not at.exception and not at.error
    loss = figures(at)["Loss (cross-entropy)"]["data"][0]
    assert loss["x"] == list(range(1, 41))
    losses = loss["y"]
    # the same settings trained by lm directly, outside the page: the page draws exactly these losses
    direct = Trainer(TrainConfig.recipe("classic", d_model=16, d_ff=32, steps=40, seed=0))
    assert losses == pytest.approx([event.loss for event in direct.events() if event.kind == "step"], abs=1e-12)
    assert losses[-1] < 0.7 * losses[0]  # the loss falls
    assert sum(b < a for a, b in zip(losses, losses[1:])) > 0.8 * (len(losses) - 1)  # mostly step by step
    assert any("Memorized sentences" in title for title in figures(at))
    assert "Gradient norm" in figures(at)
    assert at.success and "Finished at epoch 40" in at.success[0].value
    assert len(at.get("download_button")) == 1
    table = at.dataframe[0].value
    assert list(table["sentence"])[0] == "the red fox jumps high" and len(table) == 10
    assert table["reproduced"].dtype == bool  # a checkbox column: no emoji a browser may not draw


def test_log_scale_toggle() -> None:
    at = small_model(open_page("train"), epochs=30)
    at.button(key="train_start").click().run()
    train_until_done(at)
    at.toggle(key="train_log_y").set_value(True).run()
    for title in ("Loss (cross-entropy)", "Gradient norm"):  # one axis helper: ticks read as numbers
        axis = figures(at)[title]["layout"]["yaxis"]
        assert axis["type"] == "log" and len(axis["tickvals"]) >= 3
        assert [float(t) for t in axis["ticktext"]] == pytest.approx(axis["tickvals"])  # '0.5' reads 0.5, not 5


def test_the_empty_loss_chart_spans_the_planned_epochs() -> None:
    axes = figures(open_page("train"))["Loss (cross-entropy)"]["layout"]
    assert axes["xaxis"]["range"] == [1, 500] and axes["yaxis"]["range"] == [0, 1]  # the classic recipe's 500


def test_stop_pauses_training_and_start_resumes_it() -> None:
    at = small_model(open_page("train"), epochs=5000)
    at.button(key="train_start").click().run()
    session = at.session_state["train_session"]
    run_until(at, lambda: session.step > 0, "a first epoch")
    assert session.running
    at.button(key="train_stop").click().run()
    stopped_at = session.step
    assert session.status == "stopped" and not at.exception
    at.run().run()
    assert session.step == stopped_at  # no more ticks
    assert at.button(key="train_stop").disabled and at.button(key="train_start").label == "▶ Resume"
    assert at.success and "Stopped at epoch" in at.success[0].value
    at.button(key="train_start").click().run()
    assert session.running
    run_until(at, lambda: session.step > stopped_at, "the resumed run training on")
    at.button(key="train_reset").click().run()
    assert at.session_state["train_session"].status == "idle"
    assert figures(at)["Loss (cross-entropy)"]["data"][0]["y"] == []  # an empty curve again


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train_n_heads", 0, "n_heads must be a whole number from 1 to 128, got 0"),
        ("train_n_heads", 3, "must divide d_model"),
        ("train_corpus", "", "the corpus is empty"),
        ("train_corpus", "a b c\n" * 2000, "2,000 sentences; the limit is 100:"),
    ],
)
def test_bad_settings_show_an_error_not_an_exception(key: str, value: object, message: str) -> None:
    at = open_page("train")
    widget = at.text_area(key=key) if key == "train_corpus" else at.number_input(key=key)
    widget.set_value(value).run()
    at.button(key="train_start").click().run()
    assert not at.exception
    assert at.error and message in shown(at.error[0].value)
    assert at.session_state["train_session"].status == "idle"


def test_a_diverging_run_stops_itself_and_says_why() -> None:
    at = small_model(open_page("train"), epochs=500)
    at.selectbox(key="train_optimizer").set_value("adamw").run()
    at.number_input(key="train_lr").set_value(10.0).run()
    at.button(key="train_start").click().run()
    train_until_done(at)
    assert not at.exception
    assert at.error and "diverged" in shown(at.error[0].value) and "lower the learning rate" in shown(at.error[0].value)


def test_a_rejected_setting_clears_the_old_results() -> None:
    """After a finished run, Start with a corpus the page refuses shows the error alone: no old 'Finished'
    box, 'Memorized 10 / 10' metric, table or charts beside it."""
    at = small_model(open_page("train"), epochs=3)
    at.button(key="train_start").click().run()
    train_until_done(at)
    assert at.success and at.dataframe and any(m.label == "Memorized" for m in at.metric)
    at.text_area(key="train_corpus").set_value("a b c\n" * 2000).run()
    at.button(key="train_start").click().run()
    assert at.error and "the limit is 100" in shown(at.error[0].value)
    assert not at.success and not at.dataframe and not at.metric and not at.get("download_button")
    assert figures(at)["Loss (cross-entropy)"]["data"][0]["y"] == []


def test_each_session_trains_its_own_model() -> None:
    first, second = small_model(open_page("train"), epochs=3), open_page("train")
    first.button(key="train_start").click().run()
    train_until_done(first)
    assert first.session_state["train_session"].status == "finished"
    second.run()
    assert second.session_state["train_session"].status == "idle"
    assert figures(second)["Loss (cross-entropy)"]["data"][0]["y"] == []


def test_the_train_page_states_the_leaving_rule_and_that_a_reload_loses_the_model() -> None:
    captions = " ".join(c.value for c in open_page("train").caption)
    assert "leaving it for another page pauses the run" in captions and "reloading" in captions


@pytest.mark.parametrize("page", ["graph", "home"])
def test_leaving_for_any_page_pauses_a_run(page: str) -> None:
    at = small_model(open_page("train"), epochs=5000)
    at.button(key="train_start").click().run()
    session = at.session_state["train_session"]
    run_until(at, lambda: session.step > 0, "a first epoch")  # training, not still starting
    assert session.running
    at.switch_page(f"{page}/view.py").run()
    stopped_at = session.step
    assert session.status == "stopped" and not at.exception
    at.switch_page("train/view.py").run()
    assert session.step == stopped_at and at.button(key="train_start").label == "▶ Resume"


# ---------------------------------------------------------------- Language model


def test_language_model_mode_trains_live_and_feeds_generate() -> None:
    at = open_page("train")
    at.segmented_control(key="train_mode").set_value("Language model").run()
    for key, value in {"n_layers": 1, "d_model": 32, "context": 16, "batch_size": 4, "steps": 6, "eval_every": 3,
                       "sample_every": 3}.items():  # fmt: skip
        at.number_input(key=f"train_lm_{key}").set_value(value).run()
    at.button(key="train_lm_start").click().run()
    assert not at.exception and not at.error
    session = at.session_state["train_lm_session"]
    train_until_done(at, "train_lm_session")
    assert session.status == "finished" and session.run.val_steps == [3, 6]
    figs = figures(at)
    loss = figs["Loss (cross-entropy, nats per token)"]["data"]
    assert [t["name"] for t in loss] == ["training", "validation"] and loss[0]["x"] == [1, 2, 3, 4, 5, 6]
    assert len(figs["Learning rate (warmup, then cosine)"]["data"][0]["y"]) == 6
    assert any(c.value.startswith("step 6: ") for c in at.code)  # the samples, as a list
    assert at.dataframe  # the comparison table
    at.toggle(key="train_lm_prepare").set_value(True).run()
    assert not at.exception and len(at.get("download_button")) == 1  # the run's checkpoint
    at.switch_page("generate/view.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception
    assert any("language-model run (finished, step 6)" in c.value for c in at.caption)
    assert [t for t in svg_charts(at) if t.startswith("layer")] == [f"layer 1 · head {h}" for h in (1, 2, 3, 4)]

    # A second run: "Compare runs" overlays the last two by default (issue 18, finding 2: it kept run 1 only).
    at.switch_page("train/view.py").run()
    at.button(key="train_lm_start").click().run()
    train_until_done(at, "train_lm_session")
    assert not at.exception and session.status == "finished" and len(session.runs) == 2
    overlay = next(m for m in at.multiselect if m.label == "Runs to overlay")
    assert len(overlay.value) == 2
    compare = next(spec for title, spec in figures(at).items() if title.startswith("Validation loss of"))
    assert len(compare["data"]) == 2


def test_settings_that_do_not_fit_are_a_message_and_leaving_the_page_pauses_a_run() -> None:
    at = open_page("train")
    at.segmented_control(key="train_mode").set_value("Language model").run()
    at.number_input(key="train_lm_n_heads").set_value(3).run()
    at.button(key="train_lm_start").click().run()
    assert not at.exception and at.error and "must divide d_model (64)" in shown(at.error[0].value)
    at.number_input(key="train_lm_n_heads").set_value(4).run()
    at.number_input(key="train_lm_steps").set_value(5000).run()
    at.button(key="train_lm_start").click().run()
    session = at.session_state["train_lm_session"]
    run_until(at, lambda: session.step > 0, "a first step")  # training, not still starting
    assert session.running
    at.switch_page("home/view.py").run()
    assert not at.exception and at.session_state["train_lm_session"].status == "stopped"


def test_a_refused_pasted_text_is_one_message_not_two() -> None:
    """Issue 18, finding 3: 11 pasted characters and Start gave the length error and a false "no text yet"."""
    at = open_page("train")
    at.segmented_control(key="train_mode").set_value("Language model").run()
    at.selectbox(key="train_lm_corpus").set_value("pasted").run()
    at.text_area(key="train_lm_paste").input("hello world").run()
    at.button(key="train_lm_start").click().run()
    assert not at.exception
    assert [shown(e.value) for e in at.error] == [
        "the pasted text has 11 characters; give at least 1,000"
    ]  # fmt: skip
    assert at.session_state["train_lm_session"].status == "idle"


# ---------------------------------------------------------------- what a run gives the Generate page


def test_more_heads_and_layers_draw_one_heatmap_each() -> None:
    at = small_model(open_page("train"), epochs=2)
    at.number_input(key="train_n_layers").set_value(2).run()
    at.number_input(key="train_n_heads").set_value(2).run()
    at.button(key="train_start").click().run()
    train_until_done(at)
    at.switch_page("generate/view.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception
    assert [t for t in svg_charts(at) if t.startswith("layer")] == ["layer 1 · head 1", "layer 1 · head 2"]
    at.segmented_control(key="gen_layer").set_value(1).run()  # the Generate page draws one layer at a time
    assert not at.exception
    assert [t for t in svg_charts(at) if t.startswith("layer")] == ["layer 2 · head 1", "layer 2 · head 2"]


def test_beyond_four_heads_the_page_draws_the_chosen_ones() -> None:
    at = small_model(open_page("train"), epochs=2)
    at.number_input(key="train_n_heads").set_value(8).run()
    at.button(key="train_start").click().run()
    train_until_done(at)
    at.switch_page("generate/view.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert [t for t in svg_charts(at) if t.startswith("layer")] == [f"layer 1 · head {h}" for h in (1, 2, 3, 4)]
    at.multiselect(key="gen_heads").set_value(["2", "7", "8"]).run()
    assert not at.exception
    assert [t for t in svg_charts(at) if t.startswith("layer")] == [f"layer 1 · head {h}" for h in (2, 7, 8)]


def test_leaving_a_running_training_pauses_it_and_generate_uses_its_model() -> None:
    at = small_model(open_page("train"), epochs=5000)
    at.button(key="train_start").click().run()
    session = at.session_state["train_session"]
    # A model exists once a step is trained: a stressed CI run left the page before the worker's first epoch
    run_until(at, lambda: session.step > 0, "a first epoch")
    assert session.running
    at.switch_page("generate/view.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception and not at.error
    assert session.status == "stopped" and any("d_model 16" in c.value for c in at.caption)
    assert any("paused" in c.value for c in at.caption)
    at.switch_page("train/view.py").run()
    assert at.button(key="train_start").label == "▶ Resume"
    at.number_input(key="train_seed").set_value(1).run()  # changed settings: Start begins a new run
    assert at.button(key="train_start").label == "▶ Start"


class RecordingStorage(MemoryMediaFileStorage):
    """AppTest's media storage, kept after a run so a test can read what a download button serves."""

    last: MemoryMediaFileStorage | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        RecordingStorage.last = self


def test_the_downloaded_weights_upload_back_and_generate_the_same(monkeypatch) -> None:
    monkeypatch.setattr("streamlit.testing.v1.app_test.MemoryMediaFileStorage", RecordingStorage)
    at = small_model(open_page("train"), epochs=60)
    at.button(key="train_start").click().run()
    train_until_done(at)
    button = at.get("download_button")[0].proto
    assert button.label.startswith("Download weights")
    downloaded = RecordingStorage.last.get_file(button.url.rsplit("/", 1)[-1]).content  # the bytes served
    at.switch_page("generate/view.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception and not at.error
    assert any("d_model 16" in c.value for c in at.caption)  # the session's small model, not the default one
    trained_text = [m.value for m in at.markdown if m.value.startswith("####")]
    trained_figures = svg_charts(at)
    trained_steps = at.session_state["gen_last"][1].trace.steps
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    at.file_uploader(key="gen_upload").upload("trained.safetensors", downloaded, "application/octet-stream").run()
    assert not at.exception and not at.error
    assert any("d_model 16" in c.value for c in at.caption)
    assert [m.value for m in at.markdown if m.value.startswith("####")] == trained_text
    uploaded_figures = svg_charts(at)
    for title in ("Next-token distribution at every step (× = chosen)", "layer 1 · head 1"):
        assert uploaded_figures[title].cells == trained_figures[title].cells  # every value, in its hover text
    uploaded_steps = at.session_state["gen_last"][1].trace.steps  # and to the bit, behind the charts
    assert len(uploaded_steps) == len(trained_steps)
    for up, trained in zip(uploaded_steps, trained_steps, strict=True):
        assert torch.equal(up.probs, trained.probs)
        assert all(torch.equal(a, b) for a, b in zip(up.attention, trained.attention, strict=True))
