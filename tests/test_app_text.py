"""The text-model parts of the Train and Generate pages, headless with AppTest: the Generate page opens
on the bundled Shakespeare model and draws chips, top-k bars and every layer's and head's attention;
a character it has never seen is an error element; the Train page's Language model mode trains a tiny
run live (both losses on one chart, the lr curve, samples), stops, resumes, keeps runs for comparison,
and its model becomes the Generate page's "trained in this session".
"""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from playground.markdown import shown
from playground.text_generation import SHAKESPEARE_MODEL

HOME = str(Path(__file__).resolve().parents[1] / "playground" / "Home.py")
TIMEOUT = 90


def figures(at: AppTest) -> dict[str, dict]:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception
    return at


def test_generate_opens_on_the_shakespeare_model_with_attention_for_every_head() -> None:
    at = open_page("generate")
    at.number_input(key="gen_text_max_new").set_value(8).run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Shakespeare (characters): 156,224 parameters") for c in at.caption)
    chips = next(m.value for m in at.markdown if m.value.startswith("<span"))
    assert chips.count("#ffe0b2") == 8  # eight new tokens as chips
    figs = figures(at)
    heads = [t for t in figs if t.startswith("layer")]
    assert heads == [f"layer {layer} · head {head}" for layer in (1, 2, 3) for head in (1, 2, 3, 4)]
    z = figs["layer 1 · head 1"]["data"][0]["z"]
    assert all(z[q][k] is None for q in range(len(z)) for k in range(q + 1, len(z)))  # the masked future
    assert all(abs(sum(row[: q + 1]) - 1) < 1e-5 for q, row in enumerate(z))
    assert "width" not in figs["layer 1 · head 1"]["layout"]  # fills its grid cell at any window width
    assert len(figs["Next-token distribution at every step (× = chosen)"]["data"][0]["z"]) == 8
    at.text_area(key="gen_text_prompt").input("Caf\u00e9 society").run()
    assert not at.exception
    assert at.error and "not in the vocabulary: 'é'" in shown(at.error[0].value)


def test_language_model_mode_trains_live_and_feeds_generate() -> None:
    at = open_page("train")
    at.segmented_control(key="train_mode").set_value("Language model").run()
    for key, value in {"n_layers": 1, "d_model": 32, "context": 16, "batch_size": 4, "steps": 6, "eval_every": 3,
                       "sample_every": 3}.items():  # fmt: skip
        at.number_input(key=f"train_lm_{key}").set_value(value).run()
    at.button(key="train_lm_start").click().run()
    assert not at.exception and not at.error
    session = at.session_state["train_lm_session"]
    for _ in range(40):
        if not session.running:
            break
        at.run()
    assert session.status == "finished" and session.run.val_steps == [3, 6]
    figs = figures(at)
    loss = figs["Loss (cross-entropy, nats per token)"]["data"]
    assert [t["name"] for t in loss] == ["training", "validation"] and loss[0]["x"] == [1, 2, 3, 4, 5, 6]
    assert len(figs["Learning rate (warmup, then cosine)"]["data"][0]["y"]) == 6
    assert any(c.value.startswith("step 6: ") for c in at.code)  # the samples, as a list
    assert at.dataframe  # the comparison table
    at.toggle(key="train_lm_prepare").set_value(True).run()
    assert not at.exception and len(at.get("download_button")) == 1  # the run's checkpoint
    at.switch_page("app_pages/generate.py").run()
    at.radio(key="gen_model").set_value("Trained in this session").run()
    assert not at.exception
    assert any("language-model run (finished, step 6)" in c.value for c in at.caption)
    assert [t for t in figures(at) if t.startswith("layer")] == [f"layer 1 · head {h}" for h in (1, 2, 3, 4)]

    # A second run: "Compare runs" overlays the last two by default (issue 18, finding 2: it kept run 1 only).
    at.switch_page("app_pages/train.py").run()
    at.button(key="train_lm_start").click().run()
    for _ in range(40):
        if not session.running:
            break
        at.run()
    assert not at.exception and session.status == "finished" and len(session.runs) == 2
    overlay = next(m for m in at.multiselect if m.label == "Runs to overlay")
    assert len(overlay.value) == 2
    compare = next(spec for title, spec in figures(at).items() if title.startswith("Validation loss of"))
    assert len(compare["data"]) == 2


def test_an_uploaded_checkpoint_generates_and_a_broken_one_is_a_message() -> None:
    at = open_page("generate")
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    data = SHAKESPEARE_MODEL.read_bytes()
    at.file_uploader(key="gen_upload").upload("mine.safetensors", data, "application/octet-stream").run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Upload a weights file: 156,224 parameters") for c in at.caption)
    at.file_uploader(key="gen_upload").upload("cut.safetensors", data[:-50], "application/octet-stream").run()
    assert not at.exception and at.error and "'cut.safetensors'" in shown(at.error[0].value)


def test_settings_that_do_not_fit_are_a_message_and_leaving_the_page_pauses_a_run() -> None:
    at = open_page("train")
    at.segmented_control(key="train_mode").set_value("Language model").run()
    at.number_input(key="train_lm_n_heads").set_value(3).run()
    at.button(key="train_lm_start").click().run()
    assert not at.exception and at.error and "must divide d_model (64)" in shown(at.error[0].value)
    at.number_input(key="train_lm_n_heads").set_value(4).run()
    at.number_input(key="train_lm_steps").set_value(5000).run()
    at.button(key="train_lm_start").click().run()
    assert at.session_state["train_lm_session"].running
    at.switch_page("app_pages/home.py").run()
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
