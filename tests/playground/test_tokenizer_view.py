"""The Tokenizer page under Streamlit's AppTest: chips and counts for GPT-2 and the word-level tokenizer,
training a BPE (then shown and explored), the merge explorer and its chart, and bad input as messages."""

from __future__ import annotations

import json

import pytest
from apptest_helpers import HOME
from streamlit.testing.v1 import AppTest

from playground.common.markdown import shown

TIMEOUT = 60  # seconds per run: the machine is shared


def open_tokenizer() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.switch_page("tokenizer/view.py").run()
    assert not at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chips(at: AppTest) -> list[str]:
    """The html bodies drawn with st.html (the chip rows), in page order."""
    return [el.proto.body for el in at.get("html")]


def test_gpt2_chips_and_counts():
    at = open_tokenizer()
    assert at.selectbox(key="tok_choice").value.startswith("GPT-2")
    at.text_area(key="tok_text").set_value("Hello world 😀").run()
    assert metrics(at) == {"Characters": "13", "Bytes (UTF-8)": "16", "Tokens": "4", "Bytes per token": "4.00"}
    body = chips(at)[0]
    assert body.count('class="tok-chip"') == 4
    assert 'title="id 15496 · bytes 48 65 6c 6c 6f"' in body and "\u2423world" in body


def test_hostile_text_is_escaped():
    at = open_tokenizer()
    at.text_area(key="tok_text").set_value('<script>alert(1)</script> "x"').run()
    body = chips(at)[0]
    assert "<script" not in body and "</script" not in body and "&lt;" in body and "&quot;" in body


def test_word_level_tokenizer_and_its_unknown_words():
    at = open_tokenizer()
    word = next(o for o in at.selectbox(key="tok_choice").options if o.startswith("Word"))
    at.selectbox(key="tok_choice").set_value(word).run()
    at.text_area(key="tok_text").set_value("the red fox").run()
    assert not at.exception and not at.error
    assert metrics(at)["Tokens"] == "3"
    at.text_area(key="tok_text").set_value("the zebra").run()
    assert "zebra" in shown(at.error[0].value) and "GPT-2" in shown(at.error[0].value)


def test_train_on_the_story_sample_then_explore_and_download():
    at = open_tokenizer()
    at.slider(key="tok_vocab").set_value(300).run()
    at.button(key="tok_train").click().run()
    assert not at.exception
    assert at.selectbox(key="tok_choice").value.startswith("Trained #1: vocab 300, 43 merges")
    assert "43 merges" in at.success[0].value
    k = at.slider(key="tok_k")
    assert (k.min, k.max, k.value) == (1, 43, 10)
    k.set_value(1).run()
    first = next(md.value for md in at.markdown if md.value.startswith("Merge **1**"))
    assert "id 256" in first and "times when it was chosen" in first
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    ys = spec["data"][0]["y"]  # more merges, longer tokens: the curve never falls on the text it learned from
    assert (
        spec["layout"]["title"]["text"] == "Bytes per token of the training text against merges"
        and ys == sorted(ys)
        and ys[-1] > 1.5 * ys[0]
    )
    assert len(at.get("download_button")) == 1


@pytest.mark.parametrize(
    ("pasted", "message"),
    [("", "the pasted text is empty"), ("x" * 600_000, "at most 500,000")],
)
def test_bad_corpora_are_messages(pasted, message):
    at = open_tokenizer()
    at.radio(key="tok_source").set_value("pasted text").run()
    at.text_area(key="tok_pasted").set_value(pasted).run()
    at.button(key="tok_train").click().run()
    assert not at.exception
    assert message in shown(at.error[0].value)


def test_home_card_trains_at_once():
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.button(key="home_tokenizer_example").click().run()
    assert not at.exception
    assert at.selectbox(key="tok_choice").value.startswith("Trained #1: vocab 400")
