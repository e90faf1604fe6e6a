"""The Attention page under Streamlit's AppTest: it opens on the walk-through's sentence at step 1 and shows
one step at a time (picked above it, or by its next/previous buttons), each with its math, its heatmaps
(values written in the cells, from the engine) and its autodiff graph; a new sentence, sizes and heads
redraw it; bad text gives a message and the page keeps running."""

from __future__ import annotations

import json

import torch
from apptest_helpers import HOME
from streamlit.testing.v1 import AppTest

from playground.attention import logic as att
from playground.attention.figures import cell_text
from playground.common.markdown import shown

TIMEOUT = 90  # seconds per run: the machine is shared and the first run loads GPT-2's tokenizer


def open_attention() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.switch_page("attention/view.py").run()
    assert not at.exception
    return at


def heatmaps(at: AppTest) -> list[dict]:
    """Each plotly chart's trace (z, text, x, y) and title, in page order."""
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [{**f["data"][0], "title": f["layout"]["title"]["text"]} for f in figures]


def every_step(at: AppTest) -> list[dict]:
    """Each step as the page shows it when picked, its graph opened: its header, graphs, heatmaps and captions."""
    shown_steps = []
    for number in att.STEP_NAMES:
        at.session_state[f"att_graph_open_{number}"] = True  # steps 4-6 open with their graph collapsed
        at.segmented_control(key="att_step").set_value(number).run()
        assert not at.exception
        shown_steps.append(
            {
                "headers": [h.value for h in at.header],
                "graphs": [g.proto.spec for g in at.get("graphviz_chart")],
                "heatmaps": heatmaps(at),
                "captions": [c.value for c in at.caption],
                "latex": len(at.get("latex")),
            }
        )
    return shown_steps


def test_one_step_at_a_time_with_engine_values_math_and_graphs():
    at = open_attention()
    assert [h.value for h in at.header] == ["1. Scores without trainable weights"]  # step 1 first, alone
    assert len(heatmaps(at)) == 2
    steps = every_step(at)
    assert all(len(s["headers"]) == 1 and s["latex"] == 1 and len(s["graphs"]) == 1 for s in steps)
    assert [s["headers"][0] for s in steps] == [
        "1. Scores without trainable weights",
        "2. Normalization: dividing by the sum vs softmax",
        "3. Context vectors: the weighted sum of embeddings",
        "4. Trainable W_q, W_k, W_v and scaled scores",
        "5. The causal mask",
        "6. Several heads, concatenated and projected",
    ]
    graphs = [s["graphs"][0] for s in steps]
    assert all(f"step {n}" in dot for n, dot in enumerate(graphs, 1))
    assert "masked_fill" in graphs[4] and "concat" in graphs[5]
    # the editable table starts at the seeded embeddings, and the scores are their dot products
    x = torch.tensor(at.dataframe[0].value.to_numpy(), dtype=torch.float64)
    torch.testing.assert_close(x, att.default_embeddings(6, att.AttentionSettings()))
    charts = [chart for s in steps for chart in s["heatmaps"]]
    scores = next(c for c in charts if c["title"] == "ω = x xᵀ (scores)")
    assert scores["y"] == ["0:Your", "1:␣journey", "2:␣starts", "3:␣with", "4:␣one", "5:␣step"]
    assert scores["x"] == scores["y"]
    assert scores["text"] == [[cell_text(v) for v in row] for row in (x @ x.T).tolist()]
    masked = next(c for c in charts if c["title"] == "masked scaled scores")
    assert masked["text"][0][1:] == ["−∞"] * 5 and masked["z"][0][1] is None
    assert sum(c["title"].startswith("head ") for c in charts) == 2
    captions = [c for s in steps for c in s["captions"]]
    assert "6 GPT-2 tokens: Your · ␣journey · ␣starts · ␣with · ␣one · ␣step" in captions
    assert ":material/check_circle: every weight above the diagonal is exactly 0" in captions


def test_the_next_and_previous_buttons_walk_through_the_steps():
    at = open_attention()
    next(b for b in at.button if b.label == "2. Softmax →").click().run()
    assert at.segmented_control(key="att_step").value == 2 and at.header[0].value.startswith("2. ")
    next(b for b in at.button if b.label == "← 1. Scores").click().run()
    assert at.header[0].value.startswith("1. ") and not any(b.label.startswith("←") for b in at.button)
    at.segmented_control(key="att_step").set_value(6).run()
    assert not any(b.label.endswith("→") for b in at.button)


def test_a_new_sentence_sizes_and_heads_redraw_it():
    at = open_attention()
    at.text_input(key="att_text").set_value("the cat and the dog").run()
    at.number_input(key="att_dim").set_value(5).run()
    at.number_input(key="att_heads").set_value(3).run()
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value.columns) == ["e1", "e2", "e3", "e4", "e5"]
    assert list(at.dataframe[0].value.index) == ["0:the", "1:␣cat", "2:␣and", "3:␣the", "4:␣dog"]
    at.segmented_control(key="att_step").set_value(6).run()
    assert not at.get("graphviz_chart")  # its graph is collapsed, and laid out only once opened
    at.session_state["att_graph_open_6"] = True
    at.run()
    charts = heatmaps(at)
    assert [c["title"] for c in charts if c["title"].startswith("head ")] == ["head 1: α", "head 2: α", "head 3: α"]
    out = next(c for c in charts if c["title"] == "out = concat · W_o")
    assert len(out["x"]) == 5 and len(out["y"]) == 5  # projected back to d = 5
    assert "W_q3" in at.get("graphviz_chart")[0].proto.spec
    at.toggle(key="att_backward").set_value(True).run()  # every graph gains its backward pass
    graphs = [s["graphs"][0] for s in every_step(at)]
    assert all("backward (gradients)" in dot and "∂L/∂x" in dot for dot in graphs)
    assert "∂L/∂W_o" in graphs[5] and "∂L/∂W_q3" in graphs[5]
    at.segmented_control(key="att_step").set_value(3).run()
    at.selectbox(key="att_focus").set_value("4:␣dog").run()  # step 3 writes out the last token's sum
    assert not at.exception
    titles = [c["title"] for c in heatmaps(at)]
    assert "α[4:␣dog, j] · x_j (terms)" in titles and "z of 4:␣dog (column sums)" in titles
    at.text_input(key="att_text").set_value("a short one").run()  # fewer tokens: the followed one resets
    assert not at.exception and not at.error
    assert at.selectbox(key="att_focus").value in at.selectbox(key="att_focus").options


def test_bad_text_gives_a_message_and_the_page_keeps_running():
    at = open_attention()
    at.text_input(key="att_text").set_value("").run()
    assert not at.exception
    assert "the text is empty" in shown(at.error[0].value) and not at.header
    at.text_input(key="att_text").set_value("one two three four five six seven eight nine ten eleven").run()
    assert not at.exception
    assert "11 GPT-2 tokens; the limit is 10" in shown(at.error[0].value) and not at.header
    at.text_input(key="att_text").set_value("Hello").run()
    assert "single token" in shown(at.error[0].value)
    at.text_input(key="att_text").set_value("<script> **bold**").run()  # shown literally
    assert not at.exception and not at.error
    assert at.caption[0].value == "6 GPT-2 tokens: \\< · script · \\> · ␣\\*\\* · bold · \\*\\*"
    at.text_input(key="att_text").set_value("Attention is all you need").run()  # and it recovers
    assert not at.exception and not at.error and len(at.header) == 1


def test_the_home_card_opens_the_page():
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    assert ":material/grid_on: Attention" in [s.value for s in at.subheader]
    at.button(key="home_attention_example").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Attention"] and len(at.header) == 1


def test_sizes_that_do_not_fit_give_a_message():
    at = open_attention()
    at.number_input(key="att_dk").set_value(5).run()
    at.number_input(key="att_heads").set_value(4).run()
    assert not at.exception and not at.header
    assert "4 heads × d_k 5 = 20 columns" in shown(at.error[0].value)
    at.number_input(key="att_heads").set_value(3).run()  # 15 columns fit
    assert not at.exception and not at.error and len(at.header) == 1
