"""The decode loop: prefill, then one step per token, sliding the window at the context length."""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .model import GPT
from .probe import NO_LAYER
from .sampling import SamplingParams, sample

DEFAULT_KEEP_FRACTION = 0.5


def validate_ids(ids, vocab_size: int, n_ctx: int) -> list[int]:
    ids = [int(t) for t in ids]
    if not ids:
        raise InputError("prompt is empty; give at least one token")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise InputError(f"token id {bad[0]} is outside the vocabulary (0..{vocab_size - 1}); "
                         "encode the prompt with the model's tokenizer")
    if len(ids) > n_ctx:
        raise InputError(f"prompt has {len(ids)} tokens but the context holds {n_ctx}; "
                         f"shorten the prompt to at most {n_ctx} tokens")
    return ids


def kept_on_slide(n_ctx: int, keep_fraction: float) -> int:
    if not 0 < keep_fraction < 1:
        raise InputError(f"window keep fraction must be in (0, 1), got {keep_fraction!r}")
    return max(1, int(n_ctx * keep_fraction))


def generate(model: GPT, ids, max_new_tokens: int, params: SamplingParams, seed: int = 0,
             keep_fraction: float = DEFAULT_KEEP_FRACTION) -> list[int]:
    """Generate `max_new_tokens` tokens after `ids`; returns only the new tokens.

    When the window reaches the context length it keeps its last `keep_fraction` of
    the context and continues. Positions are absolute, so with `kv` the cache is
    rebuilt from the kept tokens (a re-prefill); without `kv` every step recomputes
    the window anyway. Both paths see the same tokens at the same positions.
    """
    cfg = model.cfg
    window = validate_ids(ids, cfg.vocab_size, cfg.n_ctx)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    keep = kept_on_slide(cfg.n_ctx, keep_fraction)
    rng = np.random.default_rng(seed)
    probe = model.probe
    model.reset()
    new_tokens: list[int] = []
    for _ in range(max_new_tokens):
        if len(window) > cfg.n_ctx:
            window = window[-keep:]
            model.reset()
        cached = model.cache.length if model.cache is not None else 0
        probe.step_begin(len(window) - cached, len(window))
        logits = model.step_logits(window)
        token = sample(logits, params, rng)
        probe.stage_end("sample", NO_LAYER)
        probe.step_end()
        window.append(token)
        new_tokens.append(token)
    return new_tokens
