"""Reference point: Hugging Face `generate` (with its KV cache) on the `seed` shape.

    pip install torch==2.13.0 transformers      # the `fixtures` extra
    python scripts/bench_hf_reference.py [--tokens 150] [--repeats 5]

Random weights of the seed shape (vocab 65, n_embd 128, 2 layers, 4 heads, context 256),
a 16-token prompt, greedy, one torch thread; prints tokens/s (median, min, max).
Compare with `python scripts/bench_engine.py`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=65, n_positions=256, n_embd=128, n_layer=2, n_head=4,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    ids = torch.tensor([[(3 + 7 * i) % 65 for i in range(16)]])
    kwargs = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                  attention_mask=torch.ones_like(ids))
    rates = []
    with torch.no_grad():
        model.generate(ids, **kwargs)  # warmup
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.generate(ids, **kwargs)
            rates.append(args.tokens / (time.perf_counter() - t0))
    print(f"HF generate (torch {torch.__version__}, 1 thread): {statistics.median(rates):,.0f} tokens/s "
          f"median, {min(rates):,.0f}-{max(rates):,.0f} over {args.repeats} repeats")


if __name__ == "__main__":
    main()
