"""Benchmark: train the default recipe (500 SGD epochs) with our engine and with plain PyTorch autograd.

Both run in this process on the same corpus, initial weights and batch; prints both times, the ratio
and both final losses. A script, not a test: `python bench/bench_train.py [--epochs N] [--repeat R]`.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from lm.corpus import DEFAULT_CORPUS
from lm.train import TrainConfig, Trainer


def torch_loss(params: dict[str, torch.Tensor], cfg, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same model in plain PyTorch (autograd does the backward)."""
    B, T = ids.shape
    H, dh, D = cfg.n_heads, cfg.d_head, cfg.d_model
    mask = torch.full((T, T), -1e9, dtype=params["tok_emb"].dtype).triu(1)
    x = params["tok_emb"][ids] + params["pos_emb"][:T]  # (B, T, D)
    for i in range(cfg.n_layers):
        p = {w: params[f"layers.{i}.{w}"] for w in ("wq", "wk", "wv", "wo", "w1", "w2")}
        q, k, v = ((x @ p[w]).view(B, T, H, dh).transpose(1, 2) for w in ("wq", "wk", "wv"))  # (B, H, T, dh)
        att = torch.softmax(q @ k.transpose(-1, -2) / dh**0.5 + mask, -1)  # (B, H, T, T)
        h = F.layer_norm(x + (att @ v).transpose(1, 2).reshape(B, T, D) @ p["wo"], (D,))
        x = F.layer_norm(h + torch.relu(h @ p["w1"]) @ p["w2"], (D,))
    logits = x @ params["w_out"]  # (B, T, V)
    return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=0)


def run_ours(epochs: int) -> tuple[float, float, Trainer]:
    trainer = Trainer(DEFAULT_CORPUS, None, TrainConfig(epochs=epochs, eval_every=0))
    start = time.perf_counter()
    for _ in range(epochs - 1):
        trainer.step()
    # The last step also scores memorization: time only the training steps.
    loss, *grads = trainer.graph.evaluator.run(trainer._feed)
    trainer.optimizer.step(trainer._params, grads)
    return time.perf_counter() - start, float(loss), trainer


def run_torch(epochs: int) -> tuple[float, float]:
    trainer = Trainer(DEFAULT_CORPUS, None, TrainConfig(epochs=epochs, eval_every=0))  # same init and batch
    params = {n: p.clone().requires_grad_(True) for n, p in trainer.model.params.items()}
    opt = torch.optim.SGD(params.values(), lr=0.05)
    cfg, ids, targets = trainer.model.config, trainer.batch.ids, trainer.batch.targets
    start = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch_loss(params, cfg, ids, targets)
        loss.backward()
        opt.step()
    return time.perf_counter() - start, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best time is reported")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, 0 = torch's choice (default: 1, see below)"
    )
    args = parser.parse_args()
    # One thread by default: on a busy shared 2-core machine, two OpenMP threads stall at every
    # parallel region whenever a neighbour holds a core (measured: 2 ms steps taking 100-600 ms).
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs, best of {args.repeat}")
    ours, theirs = [], []
    for _ in range(args.repeat):  # interleaved, so a busy moment on a shared machine hits both
        t, our_loss, trainer = run_ours(args.epochs)
        ours.append(t)
        t, torch_loss_value = run_torch(args.epochs)
        theirs.append(t)
    print(f"parameters: {trainer.model.num_parameters():,}")
    print(f"autodiff (ours): {min(ours):.3f} s   final loss {our_loss:.6f}")
    print(f"plain PyTorch:   {min(theirs):.3f} s   final loss {torch_loss_value:.6f}")
    print(f"ratio ours / PyTorch: {min(ours) / min(theirs):.2f}x")


if __name__ == "__main__":
    main()
