"""The Generate page headless with Streamlit's AppTest: one view for every model. It opens on the bundled
Shakespeare model (token chips, top-k bars, the attention of every head of the layer picked; a character it has never
seen is an error element); the classic word model continues 'the red' and stops at the sentence's end,
with heatmaps of the right shapes and the KV cache compared; an unknown word, a bad or hostile upload are
messages shown literally; an uploaded checkpoint generates.
"""

from __future__ import annotations

from apptest_helpers import open_page, svg_charts
from streamlit.testing.v1 import AppTest

from lm.checkpoint import DEFAULT_WEIGHTS, load
from lm.data import DEFAULT_CORPUS
from playground.common.markdown import shown
from playground.generate.logic import DEFAULT, FREE_TEXT, SHAKESPEARE_MODEL

DEFAULT_VOCAB = load(DEFAULT_WEIGHTS).model.config.vocab_size
DEFAULT_WORDS = len({w for s in DEFAULT_CORPUS for w in s.split()})  # 45


def weight(hover: str) -> float:
    """An attention cell's weight from its hover text ('query 2:fox · key 0:the · weight 0.20')."""
    return float(hover.rsplit(" ", 1)[1])


def open_classic() -> AppTest:
    """The Generate page with the classic word model (the Shakespeare model is its first choice)."""
    at = open_page("generate")
    at.radio(key="gen_model").set_value(DEFAULT).run()
    assert not at.exception
    return at


# ---------------------------------------------------------------- the classic word model


def test_generate_continues_a_sentence_with_the_default_model() -> None:
    at = open_classic()
    at.text_input(key="gen_prompt").input("the red").run()
    assert not at.exception and not at.error
    text = [m.value for m in at.markdown if m.value.startswith("####")]
    assert text == [
        "#### the red :orange-background[**fox**] :orange-background[**jumps**] :orange-background[**high**]"
    ]
    assert any("predicted the end of the sentence" in c.value for c in at.caption)  # it stopped by itself
    charts = svg_charts(at)
    probs = charts["Next-token distribution at every step (× = chosen)"]
    assert probs.grid == (4, DEFAULT_VOCAB) and len(probs.y) == 4  # steps x vocabulary
    chosen = [hover.split("'")[1] for hover in probs.marked()]  # "step 1 → fox · 'fox': 97.10%"
    assert chosen == ["fox", "jumps", "high", "<eos>"]
    # The last step is shown first: its query positions are the prompt and the three words generated before it.
    assert charts["Next-token probabilities (top 10); chosen: <eos>"].cells[0, 0].startswith("<eos>: ")  # on top
    attention = charts["layer 1 · head 1"]
    assert attention.y == ["0:the", "1:red", "2:fox", "3:jumps", "4:high"] and attention.x == attention.y
    assert set(attention.cells) == {(q, k) for q in range(5) for k in range(q + 1)}  # the masked future: empty
    for q in range(5):  # each query's weights sum to 1 (hover text: two decimals each)
        assert abs(sum(weight(attention.cells[q, k]) for k in range(q + 1)) - 1) <= 0.005 * (q + 1)
    assert attention.width <= 320  # two side by side in a 1,024 px window
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Same tokens?"] == "yes" and float(metrics["KV cache: ms per token"]) > 0
    caption = next(c.value for c in at.caption if "parameters" in c.value)
    assert f"vocabulary {DEFAULT_WORDS} words (+ `<pad>`, `<eos>`)" in caption


def test_choosing_a_step_shows_its_distribution_and_attention() -> None:
    at = open_classic()
    generated = at.session_state["gen_last"][1]
    at.select_slider(key="gen_step").set_value("1 → fox").run()
    assert at.session_state["gen_last"][1] is generated  # inspecting a step does not generate again
    charts = svg_charts(at)
    assert charts["Next-token probabilities (top 10); chosen: fox"].cells[0, 0].startswith("fox: ")
    attention = charts["layer 1 · head 1"]
    assert attention.x == ["0:the", "1:red"] and len(attention.y) == 2  # step 1 reads the prompt only
    at.text_input(key="gen_prompt").input("my old").run()  # new steps: the choice goes back to the last step
    assert not at.exception
    assert "Next-token probabilities (top 10); chosen: <eos>" in svg_charts(at)
    assert svg_charts(at)["layer 1 · head 1"].x[-1] == "4:often"


def test_an_unknown_word_shows_an_error_with_the_vocabulary() -> None:
    at = open_classic()
    at.text_input(key="gen_prompt").input("the purple fox").run()
    assert not at.exception
    assert at.error and "'purple'" in shown(at.error[0].value)
    assert f"The vocabulary ({DEFAULT_WORDS} words): a, above" in shown(at.error[0].value)
    at.text_input(key="gen_prompt").input("teh red").run()
    assert "did you mean 'the'" in shown(at.error[0].value)


def test_a_bad_uploaded_file_shows_an_error() -> None:
    at = open_classic()
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    at.file_uploader(key="gen_upload").upload("model.safetensors", b"\x00" * 100, "application/octet-stream").run()
    assert not at.exception
    assert at.error and "Cannot use this weights file" in shown(at.error[0].value)
    assert not svg_charts(at)


def test_user_text_in_messages_is_shown_literally_not_as_markdown() -> None:
    """Issue 19, item 11: a file name or a prompt word with Markdown in it is shown as typed, never as bold
    text or a clickable link (the message's Markdown source holds it escaped)."""
    hostile = "**BOLD** [link](https://evil.example)"
    at = open_classic()
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    at.file_uploader(key="gen_upload").upload(f"{hostile}.safetensors", b"\x00" * 100, "application/octet-stream")
    at.run()
    assert not at.exception and at.error
    source = at.error[0].value  # the Markdown the page sent: the user's text escaped
    assert "\\*\\*BOLD\\*\\* \\[link\\]\\(https\\:" in source and "**BOLD**" not in source
    at = open_classic()
    at.text_input(key="gen_prompt").set_value(f"the {hostile}").run()
    assert not at.exception and at.error
    assert "\\*\\*bold\\*\\*" in at.error[0].value and "](https" not in at.error[0].value


# ---------------------------------------------------------------- the bundled Shakespeare model and uploads


def test_generate_opens_on_the_shakespeare_model_with_attention_for_every_head_of_a_layer() -> None:
    at = open_page("generate")
    at.number_input(key="gen_text_max_new").set_value(8).run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Shakespeare (characters): 1,808,448 parameters") for c in at.caption)
    chips = next(m.value for m in at.markdown if m.value.startswith("<span"))
    assert chips.count("#ffe0b2") == 8  # eight new tokens as chips
    charts = svg_charts(at)
    heads = [t for t in charts if t.startswith("layer")]
    assert heads == ["layer 1 · head 1", "layer 1 · head 2", "layer 1 · head 3"]  # one layer at a time
    attention = charts["layer 1 · head 1"]
    t = len(attention.cells) and max(q for q, _ in attention.cells) + 1
    assert set(attention.cells) == {(q, k) for q in range(t) for k in range(q + 1)}  # the masked future: empty
    assert all(abs(sum(weight(attention.cells[q, k]) for k in range(q + 1)) - 1) <= 0.005 * (q + 1) for q in range(t))
    assert all(charts[h].width <= 320 and charts[h].height <= 420 for h in heads)  # two a row, about square
    assert len(charts["Next-token distribution at every step (× = chosen)"].marks) == 8  # a row a step
    at.segmented_control(key="gen_text_layer").set_value(3).run()  # the fourth layer
    assert not at.exception
    assert [t for t in svg_charts(at) if t.startswith("layer")] == [f"layer 4 · head {h}" for h in (1, 2, 3)]
    at.text_area(key="gen_text_prompt").input("Caf\u00e9 society").run()
    assert not at.exception
    assert at.error and "not in the vocabulary: 'é'" in shown(at.error[0].value)


def test_an_uploaded_checkpoint_generates_and_a_broken_one_is_a_message() -> None:
    at = open_page("generate")
    at.radio(key="gen_model").set_value("Upload a weights file").run()
    data = SHAKESPEARE_MODEL.read_bytes()
    at.file_uploader(key="gen_upload").upload("mine.safetensors", data, "application/octet-stream").run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Upload a weights file: 1,808,448 parameters") for c in at.caption)
    at.file_uploader(key="gen_upload").upload("cut.safetensors", data[:-50], "application/octet-stream").run()
    assert not at.exception and at.error and "'cut.safetensors'" in shown(at.error[0].value)


def test_a_bundled_models_generation_is_made_once_for_every_session() -> None:
    """A new session's first view reuses the generation any session made with the same settings (issue 21,
    item 3: the Generate page's first heatmap), while other settings generate anew."""
    first, second = open_page("generate"), open_page("generate")
    assert first.session_state["gen_text_last"][1] is second.session_state["gen_text_last"][1]
    second.number_input(key="gen_text_max_new").set_value(20).run()
    assert not second.exception
    assert len(second.session_state["gen_text_last"][1].trace.steps) == 20
    assert len(first.session_state["gen_text_last"][1].trace.steps) == FREE_TEXT.new_tokens  # the other keeps its own
