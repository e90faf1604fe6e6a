"""The Attention page's logic (playground/attention/: logic.py, graphs.py, figures.py):
every step's values from our engine against plain torch in float64 (and torch's own attention functions),
every backward graph against torch.autograd, the causal mask, softmax rows, the naive normalization
breaking, the bounds on text, sizes and edited embeddings, the graphs' DOT, and the heatmaps' cells,
labels and layout."""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
import torch

from lm.tokenizers import BPETokenizer
from playground.attention import logic as att
from playground.attention.figures import cell_text, colour_range, heatmap, rows_of

TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return BPETokenizer.gpt2()


def values(steps: list[att.Step], number: int, title: str) -> torch.Tensor:
    return att.step_tensor(steps, number, title)


@pytest.mark.parametrize(
    "settings", [att.AttentionSettings(), att.AttentionSettings(dim=5, d_k=3, heads=3, seed=7)], ids=str
)
def test_every_step_against_torch(gpt2, settings):
    text = "The cat sat on the mat"
    x = torch.randn(6, settings.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    steps = att.build_steps(text, x, settings, gpt2)
    w = att.weight_matrices(settings)
    assert [s.number for s in steps] == [1, 2, 3, 4, 5, 6]
    # 1. scores without weights
    omega = x @ x.T
    torch.testing.assert_close(values(steps, 1, "x (embeddings)"), x, **TOL)
    torch.testing.assert_close(values(steps, 1, "ω = x xᵀ (scores)"), omega, **TOL)
    # 2. normalization: naive and softmax, and both on row-centred scores
    alpha = torch.softmax(omega, dim=-1)
    torch.testing.assert_close(values(steps, 2, "ω / row sum (naive)"), omega / omega.sum(-1, keepdim=True), **TOL)
    torch.testing.assert_close(values(steps, 2, "α = softmax(ω)"), alpha, **TOL)
    torch.testing.assert_close(values(steps, 2, "softmax(ω − row mean)"), alpha, **TOL)  # shift-invariant
    # 3. context vectors
    torch.testing.assert_close(values(steps, 3, "z = α x (context vectors)"), alpha @ x, **TOL)
    terms = alpha[1][:, None] * x  # the 2nd token's sum, term by term: row j = α_1j x_j
    torch.testing.assert_close(values(steps, 3, "α[1:␣cat, j] · x_j (terms)"), terms, **TOL)
    torch.testing.assert_close(values(steps, 3, "z of 1:␣cat (column sums)"), (alpha @ x)[1:2], **TOL)
    # 4. projections and scaled dot-product attention (also against torch's own kernel)
    q, k, v = x @ w["W_q"], x @ w["W_k"], x @ w["W_v"]
    scores = q @ k.T / math.sqrt(settings.d_k)
    for title, expected in [("q = x W_q", q), ("k = x W_k", k), ("v = x W_v", v), ("W_q", w["W_q"])]:
        torch.testing.assert_close(values(steps, 4, title), expected, **TOL)
    torch.testing.assert_close(values(steps, 4, "q kᵀ / √d_k (scaled scores)"), scores, **TOL)
    torch.testing.assert_close(values(steps, 4, "α = softmax(scaled scores)"), torch.softmax(scores, -1), **TOL)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    torch.testing.assert_close(values(steps, 4, "z = α v"), sdpa(q, k, v), **TOL)
    unscaled_peak = torch.softmax(q @ k.T, -1).amax(-1).mean().item()
    assert (
        f"would average {unscaled_peak:.3f} instead of {torch.softmax(scores, -1).amax(-1).mean().item():.3f}"
        in (steps[3].facts[1])
    )
    # 5. causal mask
    upper = torch.ones(6, 6, dtype=torch.bool).triu(1)
    masked = scores.masked_fill(upper, -math.inf)
    torch.testing.assert_close(values(steps, 5, "masked scaled scores"), masked, **TOL)
    torch.testing.assert_close(values(steps, 5, "α = softmax(masked scores)"), torch.softmax(masked, -1), **TOL)
    torch.testing.assert_close(values(steps, 5, "z = α v"), sdpa(q, k, v, is_causal=True), **TOL)
    zeroed = torch.softmax(scores, -1).masked_fill(upper, 0.0)
    torch.testing.assert_close(values(steps, 5, "softmax, then the future zeroed"), zeroed, **TOL)
    renormalized = values(steps, 5, "… then divided by the row sum")
    torch.testing.assert_close(renormalized, zeroed / zeroed.sum(-1, keepdim=True), **TOL)
    torch.testing.assert_close(renormalized, torch.softmax(masked, -1), **TOL)
    # 6. several heads, concatenated and projected
    heads = []
    for h in range(1, settings.heads + 1):
        qh, kh, vh = (x @ w[f"{n}{h}"] for n in ("W_q", "W_k", "W_v"))
        a = torch.softmax((qh @ kh.T / math.sqrt(settings.d_k)).masked_fill(upper, -math.inf), -1)
        torch.testing.assert_close(values(steps, 6, f"head {h}: α"), a, **TOL)
        heads.append(a @ vh)
    concat = torch.cat(heads, dim=-1)
    title = f"concat of the {settings.heads} heads' z"
    torch.testing.assert_close(values(steps, 6, title), concat, **TOL)
    torch.testing.assert_close(values(steps, 6, "out = concat · W_o"), concat @ w["W_o"], **TOL)


def test_step_six_equals_torch_multihead_attention(gpt2):
    """An independent oracle: torch.nn.MultiheadAttention loaded with the same weights (embed 4 = 2 x 2)."""
    settings = att.AttentionSettings(dim=4, d_k=2, heads=2, seed=11)
    steps = att.build_steps("Your journey starts with one step", None, settings, gpt2)
    x, w = att.default_embeddings(6, settings), att.weight_matrices(settings)
    mha = torch.nn.MultiheadAttention(4, 2, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for i, name in enumerate(("W_q", "W_k", "W_v")):
            joined = torch.cat([w[f"{name}{h}"] for h in (1, 2)], dim=1)  # (d, heads * d_k)
            mha.in_proj_weight[4 * i : 4 * (i + 1)] = joined.T
        mha.out_proj.weight.copy_(w["W_o"].T)
        upper = torch.ones(6, 6, dtype=torch.bool).triu(1)
        out, per_head = mha(x[None], x[None], x[None], attn_mask=upper, average_attn_weights=False)
    torch.testing.assert_close(values(steps, 6, "out = concat · W_o"), out[0], **TOL)
    torch.testing.assert_close(values(steps, 6, "head 2: α"), per_head[0, 1], **TOL)


def test_masks_and_softmax_rows(gpt2):
    steps = att.build_steps("one two three four five", None, att.AttentionSettings(heads=4), gpt2)
    t = 5
    upper = torch.ones(t, t, dtype=torch.bool).triu(1)
    masked = values(steps, 5, "masked scaled scores")
    assert torch.isneginf(masked[upper]).all() and torch.isfinite(masked[~upper]).all()
    causal = [values(steps, 5, "α = softmax(masked scores)")] + [values(steps, 6, f"head {h}: α") for h in (1, 2, 3, 4)]
    for weights in causal:
        assert (weights[upper] == 0).all() and (weights[~upper] > 0).all()
        assert weights[0, 0] == 1  # the first token can only attend to itself
    for weights in [*causal, values(steps, 2, "α = softmax(ω)"), values(steps, 4, "α = softmax(scaled scores)")]:
        torch.testing.assert_close(weights.sum(-1), torch.ones(t, dtype=torch.float64), **TOL)
    assert steps[4].facts[2] == "every weight above the diagonal is exactly 0"
    assert steps[4].facts[0].startswith("masking after softmax and renormalizing gives the same weights")
    heads = [f"head {h}: every row sums to 1 (" for h in (1, 2, 3, 4)]
    assert len(steps[5].facts) == 4 and all(f.startswith(h) for f, h in zip(steps[5].facts, heads))


def test_the_naive_normalization_breaks_where_softmax_does_not(gpt2):
    # default embeddings are positive: naive weights are fine; centred scores (rows summing to 0) break them
    steps = att.build_steps(att.DEFAULT_TEXT, None, att.AttentionSettings(), gpt2)
    assert (values(steps, 2, "ω / row sum (naive)") > 0).all()
    broken = values(steps, 2, "naive on ω − row mean")
    assert (~torch.isfinite(broken) | (broken.abs() > 1e6)).any(axis=-1).all()  # every row explodes
    assert (broken < 0).any()
    # an edited negative embedding gives a negative score, and then a negative naive weight
    x = att.default_embeddings(6, att.AttentionSettings())
    x[1] = -x[1]
    steps = att.build_steps(att.DEFAULT_TEXT, x, att.AttentionSettings(), gpt2)
    assert (values(steps, 2, "ω / row sum (naive)") < 0).any()
    assert (values(steps, 2, "α = softmax(ω)") > 0).all()


def test_defaults_are_seeded_and_edits_are_used(gpt2):
    s = att.AttentionSettings()
    a, b = att.default_embeddings(6, s), att.default_embeddings(6, s)
    assert torch.equal(a, b) and a.shape == (6, 3) and (a >= 0).all() and (a < 1).all()
    assert torch.equal(a, (a * 100).round() / 100)  # two decimals: the table shows exactly what is used
    assert not torch.equal(a, att.default_embeddings(6, att.AttentionSettings(seed=124)))
    assert torch.equal(att.weight_matrices(s)["W_q"], att.weight_matrices(s)["W_q"])
    edited = a.clone()
    edited[2, 1] = 5.0
    steps = att.build_steps(att.DEFAULT_TEXT, edited, s, gpt2)
    torch.testing.assert_close(values(steps, 1, "ω = x xᵀ (scores)"), edited @ edited.T, **TOL)


def test_tokens_and_labels(gpt2):
    ids, tokens = att.tokenize("the cat and the dog", gpt2)
    assert tokens == ["the", "␣cat", "␣and", "␣the", "␣dog"] and len(ids) == 5
    labels = att.axis_labels(tokens)
    assert len(set(labels)) == 5 and labels[3] == "3:␣the"  # a repeated token keeps its own row


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the text is empty"),
        ("   \n ", "the text is empty"),
        ("Hello", "single token"),
        ("one two three four five six seven eight nine ten eleven", "11 GPT-2 tokens; the limit is 10"),
        ("a" * 201, "201 characters; the limit is 200"),
    ],
)
def test_bad_text_gets_a_clear_error(gpt2, text, message):
    with pytest.raises(att.AttentionInputError, match=message):
        att.build_steps(text, None, att.AttentionSettings(), gpt2)


@pytest.mark.parametrize(
    "settings, message",
    [
        (att.AttentionSettings(dim=1), "embedding size must be a whole number from 2 to 8, got 1"),
        (att.AttentionSettings(dim=9), "embedding size .* got 9"),
        (att.AttentionSettings(d_k=0), "d_k must be .* from 1 to 8"),
        (att.AttentionSettings(heads=5), "number of heads must be .* from 1 to 4, got 5"),
        (att.AttentionSettings(dim=2.5), "got 2.5"),
        (att.AttentionSettings(heads=True), "got True"),
        (att.AttentionSettings(seed=-1), "seed"),
        (att.AttentionSettings(d_k=5, heads=4), "4 heads × d_k 5 = 20 columns .* at most 16 fit"),
    ],
)
def test_bad_sizes_get_a_clear_error(gpt2, settings, message):
    with pytest.raises(att.AttentionInputError, match=message):
        att.build_steps(att.DEFAULT_TEXT, None, settings, gpt2)


@pytest.mark.parametrize(
    "edit, message",
    [
        (math.nan, r"token 2, e2 is empty or not a finite number"),
        (math.inf, r"token 2, e2 is empty or not a finite number"),
        (None, r"token 2, e2 is empty"),
        (1e6, r"token 2, e2 is 1e\+06; keep values within ±100"),
        ("abc", "must be a table of numbers.*could not convert string"),
    ],
)
def test_bad_edits_get_a_clear_error(gpt2, edit, message):
    rows = att.default_embeddings(6, att.AttentionSettings()).tolist()
    rows[2][1] = edit
    with pytest.raises(att.AttentionInputError, match=message):
        att.build_steps(att.DEFAULT_TEXT, rows, att.AttentionSettings(), gpt2)


@pytest.mark.parametrize("focus", [-1, 6, True, 1.0])
def test_a_bad_token_to_follow(gpt2, focus):
    with pytest.raises(att.AttentionInputError, match="token to follow must be a position from 0 to 5"):
        att.build_steps(att.DEFAULT_TEXT, None, att.AttentionSettings(), gpt2, focus=focus)


def test_the_followed_token_and_what_the_naive_fact_says(gpt2):
    steps = att.build_steps(att.DEFAULT_TEXT, None, att.AttentionSettings(), gpt2, focus=5)
    assert steps[2].matrices[3].rows == ["5:␣step"] and steps[2].facts[0].startswith("z of 5:␣step equals")
    assert "only because every score is positive" in steps[1].facts[1]
    x = att.default_embeddings(6, att.AttentionSettings())
    x[0] = -x[0]
    steps = att.build_steps(att.DEFAULT_TEXT, x, att.AttentionSettings(), gpt2)
    negative = int((values(steps, 2, "ω / row sum (naive)") < 0).sum())
    assert negative > 0 and steps[1].facts[1].startswith(f"dividing by the sum gives {negative} negative")


def test_embeddings_of_the_wrong_shape(gpt2):
    with pytest.raises(att.AttentionInputError, match=r"are \(6, 4\); they must be .* \(6, 3\)"):
        att.build_steps(att.DEFAULT_TEXT, torch.zeros(6, 4), att.AttentionSettings(), gpt2)
    with pytest.raises(att.AttentionInputError, match="one row per token"):
        att.check_embeddings([[1.0, 2.0], [3.0]], 2, 2)


def test_each_step_draws_its_own_graph(gpt2):
    steps = att.build_steps(att.DEFAULT_TEXT, None, att.AttentionSettings(heads=3), gpt2)
    expected = {1: ["ω", "transpose"], 2: ["softmax", "α naive", "mean"], 3: ["softmax", "z"],
                4: ["W_q", "W_k", "W_v", "div_by_const"], 5: ["masked_fill", "causal mask"],
                6: ["W_q3", "concat", "W_o", "α head 3"]}  # fmt: skip
    for step in steps:
        assert step.dot.startswith("digraph G {") and f"step {step.number}" in step.dot
        for word in expected[step.number]:
            assert word in step.dot, (step.number, word)
    assert "masked_fill" not in steps[3].dot and "W_q" not in steps[2].dot  # each graph is its own step's
    assert [step.number for step in steps] == list(att.STEP_NAMES)  # the page's selector picks steps[n - 1]
    if shutil.which("dot"):  # st.graphviz_chart never raises on bad DOT: Graphviz must accept each one
        for step in steps:
            result = subprocess.run(["dot", "-Tsvg"], input=step.dot.encode(), capture_output=True, timeout=60)
            assert result.returncode == 0, result.stderr.decode()


def test_heatmap_cells_labels_and_scale(gpt2):
    steps = att.build_steps("the cat and the dog", None, att.AttentionSettings(), gpt2)
    masked = next(m for m in steps[4].matrices if m.title == "masked scaled scores")
    fig = heatmap(masked)
    trace = fig.data[0]
    assert list(trace.y) == ["0:the", "1:␣cat", "2:␣and", "3:␣the", "4:␣dog"] and list(trace.x) == list(trace.y)
    assert trace.z[0][1] is None and trace.text[0][1] == "−∞"  # masked: no colour, "−∞" written
    assert trace.text[1][0] == cell_text(masked.values[1, 0].item()) and trace.texttemplate == "%{text}"
    assert trace.zmin == -trace.zmax  # scores: a diverging scale centred at 0
    weights = heatmap(next(m for m in steps[4].matrices if m.kind == "weights")).data[0]
    assert (weights.zmin, weights.zmax) == (0, 1) and weights.text[0][1] == "0"
    tag = att.Matrix("t", torch.eye(2, dtype=torch.float64), ["<|endoftext|>", "b"], ["a", "b"], "vectors")
    assert heatmap(tag).data[0].y[0] == "&lt;|endoftext|&gt;"
    assert colour_range(att.Matrix("z", torch.zeros(1, 1), ["a"], ["a"], "vectors"))[:2] == (-1.0, 1.0)


def test_cell_text():
    assert [cell_text(v) for v in (0.0, 0.123, -1.5, 2.5e15, 1e-4, math.inf, -math.inf, math.nan)] == [
        "0", "0.12", "-1.50", "2e15", "1e-4", "∞", "−∞", "nan"
    ]  # fmt: skip


def test_matrices_are_laid_out_to_fit_a_narrow_window(gpt2):
    def m(columns: int) -> att.Matrix:
        return att.Matrix(
            str(columns), torch.zeros(2, columns), ["a", "b"], [str(i) for i in range(columns)], "vectors"
        )

    narrow, square6, wide = m(3), m(6), m(10)
    rows = rows_of([narrow, narrow, narrow, narrow, square6, square6, square6, wide, narrow])
    assert [len(r) for r in rows] == [3, 1, 2, 1, 1, 1]
    steps = att.build_steps("one two three four five six seven eight", None, att.AttentionSettings(), gpt2)
    assert all(len(row) == 1 for row in rows_of(steps[1].matrices))  # 8 x 8 weights: one per row


def test_backward_graphs_give_torch_autograd_gradients(gpt2):
    """Each step's backward pass (L = sum(out ⊙ r)) against torch.autograd on the same formula."""
    settings = att.AttentionSettings(dim=4, d_k=3, heads=2, seed=5)
    steps = att.build_steps("the cat sat on the mat", None, settings, gpt2, backward=True)
    x = att.default_embeddings(6, settings).requires_grad_()
    w = {k: v.clone().requires_grad_() for k, v in att.weight_matrices(settings).items()}
    upper = torch.ones(6, 6, dtype=torch.bool).triu(1)

    def attend(q, k, v, causal):
        scores = q @ k.T / math.sqrt(settings.d_k)
        return torch.softmax(scores.masked_fill(upper, -math.inf) if causal else scores, -1) @ v

    def head(h: str, causal: bool):
        return attend(x @ w[f"W_q{h}"], x @ w[f"W_k{h}"], x @ w[f"W_v{h}"], causal)

    outputs = {
        1: x @ x.T,
        2: torch.softmax(x @ x.T, -1),
        3: torch.softmax(x @ x.T, -1) @ x,
        4: head("", False),
        5: head("", True),
        6: torch.cat([head("1", True), head("2", True)], -1) @ w["W_o"],
    }
    for step in steps:
        backward = step.backward
        assert backward is not None and "backward (gradients)" in backward.dot and "∂L/∂x" in backward.dot
        names = list(backward.gradients)
        leaves = [x if n == "x" else w[n] for n in names]
        expected = torch.autograd.grad((outputs[step.number] * backward.upstream).sum(), leaves)
        for name, grad in zip(names, expected):
            torch.testing.assert_close(backward.gradients[name], grad, **TOL, msg=f"step {step.number} ∂L/∂{name}")
    assert sorted(steps[5].backward.gradients) == sorted(["x", "W_o", *(f"W_{p}{h}" for p in "qkv" for h in "12")])
    assert att.build_steps(att.DEFAULT_TEXT, None, att.AttentionSettings(), gpt2)[0].backward is None
    if shutil.which("dot"):  # Graphviz accepts every backward drawing too
        for step in steps:
            result = subprocess.run(["dot", "-Tsvg"], input=step.backward.dot.encode(), capture_output=True, timeout=60)
            assert result.returncode == 0, result.stderr.decode()
