"""The text models' optimizer pieces against torch: AdamW with weight decay on matrices only (torch's
param groups), the warmup-cosine-floor schedule (torch's LinearLR then CosineAnnealingLR) and
global-norm clipping (torch.nn.utils.clip_grad_norm_)."""

import math

import pytest
import torch

from lm.optim import AdamW, clip_grad_norm_, lr_schedule, matrices_only


def test_adamw_decays_matrices_only_like_torch_param_groups():
    gen = torch.Generator().manual_seed(0)
    params = {
        "emb": torch.randn(7, 4, generator=gen, dtype=torch.float64),
        "gain": torch.rand(4, generator=gen, dtype=torch.float64) + 0.5,
        "w": torch.randn(4, 5, generator=gen, dtype=torch.float64),
    }
    ours = {n: p.clone() for n, p in params.items()}
    theirs = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    decay = matrices_only(ours)
    assert decay == [True, False, True]
    opt = AdamW(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, decay_mask=decay)
    groups = [
        {"params": [theirs["emb"], theirs["w"]], "weight_decay": 0.1},
        {"params": [theirs["gain"]], "weight_decay": 0.0},
    ]
    ref = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.99), eps=1e-8)
    for step in range(20):
        lr = lr_schedule(step, 1e-2, 1e-3, 5, 20)  # the learning rate changes every step, as in training
        opt.lr = lr
        for group in ref.param_groups:
            group["lr"] = lr
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in ours.values()]
        opt.step(list(ours.values()), grads)
        for p, g in zip(theirs.values(), grads):
            p.grad = g.clone()
        ref.step()
    for name in params:
        torch.testing.assert_close(ours[name], theirs[name].detach(), rtol=0, atol=1e-12, msg=name)


def test_adamw_state_round_trips():
    p, g = [torch.ones(3)], [torch.full((3,), 0.5)]
    a = AdamW(lr=0.1)
    a.step(p, g)
    b = AdamW(lr=0.1)
    b.load_state_dict(a.state_dict())
    pa, pb = [p[0].clone()], [p[0].clone()]
    a.step(pa, g), b.step(pb, g)
    assert torch.equal(pa[0], pb[0]) and b.t == 2


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


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
def test_clipping_matches_torch(max_norm):
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(5, 3, generator=gen), torch.randn(3, generator=gen)]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm)
    norm = clip_grad_norm_(grads, max_norm)
    assert norm == pytest.approx(float(expected), rel=1e-6)
    for p, g in zip(params, grads):
        torch.testing.assert_close(g, p.grad)
