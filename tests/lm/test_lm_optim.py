"""Our optimizers against torch.optim (the oracle) in float64 on the same parameters and gradients: SGD and
AdamW over several steps with a changing learning rate, AdamW's parameter groups (decay on matrices only),
a parameter without a gradient skipped as torch skips `.grad = None`, the state by name round-tripping, the
flat buffers' step equal to a per-parameter one bit for bit;
the warmup-cosine-floor schedule (torch's LinearLR then CosineAnnealingLR) and global-norm clipping
(torch.nn.utils.clip_grad_norm_)."""

import math

import pytest
import torch

from lm import optim
from lm.optim import SGD, AdamW, clip_grad_norm_, decay_groups, grad_norm, lr_schedule

STEPS = 8


def make_params(seed: int = 0) -> dict[str, torch.Tensor]:
    """An embedding, a gain (1-D, around 1) and a weight matrix, float64."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "emb": torch.randn(7, 4, generator=gen, dtype=torch.float64),
        "gain": torch.rand(4, generator=gen, dtype=torch.float64) + 0.5,
        "w": torch.randn(4, 5, generator=gen, dtype=torch.float64),
    }


def lr_at(step: int) -> float:
    return lr_schedule(step, 1e-2, 1e-3, 3, STEPS)  # the learning rate changes every step, as in training


def run_side_by_side(ours, theirs: torch.optim.Optimizer, params, ref, grads_of_step) -> None:
    """STEPS steps of both optimizers; grads_of_step(step) -> {name: gradient or None}."""
    for step in range(STEPS):
        ours.lr = lr_at(step)
        for group in theirs.param_groups:
            group["lr"] = lr_at(step)
        grads = grads_of_step(step)
        ours.step(grads)
        for name, r in ref.items():
            r.grad = None if grads.get(name) is None else grads[name].clone()
        theirs.step()
    for name in params:
        torch.testing.assert_close(params[name], ref[name].detach(), rtol=0, atol=1e-12, msg=name)


def random_grads(params, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return lambda step: {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) for n, p in params.items()}


def test_sgd_matches_torch():
    params = make_params()
    ref = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    ours = SGD(params, lr=0.05)
    run_side_by_side(ours, torch.optim.SGD(list(ref.values()), lr=0.05), params, ref, random_grads(params))
    assert ours.state_dict() == {}  # nothing to save: a resumed SGD run needs no optimizer state


@pytest.mark.parametrize("wd", [0.0, 0.01, 0.3])
def test_adamw_matches_torch(wd):
    params = make_params()
    ref = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    ours = AdamW(params, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd)
    theirs = torch.optim.AdamW(list(ref.values()), lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd)
    run_side_by_side(ours, theirs, params, ref, random_grads(params))


def test_adamw_decays_matrices_only_like_torch_param_groups():
    params = make_params()
    groups = decay_groups(params, 0.1)
    assert groups == [
        {"params": ["emb", "w"], "weight_decay": 0.1},  # matrices: embeddings and weights
        {"params": ["gain"], "weight_decay": 0.0},  # 1-D gains keep their neutral 1
    ]
    ref = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    ours = AdamW(params, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, groups=groups)
    theirs = torch.optim.AdamW(
        [{"params": [ref[n] for n in g["params"]], "weight_decay": g["weight_decay"]} for g in groups],
        lr=1e-2, betas=(0.9, 0.99), eps=1e-8,
    )  # fmt: skip
    run_side_by_side(ours, theirs, params, ref, random_grads(params))


def test_a_parameter_without_a_gradient_is_skipped_as_torch_skips_it():
    """`gain` gets no gradient for its first three steps (None), `w` none at step 5 (absent): torch neither
    decays nor moves them then, and counts a parameter's steps from its first gradient, so its bias
    correction starts later than the others'. Ours does the same, per parameter."""
    params = make_params()
    ref = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    ours = AdamW(params, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    theirs = torch.optim.AdamW(list(ref.values()), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    draw = random_grads(params, seed=2)

    def grads_of_step(step):
        grads = draw(step)
        if step < 3:
            grads["gain"] = None
        if step == 5:
            del grads["w"]
        return grads

    gain_before = params["gain"].clone()
    run_side_by_side(ours, theirs, params, ref, grads_of_step)
    assert not torch.equal(params["gain"], gain_before)  # it moved once it had gradients
    their_steps = {n: int(theirs.state[ref[n]]["step"]) for n in ref}
    assert ours.steps == their_steps == {"emb": STEPS, "gain": STEPS - 3, "w": STEPS - 1}
    for name in params:
        torch.testing.assert_close(ours.m[name], theirs.state[ref[name]]["exp_avg"], rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.v[name], theirs.state[ref[name]]["exp_avg_sq"], rtol=0, atol=1e-15)


def test_a_parameter_never_given_a_gradient_has_no_state_and_does_not_move():
    params = make_params()
    before = params["gain"].clone()
    opt = AdamW(params, lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step({"emb": torch.ones(7, 4, dtype=torch.float64), "gain": None})
    assert torch.equal(params["gain"], before) and "gain" not in opt.state_dict()["m"]
    assert opt.state_dict()["steps"] == {"emb": 3}


def test_adamw_state_round_trips_by_name():
    a_params, b_params = make_params(), make_params()
    draw = random_grads(a_params)
    a = AdamW(a_params, lr=0.1, groups=decay_groups(a_params, 0.1))
    a.step(draw(0))
    state = a.state_dict()
    assert set(state) == {"steps", "m", "v"} and state["steps"] == {"emb": 1, "gain": 1, "w": 1}
    b = AdamW(b_params, lr=0.1, groups=decay_groups(b_params, 0.1))
    for name, p in a_params.items():
        b_params[name].copy_(p)
    b.load_state_dict(state)
    assert all(b.m[n] is not a.m[n] for n in a.m)  # copied: b's steps do not move a's moments
    grads = draw(1)
    a.step(grads), b.step(grads)
    assert b.steps == {"emb": 2, "gain": 2, "w": 2}
    for name in a_params:
        assert torch.equal(a_params[name], b_params[name]), name
    with pytest.raises(ValueError, match="unknown parameters"):
        b.load_state_dict({"steps": {"nope": 1}, "m": {"nope": torch.zeros(1)}, "v": {"nope": torch.zeros(1)}})


def test_adamw_steps_each_group_in_flat_buffers_bit_for_bit_as_per_parameter(monkeypatch):
    """Each group's parameters move into one flat buffer (the caller's tensors stay the same objects, now
    views of it, so the caller sees every update); a step over the flat buffers gives the same bits as the
    same step parameter by parameter (without flat buffers), element by element the same formula."""
    flat_params, plain_params = make_params(), make_params()
    objects = {n: id(p) for n, p in flat_params.items()}
    flat = AdamW(flat_params, lr=1e-2, groups=decay_groups(flat_params, 0.1))
    assert {n: id(p) for n, p in flat.params.items()} == objects and all(g is not None for g in flat.flat)
    buffer = flat.flat[0].params.untyped_storage().data_ptr()
    assert all(flat_params[n].untyped_storage().data_ptr() == buffer for n in ("emb", "w"))
    monkeypatch.setattr(optim, "flatten_", lambda tensors: None)
    plain = AdamW(plain_params, lr=1e-2, groups=decay_groups(plain_params, 0.1))
    assert plain.flat == [None, None]
    draw_a, draw_b = random_grads(flat_params), random_grads(plain_params)
    for _ in range(3):
        flat.step(draw_a(0)), plain.step(draw_b(0))
    for name in flat_params:
        assert torch.equal(flat_params[name], plain_params[name]), name
        assert torch.equal(flat.m[name], plain.m[name]) and torch.equal(flat.v[name], plain.v[name]), name


def test_groups_must_name_each_parameter_once():
    params = make_params()
    with pytest.raises(ValueError, match=r"unknown \['x'\], missing \['gain'\]"):
        AdamW(params, groups=[{"params": ["emb", "w", "x"], "weight_decay": 0.1}])
    with pytest.raises(ValueError, match="in two groups"):
        AdamW(params, groups=[{"params": ["emb", "w", "gain"], "weight_decay": 0.1}, {"params": ["w"]}])


def test_lr_schedule_is_torch_warmup_then_cosine_then_the_floor():
    max_lr, min_lr, warmup, total = 1e-3, 1e-4, 10, 60
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=max_lr)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, 1 / (warmup + 1), 1.0, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr),
        ],
        milestones=[warmup],
    )
    for step in range(total + 1):
        assert lr_schedule(step, max_lr, min_lr, warmup, total) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()
    assert lr_schedule(0, max_lr, min_lr, warmup, total) == max_lr / 11
    assert lr_schedule(warmup, max_lr, min_lr, warmup, total) == max_lr
    assert [lr_schedule(s, max_lr, min_lr, warmup, total) for s in (total, total + 1, 10**6)] == [min_lr] * 3
    assert lr_schedule(5, 1.0, 0.0, 0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))  # no warmup
    assert {lr_schedule(s, 0.05, 0.05, 0, 500) for s in range(600)} == {0.05}  # "constant" is a case of it


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
def test_clipping_matches_torch(max_norm):
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm)
    assert float(grad_norm(grads)) == pytest.approx(float(expected), rel=1e-12)
    norm = clip_grad_norm_(grads, max_norm)
    assert norm == pytest.approx(float(expected), rel=1e-12)
    for p, g in zip(params, grads):
        torch.testing.assert_close(g, p.grad, rtol=0, atol=1e-15)
    assert float(grad_norm(grads)) <= max_norm * (1 + 1e-12) or max_norm > norm
