"""Self-attention built step by step, on a sentence the learner types: the logic of the Attention page.

The classic walk-through (scores without weights, normalization, context vectors, trainable W_q/W_k/W_v,
the causal mask, several heads) as `autodiff` graphs (graphs.py) run by our `Evaluator`: the inputs'
bounds and seeded values, and each step's text and checks, are here. Each `Step` holds its matrices
(values and labels, for heatmaps), its line of math and the DOT of its graph. No st.* here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from lm.tokenizers import BPETokenizer
from playground.attention.graphs import Backward, Graphs, backward_passes, build_graphs

DEFAULT_TEXT = "Your journey starts with one step"  # the sentence of the classic walk-through
MAX_CHARS = 200  # a sentence, not a document: GPT-2's tokenizer is fed at most this much
MAX_TOKENS = 10  # T x T heatmaps with a value in every cell stay readable in a 1024 px window
DIM_RANGE = (2, 8)  # embedding size: 3 by default, as in the walk-through; 8 columns still fit
DK_RANGE = (1, 8)  # each head's query/key/value size
HEADS_RANGE = (1, 4)  # heads of step 6; four heatmaps still fit two rows of a narrow window
MAX_ABS_VALUE = 100.0  # an edited embedding beyond this makes softmax one-hot and the lesson unreadable
SEED_RANGE = (0, 2**31 - 1)
MAX_CONCAT = 16  # heads x d_k: step 6's concatenation keeps ~30 px per cell in a 1024 px window


# the page's step selector, by step number (build_steps returns the steps in this order)
STEP_NAMES = {1: "Scores", 2: "Softmax", 3: "Context vectors", 4: "W_q, W_k, W_v", 5: "Causal mask", 6: "Heads"}


class AttentionInputError(ValueError):
    """A bad sentence, size or embedding; the message says what was wrong and how to fix it."""


@dataclass(frozen=True)
class AttentionSettings:
    """What the learner picks besides the sentence and the embeddings' values."""

    dim: int = 3  # embedding size d
    d_k: int = 2  # query/key/value size per head (the walk-through's d_out = 2)
    heads: int = 2  # heads of step 6
    seed: int = 123  # seeds the default embeddings and every weight matrix

    def check(self) -> None:
        for name, value, (low, high) in [
            ("embedding size", self.dim, DIM_RANGE),
            ("d_k", self.d_k, DK_RANGE),
            ("number of heads", self.heads, HEADS_RANGE),
            ("seed", self.seed, SEED_RANGE),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise AttentionInputError(f"the {name} must be a whole number from {low} to {high}, got {value!r}")
        if self.heads * self.d_k > MAX_CONCAT:
            raise AttentionInputError(
                f"{self.heads} heads × d_k {self.d_k} = {self.heads * self.d_k} columns in step 6's concatenation; "
                f"at most {MAX_CONCAT} fit the window with their values: fewer heads or a smaller d_k"
            )


@dataclass
class Matrix:
    """One heatmap: values (rows x columns), axis labels, and how to colour it."""

    title: str  # e.g. "ω = x xᵀ (attention scores)"
    values: torch.Tensor  # float64 (rows, columns); -inf where masked
    rows: list[str]
    columns: list[str]
    kind: str  # "scores" (any sign, diverging colours), "weights" (0..1), "vectors" (any sign)
    note: str = ""  # a caption under it


@dataclass
class Step:
    """One step of the walk-through: its matrices, math, explanation and graph."""

    number: int
    title: str
    math: str  # one line of LaTeX
    text: str  # markdown: what it does and why
    matrices: list[Matrix]
    dot: str  # the step's expression as an autodiff graph (forward, with values)
    facts: list[str] = field(default_factory=list)  # checks the learner can read ("every row sums to 1")
    backward: Backward | None = None  # with the backward pass, when asked for


def tokenize(text: str, tokenizer: BPETokenizer) -> tuple[list[int], list[str]]:
    """GPT-2 ids and visible labels of `text`, within the page's bounds; raises AttentionInputError."""
    if not isinstance(text, str) or not text.strip():
        raise AttentionInputError("type a sentence: the text is empty")
    if len(text) > MAX_CHARS:
        raise AttentionInputError(f"the text has {len(text)} characters; the limit is {MAX_CHARS}: shorten it")
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise AttentionInputError("the text is a single token: type at least two words so tokens can attend")
    if len(ids) > MAX_TOKENS:
        raise AttentionInputError(
            f"the text is {len(ids)} GPT-2 tokens; the limit is {MAX_TOKENS} (so every heatmap fits the window "
            "with its values): shorten it"
        )
    return ids, [tokenizer.token_str(i) for i in ids]


def axis_labels(tokens: list[str]) -> list[str]:
    """Unique tick labels: a sentence may repeat a token ("the ... the"), and a category axis would merge them."""
    return [f"{i}:{tok}" for i, tok in enumerate(tokens)]


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    # two decimals, like the walk-through's tables: the values shown are exactly the values used
    values = low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)
    return values.round(decimals=2)


def default_embeddings(n_tokens: int, settings: AttentionSettings) -> torch.Tensor:
    """(T, d) seeded embeddings in [0, 1), like the walk-through's table (all positive: see step 2)."""
    settings.check()
    generator = torch.Generator().manual_seed(settings.seed)
    return _uniform(generator, (n_tokens, settings.dim), 0.0, 1.0)


def weight_matrices(settings: AttentionSettings) -> dict[str, torch.Tensor]:
    """The seeded 'trainable' matrices: W_q, W_k, W_v of step 4 (d x d_k), one set per head of step 6,
    and the output projection W_o (heads * d_k x d). Values in [-1, 1), two decimals."""
    settings.check()
    generator = torch.Generator().manual_seed(settings.seed + 1)  # not the embeddings' stream
    d, dk = settings.dim, settings.d_k
    weights = {name: _uniform(generator, (d, dk), -1.0, 1.0) for name in ("W_q", "W_k", "W_v")}
    for h in range(1, settings.heads + 1):
        for name in ("W_q", "W_k", "W_v"):
            weights[f"{name}{h}"] = _uniform(generator, (d, dk), -1.0, 1.0)
    weights["W_o"] = _uniform(generator, (settings.heads * dk, d), -1.0, 1.0)
    return weights


def check_embeddings(x: object, n_tokens: int, dim: int) -> torch.Tensor:
    """The edited embeddings as a float64 (T, d) tensor; raises AttentionInputError on a wrong shape,
    an empty or non-finite cell, or a value beyond ±MAX_ABS_VALUE."""
    try:
        if isinstance(x, torch.Tensor):
            x = x.detach().to(torch.float64).clone()
        else:  # a copy (an editor's array may be read-only); an empty cell (None) becomes nan
            x = torch.from_numpy(np.array(x, dtype=np.float64))
    except (TypeError, ValueError) as err:
        detail = f" ({err})" if "could not convert" in str(err) else ""
        raise AttentionInputError(
            f"the embeddings must be a table of numbers, one row per token and one column per dimension{detail}"
        ) from None
    if tuple(x.shape) != (n_tokens, dim):
        raise AttentionInputError(
            f"the embeddings are {tuple(x.shape)}; they must be one row per token and one column per dimension, "
            f"({n_tokens}, {dim})"
        )
    bad = (~torch.isfinite(x)).nonzero()
    if len(bad):
        row, col = bad[0].tolist()
        raise AttentionInputError(
            f"the embedding of token {row}, e{col + 1} is empty or not a finite number: type a number"
        )
    too_big = (x.abs() > MAX_ABS_VALUE).nonzero()
    if len(too_big):
        row, col = too_big[0].tolist()
        raise AttentionInputError(
            f"the embedding of token {row}, e{col + 1} is {x[row, col].item():g}; keep values within ±{MAX_ABS_VALUE:g}"
        )
    return x


def _rows_sum_to_one(weights: torch.Tensor) -> str:
    worst = (weights.sum(-1) - 1).abs().max().item()
    return f"every row sums to 1 (largest error {worst:.0e})"


def _scaling_fact(scaled: torch.Tensor, unscaled: torch.Tensor, d_k: int) -> str:
    peak, unscaled_peak = scaled.amax(-1).mean().item(), unscaled.amax(-1).mean().item()
    if d_k == 1:
        return "with d_k = 1 the scaling divides by 1: raise d_k to see what it prevents"
    return (
        f"without the ÷√{d_k}, each row's largest weight would average {unscaled_peak:.3f} instead of "
        f"{peak:.3f}: unscaled, softmax grows peakier as d_k grows"
    )


def _naive_fact(scores: torch.Tensor, naive: torch.Tensor) -> str:
    negative = int((naive < 0).sum())
    if negative or not torch.isfinite(naive).all():
        return f"dividing by the sum gives {negative} negative (or non-finite) weights here: softmax never does"
    if (scores > 0).all():
        return "dividing by the sum works here only because every score is positive: make an embedding negative"
    return "dividing by the sum happens to give no negative weight here, though some scores are negative"


def build_steps(
    text: str,
    x: torch.Tensor | None,
    settings: AttentionSettings,
    tokenizer: BPETokenizer,
    focus: int = 1,
    backward: bool = False,
) -> list[Step]:
    """The six steps for `text`; `x` is the learner's (T, d) embeddings, None for the seeded default;
    `focus` the token whose context vector step 3 writes out (the walk-through's 2nd, "journey");
    `backward` adds each step's backward graph.
    Raises AttentionInputError for a bad sentence, setting, embedding or focus."""
    settings.check()
    _, tokens = tokenize(text, tokenizer)
    t, d, dk = len(tokens), settings.dim, settings.d_k
    if isinstance(focus, bool) or not isinstance(focus, int) or not 0 <= focus < t:
        raise AttentionInputError(f"the token to follow must be a position from 0 to {t - 1}, got {focus!r}")
    x = default_embeddings(t, settings) if x is None else check_embeddings(x, t, d)
    weights = weight_matrices(settings)
    g = build_graphs(x, weights, dk, settings.heads, focus)
    labels = axis_labels(tokens)
    dims = [f"e{j}" for j in range(1, d + 1)]
    kdims = [f"k{j}" for j in range(1, dk + 1)]

    def square(title: str, name: str, kind: str, note: str = "") -> Matrix:
        return Matrix(title, g.value(name), labels, labels, kind, note)

    steps = [
        Step(
            1,
            "Scores without trainable weights",
            r"\omega_{ij} = x^{(i)} \cdot x^{(j)} \qquad \omega = X X^\top",
            "Each token is a vector (its embedding, editable above). How much should token *i* attend to token "
            "*j*? The simplest measure of similarity is their dot product: large when the vectors point the same "
            "way. Row *i* holds query token *i*'s score for every token.",
            [Matrix("x (embeddings)", x, labels, dims, "vectors"), square("ω = x xᵀ (scores)", "omega", "scores")],
            g.dot("step 1: scores", ["omega"], {"omega": "scores"}),
        ),
        Step(
            2,
            "Normalization: dividing by the sum vs softmax",
            r"\alpha_{ij} = \frac{\exp \omega_{ij}}{\sum_{k} \exp \omega_{ik}} \quad\text{instead of}\quad "
            r"\frac{\omega_{ij}}{\sum_k \omega_{ik}}",
            "Scores become **weights** when each row is made to sum to 1. Dividing by the row's sum does that, "
            "but only while every score is positive: a negative score gives a negative weight, and a row that "
            "sums to zero divides by zero. Below, the same scores minus their row's mean (so each row sums to "
            "0): the naive weights explode, while softmax gives exactly the weights it gave before — it only "
            "depends on the *differences* of scores, every weight is positive, and the rows always sum to 1.",
            [
                square("ω / row sum (naive)", "naive", "weights"),
                square("α = softmax(ω)", "alpha", "weights"),
                square(
                    "naive on ω − row mean",
                    "naive_shifted",
                    "weights",
                    "each row sums to 0 (up to rounding): dividing by it gives huge and negative weights",
                ),
                square("softmax(ω − row mean)", "softmax_shifted", "weights", "the same as softmax(ω)"),
            ],
            g.dot(
                "step 2: normalization",
                ["naive", "alpha", "naive_shifted", "softmax_shifted"],
                {"naive": "naive", "alpha": "α = softmax(ω)", "naive_shifted": "breaks", "softmax_shifted": "= α"},
            ),
            [_rows_sum_to_one(g.value("alpha")), _naive_fact(g.value("omega"), g.value("naive"))],
        ),
        Step(
            3,
            "Context vectors: the weighted sum of embeddings",
            r"z^{(i)} = \sum_j \alpha_{ij}\, x^{(j)} \qquad Z = A X",
            "Each token's **context vector** mixes every token's embedding, weighted by how much it attends to "
            "it: row *i* of z is a blend of the rows of x, mostly of the tokens with the largest weights.",
            [
                square("α (weights)", "alpha", "weights"),
                Matrix("z = α x (context vectors)", g.value("z"), labels, dims, "vectors"),
                Matrix(
                    f"α[{labels[focus]}, j] · x_j (terms)",
                    g.value("focus_terms"),
                    labels,
                    dims,
                    "vectors",
                    f"row j: the weight {labels[focus]} gives token j, times token j's embedding",
                ),
                Matrix(
                    f"z of {labels[focus]} (column sums)",
                    g.value("focus_z"),
                    [labels[focus]],
                    dims,
                    "vectors",
                    "the sum of the rows above: the same as its row of z",
                ),
            ],  # fmt: skip
            g.dot("step 3: context vectors", ["z", "focus_z"], {"z": "z = softmax(x xᵀ) x", "focus_z": "= z[i]"}),
            [
                f"z of {labels[focus]} equals its row of z = α x (largest difference "
                f"{(g.value('focus_z')[0] - g.value('z')[focus]).abs().max().item():.0e})"
            ],
        ),
        Step(
            4,
            "Trainable W_q, W_k, W_v and scaled scores",
            r"Q = XW_q,\; K = XW_k,\; V = XW_v \qquad Z = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V",
            "Real attention does not compare the embeddings themselves: three trainable matrices project each "
            "token into a **query** (what it looks for), a **key** (what it offers) and a **value** (what it "
            f"passes on). Scores are query · key, divided by √d_k = √{dk} = {math.sqrt(dk):.3g} so that larger "
            "d_k does not push softmax towards one-hot (dot products of d_k terms grow like √d_k). The weights "
            "here are seeded at random: training would change them.",
            [
                Matrix("W_q", weights["W_q"], dims, kdims, "vectors"),
                Matrix("W_k", weights["W_k"], dims, kdims, "vectors"),
                Matrix("W_v", weights["W_v"], dims, kdims, "vectors"),
                Matrix("q = x W_q", g.value("q"), labels, kdims, "vectors"),
                Matrix("k = x W_k", g.value("k"), labels, kdims, "vectors"),
                Matrix("v = x W_v", g.value("v"), labels, kdims, "vectors"),
                square("q kᵀ / √d_k (scaled scores)", "scores", "scores"),
                square("α = softmax(scaled scores)", "weights", "weights"),
                Matrix("z = α v", g.value("context"), labels, kdims, "vectors"),
            ],
            g.dot("step 4: scaled dot-product attention", ["context"], {"context": "z"}),
            [_rows_sum_to_one(g.value("weights")), _scaling_fact(g.value("weights"), g.value("unscaled_weights"), dk)],
        ),
        Step(
            5,
            "The causal mask",
            r"\tilde\omega_{ij} = \begin{cases}\omega_{ij} & j \le i \\ -\infty & j > i\end{cases} \qquad "
            r"\alpha = \mathrm{softmax}(\tilde\omega)",
            "A language model predicts the next token, so a token must not look at the ones after it. The "
            "scores above the diagonal are set to −∞ **before** softmax: exp(−∞) = 0, so those weights are "
            "exactly 0 and each row still sums to 1. The first token can only attend to itself. Masking *after* "
            "softmax instead (step 4's weights with the future zeroed) leaves rows that sum to less than 1, and "
            "needs a second normalization to reach the same weights: one −∞ does both at once.",
            [
                square("masked scaled scores", "masked", "scores", "−∞ above the diagonal"),
                square("α = softmax(masked scores)", "causal_weights", "weights"),
                square("softmax, then the future zeroed", "zeroed", "weights", "rows no longer sum to 1"),
                square("… then divided by the row sum", "renormalized", "weights", "the same as α above"),
                Matrix("z = α v", g.value("causal_context"), labels, kdims, "vectors"),
            ],
            g.dot(
                "step 5: causal attention",
                ["causal_context", "renormalized"],
                {"causal_context": "z causal", "renormalized": "= α causal"},
            ),
            [
                "masking after softmax and renormalizing gives the same weights (largest difference "
                f"{(g.value('renormalized') - g.value('causal_weights')).abs().max().item():.0e})",
                _rows_sum_to_one(g.value("causal_weights")),
                "every weight above the diagonal is exactly 0"
                if bool((g.value("causal_weights").triu(1) == 0).all())
                else "a weight above the diagonal is not 0",
            ],
        ),
        _heads_step(g, settings, labels, dims, weights),
    ]
    if backward:
        passes = backward_passes(g, settings.seed)
        for step in steps:
            step.backward = passes[step.number]
    return steps


def _heads_step(
    g: Graphs, settings: AttentionSettings, labels: list[str], dims: list[str], weights: dict[str, torch.Tensor]
) -> Step:
    h, dk = settings.heads, settings.d_k
    cat_dims = [f"h{i}.{j}" for i in range(1, h + 1) for j in range(1, dk + 1)]
    matrices = [
        Matrix(f"head {i}: α", g.value(f"head{i}_weights"), labels, labels, "weights", "its own W_q, W_k, W_v")
        for i in range(1, h + 1)
    ]
    matrices += [
        Matrix(f"concat of the {h} heads' z", g.value("concat"), labels, cat_dims, "vectors"),
        Matrix("W_o (output projection)", weights["W_o"], cat_dims, dims, "vectors"),
        Matrix("out = concat · W_o", g.value("mha"), labels, dims, "vectors", "one vector per token, size d again"),
    ]
    return Step(
        6,
        "Several heads, concatenated and projected",
        r"\mathrm{head}_h = \mathrm{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d_k}} + M\right) V_h \qquad "
        r"\mathrm{out} = [\mathrm{head}_1; \dots; \mathrm{head}_H]\, W_o",
        f"{h} heads run side by side, each with its own seeded W_q, W_k, W_v, so each can learn to look for "
        "something different (the previous token, the start of a word...). Their context vectors are joined "
        f"column-wise ({h} × {dk} = {h * dk} columns) and the output projection W_o mixes them back to the "
        f"embedding size {settings.dim}, so the result can be added to x in a transformer block.",
        matrices,
        g.dot(f"step 6: {h}-head causal attention", ["mha"], {"mha": "out"}),
        [f"head {i}: " + _rows_sum_to_one(g.value(f"head{i}_weights")) for i in range(1, h + 1)],
    )


def step_tensor(steps: list[Step], number: int, title: str) -> torch.Tensor:
    """The values of a step's matrix by its title (for tests and the page's readers)."""
    for matrix in steps[number - 1].matrices:
        if matrix.title == title:
            return matrix.values
    raise KeyError(f"step {number} has no matrix titled {title!r}")
