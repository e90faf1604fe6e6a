"""Benchmark: per-token decode time against context length, with and without the KV cache.

A random-weight model (d_model 256, 4 layers, 4 heads, context 512, float32 by default). Without a
cache, each new token reruns the full forward over all t positions; with it, one step computes only
the new position and attends over the cached keys and values. The same two loops in plain PyTorch
(no autograd) run in this process for reference. A script, not a test: `python bench/bench_decode.py`.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from lm.generate import KVCache, cached_step
from lm.model import LanguageModel, ModelConfig
from lm.tokenizer import Tokenizer


def timed(fn, repeat: int) -> float:
    """Fastest seconds of fn() over `repeat` runs, after two warm-ups (the minimum, not the mean:
    on a shared machine the other runs measure the neighbours)."""
    fn(), fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def torch_layers(p: dict, cfg: ModelConfig, x: torch.Tensor, past: list | None):
    """Plain-torch decoder over x (t_new, D) with optional cached (k, v) per layer; returns logits, cache."""
    H, dh, D = cfg.n_heads, cfg.d_head, cfg.d_model
    new_cache = []
    for i in range(cfg.n_layers):
        w = {n: p[f"layers.{i}.{n}"] for n in ("wq", "wk", "wv", "wo", "w1", "w2")}
        q, k, v = ((x @ w[n]).view(-1, H, dh).transpose(0, 1) for n in ("wq", "wk", "wv"))  # (H, t_new, dh)
        if past is not None:
            k, v = torch.cat([past[i][0], k], 1), torch.cat([past[i][1], v], 1)  # (H, t, dh)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (H, t_new, t)
        if past is None:
            scores = scores + torch.full(scores.shape[-2:], -1e9, dtype=x.dtype).triu(1)
        att = torch.softmax(scores, -1) @ v  # (H, t_new, dh)
        h = F.layer_norm(x + att.transpose(0, 1).reshape(-1, D) @ w["wo"], (D,))
        x = F.layer_norm(h + torch.relu(h @ w["w1"]) @ w["w2"], (D,))
        new_cache.append((k, v))
    return torch.softmax(x @ p["w_out"], -1), new_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--total", type=int, default=256, help="tokens for the end-to-end total (default: 256)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, 0 = torch's choice (default: 1, see below)"
    )
    args = parser.parse_args()
    # One thread by default: on a busy shared 2-core machine, two OpenMP threads stall at every
    # parallel region whenever a neighbour holds a core (measured: 2 ms steps taking 100-600 ms).
    if args.threads:
        torch.set_num_threads(args.threads)
    tok = Tokenizer(["<pad>"] + [f"w{i}" for i in range(1, args.vocab)])
    cfg = ModelConfig(len(tok), args.context, args.d_model, 4 * args.d_model, args.layers, args.heads, 0, args.dtype)
    model = LanguageModel.create(cfg, tok)
    p = model.params
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, len(tok), (args.context,), generator=gen)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; d_model {cfg.d_model}, {cfg.n_layers} layers, "
        f"{cfg.n_heads} heads, context {cfg.context}, {args.dtype}, {model.num_parameters():,} parameters"
    )
    print("per-token time (ms) at context length t: the step that reads t positions and predicts position t + 1")
    print(f"{'t':>5} {'no cache':>10} {'cache':>8} {'speedup':>8} | {'torch full':>10} {'torch cache':>11}")
    lengths = [t for t in (8, 16, 32, 64, 128, 256, 512) if t <= cfg.context]
    with torch.no_grad():  # only the plain-torch reference could record autograd; ours never does
        for t in lengths:
            prefix = ids[:t][None]  # (1, t)
            full = timed(lambda prefix=prefix: model.forward(prefix, ("probs",)), args.repeat)
            cache = KVCache(model)
            cache.update(*[model.forward(prefix[:, :-1], ("keys", "values"))[n] for n in ("keys", "values")])
            keys, values = cache.keys, cache.values

            def step(t=t, cache=cache, keys=keys, values=values):
                cache.update(keys, values)  # back to t - 1 cached positions
                cached_step(model, int(ids[t - 1]), cache)

            cached = timed(step, args.repeat)
            x = p["tok_emb"][ids[:t]] + p["pos_emb"][:t]  # (t, D)
            torch_full = timed(lambda x=x: torch_layers(p, cfg, x, None), args.repeat)
            _, past = torch_layers(p, cfg, x[:-1], None)
            torch_cached = timed(lambda x=x, past=past: torch_layers(p, cfg, x[-1:], past), args.repeat)
            print(
                f"{t:>5} {full * 1e3:>10.2f} {cached * 1e3:>8.2f} {full / cached:>7.1f}x | "
                f"{torch_full * 1e3:>10.2f} {torch_cached * 1e3:>11.2f}"
            )

        # End to end: generate `total` tokens greedily from one token, with and without the cache.
        T = min(args.total, cfg.context)
        start = time.perf_counter()
        seq = [int(ids[0])]
        for _ in range(T - 1):
            seq.append(int(model.forward(torch.tensor([seq]), ("logits",))["logits"][0, -1].argmax()))
        no_cache_total = time.perf_counter() - start
        start = time.perf_counter()
        cache, seq2 = KVCache(model), [int(ids[0])]
        for _ in range(T - 1):
            probs, _ = cached_step(model, seq2[-1], cache)
            seq2.append(int(probs.argmax()))
        cache_total = time.perf_counter() - start
    same = "same tokens" if seq == seq2 else "DIFFERENT tokens"
    print(
        f"total for {T} tokens: no cache {no_cache_total:.2f} s, cache {cache_total:.2f} s, "
        f"speedup {no_cache_total / cache_total:.1f}x ({same})"
    )


if __name__ == "__main__":
    main()
