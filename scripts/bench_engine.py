"""Decode speed and allocation of the engine on one shape, flag set by flag set.

    python scripts/bench_engine.py [--model seed] [--tokens 150] [--repeats 7] [--flags none "kv,pool,fused,fastgelu"]

Prints tokens/s (median and range over repeats, interleaved across flag sets) and
NumPy bytes allocated per generated token in steady state (after a warmup run),
counted by smbench's counting NumPy allocator. The figures quoted in closing notes
come from this script.
"""
from __future__ import annotations

import argparse
import statistics
import time

import engine
from smbench import _native


def measure_alloc(model, prompt, tokens) -> tuple[float, float]:
    model.generate(prompt, tokens)  # warmup: a pool sizes itself here
    _native.install()
    try:
        calls0, bytes0 = _native.alloc_counts()
        model.generate(prompt, tokens)
        calls1, bytes1 = _native.alloc_counts()
    finally:
        _native.uninstall()
    return (bytes1 - bytes0) / tokens, (calls1 - calls0) / tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="seed")
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--flags", nargs="+", default=["none", "kv", "kv,pool,fused", "kv,pool,fused,fastgelu"])
    args = ap.parse_args()

    base = engine.load(args.model)
    prompt = [(3 + 7 * i) % base.config.vocab_size for i in range(args.prompt_tokens)]
    models = {f: base.with_flags(f) for f in args.flags}
    walls = {f: [] for f in args.flags}
    for m in models.values():
        m.generate(prompt, args.tokens)
    for _ in range(args.repeats):
        for f, m in models.items():
            t0 = time.perf_counter()
            m.generate(prompt, args.tokens)
            walls[f].append(time.perf_counter() - t0)
    print(f"{args.model}: {args.prompt_tokens}-token prompt, {args.tokens} new tokens, greedy, "
          f"{args.repeats} repeats")
    print(f"{'flags':26s} {'tok/s median':>12s} {'min':>8s} {'max':>8s} {'bytes/token':>12s} {'allocs/token':>12s}")
    for f, m in models.items():
        tps = [args.tokens / w for w in walls[f]]
        b, c = measure_alloc(m, prompt, args.tokens)
        print(f"{f:26s} {statistics.median(tps):12,.0f} {min(tps):8,.0f} {max(tps):8,.0f} {b:12,.0f} {c:12,.1f}")


if __name__ == "__main__":
    main()
