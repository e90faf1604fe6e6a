"""The Train and Generate pages run headlessly with Streamlit's AppTest (one fragment tick per run()):
a short training draws the losses lm computes for the same settings, Stop pauses, bad settings and a
diverging run show messages (and clear the old run's results), leaving the page pauses a run; Generate
continues 'the red' with the default model and stops at the sentence's end, draws heatmaps of the
right shapes, picks heads beyond a few, and shows an unknown word or a bad weights file as an error
element, not an exception; the downloaded weights upload back and generate the same text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from lm.checkpoint import DEFAULT_WEIGHTS, load
from lm.data import DEFAULT_CORPUS
from lm.train import TrainConfig, Trainer
from playground.generation import DEFAULT
from playground.markdown import shown

HOME = str(Path(__file__).resolve().parents[1] / "playground" / "Home.py")
TIMEOUT = 60  # seconds per run: the machine is shared
DEFAULT_VOCAB = load(DEFAULT_WEIGHTS).model.config.vocab_size
DEFAULT_WORDS = len({w for s in DEFAULT_CORPUS for w in s.split()})  # 45


def open_page(page: str) -> AppTest:
    """The page; Generate with the classic word model (the Shakespeare model, its first choice, has its
    own tests in test_app_text.py)."""
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.switch_page(f"app_pages/{page}.py").run()
    if page == "generate":
        at.radio(key="gen_model").set_value(DEFAULT).run()
    assert not at.exception
    return at


def figures(at: AppTest) -> dict[str, dict]:
    """Every plotly chart on the page, by its title, as the figure JSON sent to the browser."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def small_model(at: AppTest, epochs: int) -> AppTest:
    """A narrow model on the default corpus, so a test trains in a second or two."""
    at.number_input(key="train_d_model").set_value(16).run()
    at.number_input(key="train_d_ff").set_value(32).run()
    return at.number_input(key="train_epochs").set_value(epochs).run()


def train_until_done(at: AppTest, max_ticks: int = 100) -> None:
    for _ in range(max_ticks):
        if not at.session_state["train_session"].running:
            return
        at.run()
    raise AssertionError("training did not end")


# ---------------------------------------------------------------- Train


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
    at.run()
    session = at.session_state["train_session"]
    assert session.running and session.epoch > 0
    at.button(key="train_stop").click().run()
    stopped_at = session.epoch
    assert session.status == "stopped" and not at.exception
    at.run().run()
    assert session.epoch == stopped_at  # no more ticks
    assert at.button(key="train_stop").disabled and at.button(key="train_start").label == "▶ Resume"
    assert at.success and "Stopped at epoch" in at.success[0].value
    at.button(key="train_start").click().run()
    assert session.running and session.epoch > stopped_at
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


# ---------------------------------------------------------------- Generate


def test_generate_continues_a_sentence_with_the_default_model() -> None:
    at = open_page("generate")
    at.text_input(key="gen_prompt").input("the red").run()
    assert not at.exception and not at.error
    text = [m.value for m in at.markdown if m.value.startswith("####")]
    assert text == [
        "#### the red :orange-background[**fox**] :orange-background[**jumps**] :orange-background[**high**]"
    ]
    assert any("predicted the end of the sentence" in c.value for c in at.caption)  # it stopped by itself
    figs = figures(at)
    probs = figs["Next-token distribution at every step (× = chosen)"]["data"]
    assert len(probs[0]["z"]) == 4 and all(len(row) == DEFAULT_VOCAB for row in probs[0]["z"])  # steps x vocab
    assert probs[1]["x"] == ["fox", "jumps", "high", "&lt;eos&gt;"]  # the chosen-token markers
    # The last step is shown first: its query positions are the prompt and the three words generated before it.
    assert figs["Next-token probabilities (top 10); chosen: &lt;eos&gt;"]["data"][0]["y"][-1] == "&lt;eos&gt;"
    attention = figs["layer 1 · head 1"]["data"][0]
    z = attention["z"]
    assert attention["y"] == ["0:the", "1:red", "2:fox", "3:jumps", "4:high"] and attention["x"] == attention["y"]
    assert len(z) == 5 and all(len(row) == 5 for row in z)
    assert all(z[q][k] is None for q in range(5) for k in range(q + 1, 5))  # NaN: the masked future, drawn empty
    assert all(abs(sum(row[: q + 1]) - 1) < 1e-9 for q, row in enumerate(z))  # each query's weights sum to 1
    assert "width" not in figs["layer 1 · head 1"]["layout"]  # it fills its grid cell at any window width
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Same tokens?"] == "yes" and float(metrics["KV cache: ms per token"]) > 0
    caption = next(c.value for c in at.caption if "parameters" in c.value)
    assert f"vocabulary {DEFAULT_WORDS} words (+ `<pad>`, `<eos>`)" in caption


def test_choosing_a_step_shows_its_distribution_and_attention() -> None:
    at = open_page("generate")
    generated = at.session_state["gen_last"][1]
    at.select_slider(key="gen_step").set_value("1 → fox").run()
    assert at.session_state["gen_last"][1] is generated  # inspecting a step does not generate again
    figs = figures(at)
    assert figs["Next-token probabilities (top 10); chosen: fox"]["data"][0]["y"][-1] == "fox"
    attention = figs["layer 1 · head 1"]["data"][0]
    assert attention["x"] == ["0:the", "1:red"] and len(attention["z"]) == 2  # step 1 reads the prompt only
    at.text_input(key="gen_prompt").input("my old").run()  # new steps: the choice goes back to the last step
    assert not at.exception
    assert "Next-token probabilities (top 10); chosen: &lt;eos&gt;" in figures(at)
    assert figures(at)["layer 1 · head 1"]["data"][0]["x"][-1] == "4:often"


def test_more_heads_and_layers_draw_one_heatmap_each() -> None:
    at = small_model(open_page("train"), epochs=2)
    at.number_input(key="train_n_layers").set_value(2).run()
    at.number_input(key="train_n_heads").set_value(2).run()
    at.button(key="train_start").click().run()
    train_until_done(at)
    at.switch_page("app_pages/generate.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception
    titles = [t for t in figures(at) if t.startswith("layer")]
    assert titles == ["layer 1 · head 1", "layer 1 · head 2", "layer 2 · head 1", "layer 2 · head 2"]


def test_beyond_four_heads_the_page_draws_the_chosen_ones() -> None:
    at = small_model(open_page("train"), epochs=2)
    at.number_input(key="train_n_heads").set_value(8).run()
    at.button(key="train_start").click().run()
    train_until_done(at)
    at.switch_page("app_pages/generate.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert [t for t in figures(at) if t.startswith("layer")] == [f"layer 1 · head {h}" for h in (1, 2, 3, 4)]
    at.multiselect(key="gen_heads").set_value(["2", "7", "8"]).run()
    assert not at.exception
    assert [t for t in figures(at) if t.startswith("layer")] == [f"layer 1 · head {h}" for h in (2, 7, 8)]


def test_an_unknown_word_shows_an_error_with_the_vocabulary() -> None:
    at = open_page("generate")
    at.text_input(key="gen_prompt").input("the purple fox").run()
    assert not at.exception
    assert at.error and "'purple'" in shown(at.error[0].value)
    assert f"The vocabulary ({DEFAULT_WORDS} words): a, above" in shown(at.error[0].value)
    at.text_input(key="gen_prompt").input("teh red").run()
    assert "did you mean 'the'" in shown(at.error[0].value)


def test_a_bad_uploaded_file_shows_an_error() -> None:
    at = open_page("generate")
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    at.file_uploader(key="gen_upload").upload("model.safetensors", b"\x00" * 100, "application/octet-stream").run()
    assert not at.exception
    assert at.error and "Cannot use this weights file" in shown(at.error[0].value)
    assert not at.get("plotly_chart")


def test_user_text_in_messages_is_shown_literally_not_as_markdown() -> None:
    """Issue 19, item 11: a file name or a prompt word with Markdown in it is shown as typed, never as bold
    text or a clickable link (the message's Markdown source holds it escaped)."""
    hostile = "**BOLD** [link](https://evil.example)"
    at = open_page("generate")
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    at.file_uploader(key="gen_upload").upload(f"{hostile}.safetensors", b"\x00" * 100, "application/octet-stream")
    at.run()
    assert not at.exception and at.error
    source = at.error[0].value  # the Markdown the page sent: the user's text escaped
    assert "\\*\\*BOLD\\*\\* \\[link\\]\\(https\\:" in source and "**BOLD**" not in source
    at = open_page("generate")
    at.text_input(key="gen_prompt").set_value(f"the {hostile}").run()
    assert not at.exception and at.error
    assert "\\*\\*bold\\*\\*" in at.error[0].value and "](https" not in at.error[0].value


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
    at.switch_page("app_pages/generate.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception and not at.error
    assert any("d_model 16" in c.value for c in at.caption)  # the session's small model, not the default one
    trained_text = [m.value for m in at.markdown if m.value.startswith("####")]
    trained_figures = figures(at)
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    at.file_uploader(key="gen_upload").upload("trained.safetensors", downloaded, "application/octet-stream").run()
    assert not at.exception and not at.error
    assert any("d_model 16" in c.value for c in at.caption)
    assert [m.value for m in at.markdown if m.value.startswith("####")] == trained_text
    uploaded_figures = figures(at)
    for title in ("Next-token distribution at every step (× = chosen)", "layer 1 · head 1"):
        assert uploaded_figures[title]["data"][0]["z"] == trained_figures[title]["data"][0]["z"]


def test_the_train_page_states_the_leaving_rule_and_that_a_reload_loses_the_model() -> None:
    captions = " ".join(c.value for c in open_page("train").caption)
    assert "leaving it for another page pauses the run" in captions and "reloading" in captions


@pytest.mark.parametrize("page", ["graph", "home"])
def test_leaving_for_any_page_pauses_a_run(page: str) -> None:
    at = small_model(open_page("train"), epochs=5000)
    at.button(key="train_start").click().run()
    session = at.session_state["train_session"]
    assert session.running
    at.switch_page(f"app_pages/{page}.py").run()
    stopped_at = session.epoch
    assert session.status == "stopped" and not at.exception
    at.switch_page("app_pages/train.py").run()
    assert session.epoch == stopped_at and at.button(key="train_start").label == "▶ Resume"


def test_leaving_a_running_training_pauses_it_and_generate_uses_its_model() -> None:
    at = small_model(open_page("train"), epochs=5000)
    at.button(key="train_start").click().run()
    session = at.session_state["train_session"]
    assert session.running
    at.switch_page("app_pages/generate.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception and not at.error
    assert session.status == "stopped" and any("d_model 16" in c.value for c in at.caption)
    assert any("paused" in c.value for c in at.caption)
    at.switch_page("app_pages/train.py").run()
    assert at.button(key="train_start").label == "▶ Resume"
    at.number_input(key="train_seed").set_value(1).run()  # changed settings: Start begins a new run
    assert at.button(key="train_start").label == "▶ Start"


def test_home_page_examples_start_training_and_continue_a_prompt() -> None:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.button(key="home_train_example").click().run()
    assert not at.exception
    assert at.title[0].value == "Train"
    assert not at.button(key="train_stop").disabled  # the default run is under way
    assert figures(at)["Loss (cross-entropy)"]["data"][0]["y"]  # and has drawn losses

    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.button(key="home_generate_example").click().run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Generate"
    text = [m.value for m in at.markdown if m.value.startswith("####")]
    assert text == [
        "#### a bright :orange-background[**star**] :orange-background[**shines**] :orange-background[**above**]"
    ]
