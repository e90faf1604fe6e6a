"""The Home page: its cards are data (home/logic.py) whose examples prepare their page in a session's state,
and headless with AppTest each example opens its page ready: training under way, a prompt continued."""

from __future__ import annotations

import time

from apptest_helpers import HOME, PAGES, ROOT, figures
from streamlit.testing.v1 import AppTest

from playground.home.logic import CARDS, apply

TIMEOUT = 60  # seconds per run: the machine is shared


def test_every_card_opens_a_page_of_the_router_and_its_example_prepares_it() -> None:
    assert sorted(card.page for card in CARDS) == sorted(f"{page}/view.py" for page in PAGES if page != "home")
    assert all((ROOT / "playground" / card.page).is_file() for card in CARDS)
    state: dict = {}
    for card in CARDS:
        if not card.trains:
            apply(card, state)
    assert state["saved_graph_expression"].startswith("softmax(q @") and state["tok_autotrain"] is True
    assert (state["saved_gen_model"], state["saved_gen_prompt"]) == ("Classic (words)", "a bright")
    apply(next(card for card in CARDS if card.trains), state)
    assert state["train_session"].running  # the default run, under way


def test_home_page_examples_start_training_and_continue_a_prompt() -> None:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.button(key="home_train_example").click().run()
    assert not at.exception
    assert at.title[0].value == "Train"
    assert not at.button(key="train_stop").disabled  # the default run is under way
    deadline = time.monotonic() + TIMEOUT  # and draws losses: the run trains in its own process, each rerun a tick
    while not figures(at)["Loss (cross-entropy)"]["data"][0]["y"]:
        assert time.monotonic() < deadline, f"no losses drawn within {TIMEOUT} s"
        at.run()

    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.button(key="home_generate_example").click().run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Generate"
    text = [m.value for m in at.markdown if m.value.startswith("####")]
    assert text == [
        "#### a bright :orange-background[**star**] :orange-background[**shines**] :orange-background[**above**]"
    ]
