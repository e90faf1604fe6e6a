"""The Home page's content as data (no st.* here): one card per page, saying what it teaches, with a
one-click example: the widget values it presets on its page, the state it sets, and whether it starts
the default training run. `apply` does it all on a session's state, so it is tested with a dict.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field

from playground.common.state import preset
from playground.generate.logic import DEFAULT, GEN_MODEL, GEN_PROMPT
from playground.graph.logic import EXAMPLES, example_inputs
from playground.systems.logic import Settings
from playground.train.logic import MEMORIZE, session_of
from playground.train.modes import MemorizeSettings

GENERATE_EXAMPLE = "a bright"  # the first two words of a default-corpus sentence


@dataclass(frozen=True)
class Card:
    """One page on the Home page, and its example."""

    page: str  # the page script the example opens (as Home.py's st.Page names it)
    title: str
    icon: str
    text: str  # Markdown: what the page teaches
    button: str
    key: str  # the button's widget key
    caption: str  # what the example does
    presets: dict = field(default_factory=dict)  # persistent widgets of that page, set before it opens
    state: dict = field(default_factory=dict)  # plain state it reads when it opens
    trains: bool = False  # the example starts (or resumes) the default training run


CARDS = [
    Card(
        "graph/view.py", "Graph", ":material/account_tree:",
        "Type any expression and see its **forward graph** and the **backward graph** that `gradients()` "
        "builds from it: reverse-mode autodiff is just more graph. Evaluate it, compare every gradient with "
        "`torch.autograd`, and differentiate a gradient again.",
        "Try: one attention head", "home_graph_example", f"`{EXAMPLES['attention head'][0]}`",
        presets=example_inputs("attention head"),
    ),
    Card(
        "train/view.py", "Train", ":material/show_chart:",
        "Train a small transformer whose every forward and backward pass is an `autodiff` graph, and watch "
        "the loss fall live while it learns to complete ten sentences from their first two words; or, in the "
        "**Language model** mode, train on Tiny Shakespeare or your own text and compare runs.",
        "Try: train the default model", "home_train_example", "SGD, lr 0.05, d_model 64, 1 layer, 1 head",
        trains=True,
    ),
    Card(
        "generate/view.py", "Generate", ":material/edit_note:",
        "Type a prompt and watch a model continue it — the bundled character-level Shakespeare model, the "
        "classic word model or your own: the probability of every next token at each step, and what each "
        "attention head looked at.",
        f"Try: continue “{GENERATE_EXAMPLE}”", "home_generate_example", "with the pretrained default model",
        presets={GEN_MODEL: DEFAULT, GEN_PROMPT: GENERATE_EXAMPLE},
    ),
    Card(
        "tokenizer/view.py", "Tokenizer", ":material/text_fields:",
        "See text as the model sees it: GPT-2's byte-level BPE tokens as coloured chips. Train your own BPE "
        "and step through its merges, watching the bytes per token grow.",
        "Try: train a BPE on five stories", "home_tokenizer_example", "vocabulary 400, with <|endoftext|>",
        state={"tok_autotrain": True},  # the Tokenizer page trains on its story sample at once
    ),
    Card(
        "attention/view.py", "Attention", ":material/grid_on:",
        "Build self-attention in six steps on a sentence you type: dot-product scores, softmax, context "
        "vectors, trainable queries, keys and values, the causal mask and several heads, each as heatmaps "
        "with its math and its autodiff graph.",
        "Try: attention step by step", "home_attention_example", "“Your journey starts with one step”, 3-d embeddings",
    ),
    Card(
        "systems/view.py", "Systems", ":material/speed:",
        "Profile one training step **node by node**: the time and FLOPs of every op, each matmul against this "
        "machine's peak, and how far the step is from its matmul floor. Flip a plan toggle (packed attention, "
        "fused backward nodes, generated code, freed memory) and see what it changes.",
        "Try: profile a training step", "home_systems_example", "gpt, 2 layers, d_model 64, context 64, batch 8",
        presets={f"sys_{name}": getattr(Settings(), name) for name in ("preset", "n_layers", "n_heads", "d_model",
                                                                         "context", "batch")},
        state={"sys_autorun": True},  # the Systems page profiles at once
    ),
]  # fmt: skip


def apply(card: Card, state: MutableMapping) -> None:
    """Prepare the card's example in a session's state, before its page opens."""
    for key, value in card.presets.items():
        preset(state, key, value)
    state.update(card.state)
    if card.trains:
        session_of(state, MEMORIZE).start_or_resume(MemorizeSettings())
