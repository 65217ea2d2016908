"""Optimization flags: each removes one cost of the naive path."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

from .errors import FlagError

FLAG_HELP = {
    "pool": "preallocated buffers and out=/in-place ops (no per-op allocation)",
    "kv": "K/V cache: each step computes only the new position",
    "fused": "merged QKV, bias folded into matmuls, residual+LayerNorm, single-query attention",
    "fastgelu": "x*sigmoid(1.702x) instead of the exact GELU (approximate, bounded error)",
}
EXACT_FLAGS = ("pool", "kv", "fused")


@dataclass(frozen=True)
class OptFlags:
    pool: bool = False
    kv: bool = False
    fused: bool = False
    fastgelu: bool = False

    @classmethod
    def parse(cls, spec: "str | OptFlags | None") -> "OptFlags":
        """Parse "kv,pool" (also "", "none", "naive" for no flags)."""
        if isinstance(spec, OptFlags):
            return spec
        if spec is None:
            return cls()
        names = [part.strip().lower() for part in str(spec).replace("+", ",").split(",")]
        names = [n for n in names if n and n not in ("none", "naive")]
        valid = [f.name for f in fields(cls)]
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise FlagError(
                f"unknown flag {unknown[0]!r} in {spec!r}; valid flags: {', '.join(valid)} "
                "(comma-separated, or 'none')"
            )
        return cls(**{n: True for n in names})

    @property
    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]

    @property
    def is_exact(self) -> bool:
        return not self.fastgelu

    def __str__(self) -> str:
        return ",".join(self.names) or "none"


def all_flag_sets(names: tuple[str, ...] | None = None) -> list[OptFlags]:
    """Every combination of the given flags (default: all), naive first."""
    names = names or tuple(FLAG_HELP)
    combos = []
    for r in range(len(names) + 1):
        for subset in itertools.combinations(names, r):
            combos.append(OptFlags(**{n: True for n in subset}))
    return combos
