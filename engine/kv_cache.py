"""Preallocated per-layer K/V cache.

K is stored transposed, [layer, head, head_dim, position], so scores for a query are
`q @ K[:, :, :T]` with positions contiguous; V is [layer, head, position, head_dim].
"""
from __future__ import annotations

import numpy as np

from .config import ModelConfig


class KVCache:
    def __init__(self, cfg: ModelConfig):
        shape = (cfg.n_layer, cfg.n_head, cfg.head_dim, cfg.n_ctx)
        self.kt = np.zeros(shape, np.float32)
        self.v = np.zeros((cfg.n_layer, cfg.n_head, cfg.n_ctx, cfg.head_dim), np.float32)
        self.length = 0  # positions currently held

    def reset(self) -> None:
        self.length = 0

    @property
    def nbytes(self) -> int:
        return self.kt.nbytes + self.v.nbytes
