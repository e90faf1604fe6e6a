"""BPE training and encoding speed against Hugging Face `tokenizers` (Rust) and `tiktoken` (Rust), same run.

Training: corpus.en (133 KB, the course fixture) to a vocabulary of 500 with `<|endoftext|>`, ours vs
`tokenizers`' BpeTrainer (byte-level). Encoding: GPT-2's tokenizer on ~1 MB of TinyStories text, ours vs
tiktoken's gpt2 encoding and `tokenizers`' GPT-2, all built offline from the same files. Sides alternate
each round (the order rotates); each ratio comes from one round, printed as min / median / max.
Run: .venv/bin/python bench/bench_bpe.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lm.tokenizers import BPETokenizer, train_bpe_file  # noqa: E402
from lm.tokenizers.bpe import GPT2_MERGES, GPT2_VOCAB  # noqa: E402
from lm.tokenizers.pretokenize import GPT2_PATTERN  # noqa: E402

CORPUS = ROOT / "lm/data/corpus.en"
EOT = "<|endoftext|>"


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def hf_trainer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def run():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=500, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )  # fmt: skip
        tok.train([str(path)], trainer)
        return tok

    return run


def tiktoken_gpt2():
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    with tempfile.TemporaryDirectory() as folder:
        merges = Path(folder) / "vocab.bpe"  # tiktoken skips the first line: put GPT-2's `#version` back
        merges.write_text("#version: 0.2\n" + GPT2_MERGES.read_text(encoding="utf-8"), encoding="utf-8")
        os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local files, cache nothing
        ranks = data_gym_to_mergeable_bpe_ranks(str(merges), str(GPT2_VOCAB))
    return tiktoken.Encoding(
        name="gpt2-offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256},
        explicit_n_vocab=50257,
    )  # fmt: skip


def hf_gpt2():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(GPT2_VOCAB), str(GPT2_MERGES)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(sides: dict, rounds: int) -> dict[str, list[float]]:
    """Time each side once per round, rotating which goes first."""
    names = list(sides)
    times = {name: [] for name in names}
    for fn in sides.values():
        fn()  # warm up: first-call costs (regex tables, allocations) are not what we compare
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(timed(sides[name]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; the machine is shared, figures are under load")

    path = CORPUS
    print(f"\nTraining: {path.name} ({path.stat().st_size:,} bytes) to vocab 500 with {EOT}, {args.rounds} rounds")
    times = bench({"ours": lambda: train_bpe_file(path, 500, [EOT]), "hf tokenizers": hf_trainer(path)}, args.rounds)
    for name, values in times.items():
        print(f"  {name:14} median {statistics.median(values) * 1000:7.1f} ms   (min {min(values) * 1000:.1f})")
    ratios = [o / h for o, h in zip(times["ours"], times["hf tokenizers"])]
    print(f"  ours / hf time ratio: {spread(ratios)} (min / median / max)")

    ours = BPETokenizer.gpt2()
    tik, hf = tiktoken_gpt2(), hf_gpt2()
    stories = (ROOT / "lm/data/tinystories-sample-b.txt").read_text(encoding="utf-8")
    text = (stories.replace(EOT, "") + "\n") * 40  # ~1.1 MB of story text
    n_bytes = len(text.encode("utf-8"))
    assert ours.encode(text) == tik.encode_ordinary(text) == hf.encode(text).ids, "the three disagree"
    print(f"\nEncoding {n_bytes / 1e6:.2f} MB of TinyStories text with GPT-2's tokenizer, {args.rounds} rounds")
    sides = {"ours": lambda: ours.encode(text), "tiktoken": lambda: tik.encode_ordinary(text),
             "hf tokenizers": lambda: hf.encode(text)}  # fmt: skip
    times = bench(sides, args.rounds)
    for name, values in times.items():
        print(f"  {name:14} median {n_bytes / statistics.median(values) / 1e6:6.1f} MB/s")
    for peer in ("tiktoken", "hf tokenizers"):
        ratios = [p / o for o, p in zip(times["ours"], times[peer])]  # our throughput / theirs
        print(f"  ours / {peer} throughput: {spread(ratios)} (min / median / max)")


if __name__ == "__main__":
    main()
