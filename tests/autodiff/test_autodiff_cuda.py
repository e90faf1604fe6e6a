"""The engine on a GPU: every row of the op table (tests/autodiff/test_autodiff_ops.py) evaluated with its inputs
on CUDA — value, and every input's gradient under a random upstream gradient — must stay on the GPU and
match torch.autograd computed on the CPU in float64; and a training step of the text model with
`device="cuda"` must equal the same step on the CPU. Skips, saying so, where no GPU is present.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_autodiff_ops import CASES, Case, _torch_grads, assert_close, make_value

import autodiff as ad
from autodiff import ops

ROOT = Path(__file__).resolve().parents[2]
NO_GPU = "no CUDA GPU here (torch.cuda.is_available() is False): the CUDA tests run on a machine with one"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)


def check_op_on(device: str, case: Case) -> None:
    """Our op with inputs on `device` against torch.autograd on CPU copies (the op table's oracle)."""
    gen = torch.Generator().manual_seed(sum(map(ord, case.id)))
    values = [make_value(spec, gen) for spec in case.inputs]  # CPU, float64 (ids int64, masks bool)
    variables = [ad.Variable(f"x{i}") for i in range(len(values))]
    feed = {v: x.to(device) for v, x in zip(variables, values)}
    diff = [i for i, spec in enumerate(case.inputs) if spec.differentiable]

    node = case.build(*variables)
    (ours,) = ad.Evaluator([node]).run(feed)
    assert ours.device.type == device, f"{case.id}: the value left the device ({ours.device})"
    t_inputs = [v.clone().requires_grad_(i in diff) for i, v in enumerate(values)]
    theirs = case.ref(*t_inputs)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert_close(ours.cpu(), theirs.detach(), f"{case.id} value on {device}")

    upstream = torch.randn(theirs.shape, generator=gen, dtype=torch.float64)
    g = ad.Variable("upstream")
    feed[g] = upstream.to(device)
    wrt = [variables[i] for i in diff]
    our_grads = ad.Evaluator(ad.gradients(ops.sum_op(ops.mul(node, g)), wrt)).run(feed)
    t_wrt = [t_inputs[i] for i in diff]
    if theirs.requires_grad:
        their_grads = _torch_grads((theirs * upstream).sum(), t_wrt)
    else:  # a piecewise-constant op (comparisons): zero gradient everywhere
        their_grads = [torch.zeros_like(x) for x in t_wrt]
    for i, ours_g, theirs_g in zip(diff, our_grads, their_grads):
        assert ours_g.device.type == device, f"{case.id}: the gradient of input {i} left the device"
        assert ours_g.shape == values[i].shape
        assert_close(ours_g.cpu(), theirs_g, f"{case.id} gradient of input {i} on {device}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_op_on_cuda(case: Case):
    check_op_on("cuda", case)


def train_two_steps(device: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    from lm.train import TrainConfig, Trainer  # noqa: PLC0415

    data = tmp_path / "small.txt"
    data.write_text((ROOT / "lm" / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20_000])
    results = {}
    for preset in ("gpt", "llama"):  # learned positions and tied head; RoPE, RMSNorm and SwiGLU
        config = TrainConfig(
            data=str(data), preset=preset, n_layers=1, n_heads=2, d_model=16, context=8, batch_size=4,
            steps=2, dtype="float64", eval_batches=1,
        )  # fmt: skip
        trainer = Trainer(config, cache_dir=tmp_path / "cache", device=device)
        for _ in range(2):
            trainer.train_step()
        assert all(p.device.type == device for p in trainer.params)
        moments = [*trainer.optimizer.m.values(), *trainer.optimizer.v.values()]
        assert len(moments) == 2 * len(trainer.params) and all(m.device.type == device for m in moments)
        results.update({f"{preset}/{n}": p.cpu() for n, p in trainer.model.params.items()})
        results[f"{preset}/val"] = torch.tensor(trainer.evaluate(), dtype=torch.float64)
    return results


def test_a_training_step_on_cuda_equals_the_cpu_step(tmp_path: Path):
    on_gpu, on_cpu = train_two_steps("cuda", tmp_path), train_two_steps("cpu", tmp_path)
    for name, value in on_cpu.items():
        torch.testing.assert_close(on_gpu[name], value, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
