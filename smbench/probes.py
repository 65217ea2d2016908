"""Probes the runner attaches to the engine (see engine/probe.py for the protocol).

- StepProbe: per-step wall time only; stage edges are no-ops. Used for timed repeats.
- StageProbe: per-(phase, stage, layer) time and NumPy allocations, plus per-step
  allocations. The bookkeeping runs in C (smbench/_native.c) so the hot loop creates
  no Python objects; NumPy data allocations are counted by a counting allocator
  installed only while the probe is active.
- GCCounter: collections per generation via gc.callbacks.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field

from engine.probe import NullProbe

from . import _native

ALLOC_METHOD = ("NumPy array data buffers: every malloc/calloc/realloc made through NumPy's "
                "PyDataMem handler, counted cumulatively by a counting handler (NumPy's small-buffer "
                "cache bypassed). Python objects (array views, scalars, lists) are not counted.")
PHASES = ("prefill", "decode")


@dataclass
class StageRow:
    phase: str
    stage: str
    layer: int
    calls: int
    total_ns: int
    min_ns: int
    max_ns: int
    alloc_bytes: int
    alloc_calls: int


@dataclass
class StepRow:
    n_new: int
    n_total: int
    ns: int
    alloc_bytes: int
    alloc_calls: int


@dataclass
class ProbeData:
    stages: list[StageRow] = field(default_factory=list)
    steps: list[StepRow] = field(default_factory=list)


def _read() -> ProbeData:
    stages = [StageRow(PHASES[p], s, layer, *rest) for p, s, layer, *rest in _native.read_stages()]
    return ProbeData(stages, [StepRow(*row) for row in _native.read_steps()])


class StepProbe(NullProbe):
    """Times whole steps (C calls at step edges only); stage edges stay no-ops."""

    def __init__(self) -> None:
        self.step_begin = _native.step_begin
        self.step_end = _native.step_end

    def __enter__(self) -> "StepProbe":
        _native.reset()
        return self

    def __exit__(self, *exc) -> None:
        self.data = _read()


class StageProbe(StepProbe):
    """Times every stage and counts NumPy allocations per stage and per step."""

    def __init__(self) -> None:
        super().__init__()
        self.stage_end = _native.stage_end

    def __enter__(self) -> "StageProbe":
        _native.install()
        _native.reset()
        return self

    def __exit__(self, *exc) -> None:
        self.data = _read()
        _native.uninstall()


class GCCounter:
    """Counts garbage collections per generation while active."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.collections[info["generation"]] += 1

    def __enter__(self) -> "GCCounter":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)
