"""Benchmark: per-token decode time against context length, with and without the KV cache, against
plain PyTorch.

A random-weight classic model (d_model 256, 4 layers, 4 heads, context 512, float32 by default).
Without a cache each new token reruns the full forward over all t positions; with it one step
computes only the new position and attends over the cached keys and values. The PyTorch side is the
reference transformer of bench/reference_model.py (no autograd), the one the golden tests check us
against. Each round times the four loops back to back in an order that rotates; per t the script
prints the medians and the cached-step ratio ours / torch as min / median / max over the rounds.

    .venv/bin/python bench/bench_decode.py [--rounds 7] [--repeat 20] [--total 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.reference_model import reference_decode_step, reference_forward  # noqa: E402
from lm.generate import KVCache, cached_step, generate  # noqa: E402
from lm.model import LanguageModel, ModelConfig  # noqa: E402


def best_seconds(fn, repeat: int) -> float:
    """Fastest of `repeat` runs (on a shared machine the slower runs measure the neighbours)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7, help="rounds, each timing all four loops (at least 5)")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each loop per round (the fastest counts)")
    parser.add_argument("--total", type=int, default=256, help="tokens for the end-to-end total (default: 256)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, 0 = torch's choice (default: 1, see below)"
    )
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5: the spread of fewer says little")
    # One thread by default: on a busy shared 2-core machine, two OpenMP threads stall at every
    # parallel region whenever a neighbour holds a core (measured: 2 ms steps taking 100-600 ms).
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ModelConfig(args.vocab, args.context, args.d_model, 4 * args.d_model, args.layers, args.heads, 0, args.dtype)
    model = LanguageModel(cfg)  # no tokenizer: ids in and out, and no end token to stop at
    p = model.params
    ids = torch.randint(0, args.vocab, (args.context,), generator=torch.Generator().manual_seed(0))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; d_model {cfg.d_model}, {cfg.n_layers} layers, "
        f"{cfg.n_heads} heads, context {cfg.context}, {args.dtype}, {model.num_parameters():,} parameters"
    )
    print(f"per-token ms at context length t (the step reading t positions), median over {args.rounds} rounds")
    header = f"{'t':>5} {'no cache':>9} {'cache':>7} | {'torch full':>10} {'torch cache':>11}"
    print(f"{header} | cached step ours / torch, min / median / max")
    lengths = [t for t in (8, 32, 128, 512) if t <= cfg.context]
    with torch.no_grad():  # only the reference could record autograd; ours never does
        for t in lengths:
            prefix = ids[:t][None]  # (1, t)
            cache = KVCache(model)
            out = model.forward(prefix[:, :-1], ("keys", "values"))
            keys, values = out["keys"], out["values"]
            _, past = reference_forward(p, cfg, prefix[:, :-1])
            last = ids[t - 1 : t]  # (1,)

            def ours_step(cache=cache, keys=keys, values=values, token=int(ids[t - 1])):
                cache.update(keys, values)  # back to t - 1 cached positions
                cached_step(model, token, cache)

            loops = {
                "full": lambda prefix=prefix: model.forward(prefix, ("probs",)),
                "cache": ours_step,
                "torch full": lambda prefix=prefix: torch.softmax(reference_forward(p, cfg, prefix)[0], -1),
                "torch cache": lambda last=last, past=past: torch.softmax(
                    reference_decode_step(p, cfg, last, past)[0], -1
                ),
            }
            for fn in loops.values():  # warm-up: plans, generated code, allocator
                fn(), fn()
            times: dict[str, list[float]] = {name: [] for name in loops}
            ratios = []
            for r in range(args.rounds):
                names = list(loops)
                for name in names[r % 4 :] + names[: r % 4]:
                    times[name].append(best_seconds(loops[name], args.repeat))
                ratios.append(times["cache"][-1] / times["torch cache"][-1])
            med = {name: statistics.median(v) * 1e3 for name, v in times.items()}
            print(
                f"{t:>5} {med['full']:>9.2f} {med['cache']:>7.2f} | {med['torch full']:>10.2f} "
                f"{med['torch cache']:>11.2f} | {spread(ratios)}"
            )

        # End to end: lm.generate's greedy decoding of `total` tokens from one token, with and without the cache.
        T = min(args.total, cfg.context)
        full = generate(model, [int(ids[0])], T - 1, use_cache=False)
        cached = generate(model, [int(ids[0])], T - 1, use_cache=True)
        no_cache_total, cache_total = full.seconds, cached.seconds
        seq, seq2 = full.new_ids, cached.new_ids
    same = "same tokens" if seq == seq2 else "DIFFERENT tokens"
    print(
        f"total for {T} tokens: no cache {no_cache_total:.2f} s, cache {cache_total:.2f} s, "
        f"speedup {no_cache_total / cache_total:.1f}x ({same})"
    )


if __name__ == "__main__":
    main()
