"""Our optimizers against torch.optim (the oracle) on the same parameters and gradients."""

import pytest
import torch

from lm.optim import SGD, AdamW, make_optimizer


def _run(ours, theirs_cls, steps=7, **kwargs):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)]
    ref = [p.clone().requires_grad_(True) for p in params]
    opt = theirs_cls(ref, **kwargs)
    for _ in range(steps):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        ours.step(params, grads)
        for r, g in zip(ref, grads):
            r.grad = g.clone()
        opt.step()
    for p, r in zip(params, ref):
        torch.testing.assert_close(p, r.detach(), rtol=0, atol=1e-12)


def test_sgd_matches_torch():
    _run(SGD(lr=0.05), torch.optim.SGD, lr=0.05)


@pytest.mark.parametrize("wd", [0.0, 0.01, 0.3])
def test_adamw_matches_torch(wd):
    _run(
        AdamW(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd),
        torch.optim.AdamW, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd,
    )  # fmt: skip


def test_make_optimizer_names():
    assert isinstance(make_optimizer("sgd", 0.1), SGD)
    assert isinstance(make_optimizer("adamw", 0.1), AdamW)
    with pytest.raises(ValueError, match="'sgd' or 'adamw'"):
        make_optimizer("adam", 0.1)
