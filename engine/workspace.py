"""Where op outputs go: the difference between the naive path and the `pool` flag.

Every op in the model writes into `ws.take(name, shape)`. Without pooling that is a
fresh array each call, exactly the allocation pattern of plain `a = b + c` NumPy
code. With pooling it is a named buffer reused across ops, layers and steps, so
steady-state decoding allocates nothing. A buffer grows (doubling) when a longer
sequence first needs it; after a warmup run of the same length it never does.
"""
from __future__ import annotations

import math

import numpy as np


class Workspace:
    def __init__(self, pooled: bool, dtype=np.float32):
        self.pooled = pooled
        self.dtype = dtype
        self._flat: dict[str, np.ndarray] = {}
        self._views: dict[tuple, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if not self.pooled:
            return np.empty(shape, self.dtype)
        view = self._views.get((name, shape))
        if view is None:
            view = self._make_view(name, shape)
        return view

    def _make_view(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.size < size:
            capacity = max(size, 2 * flat.size) if flat is not None else size
            flat = np.zeros(capacity, self.dtype)
            self._flat[name] = flat
            self._views = {k: v for k, v in self._views.items() if k[0] != name}
        view = flat[:size].reshape(shape)
        self._views[(name, shape)] = view
        return view

    @property
    def nbytes(self) -> int:
        return sum(buf.nbytes for buf in self._flat.values())
