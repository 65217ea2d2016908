"""Profile summaries: plain dataclasses that serialize into the run record's "profiles" list."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FunctionTime:
    """A function's self time: samples whose innermost Python frame is this function."""
    function: str
    file: str
    line: int  # the def line
    self_s: float
    share: float  # of all sampled time


@dataclass
class StageTime:
    stage: str
    self_s: float
    share: float


@dataclass
class StageAlloc:
    """Heap allocations attributed to a stage; `numpy_data_*` only NumPy array data buffers
    (what the harness's StageProbe counts), `bytes`/`allocations` everything memray saw."""
    stage: str
    bytes: int
    allocations: int
    numpy_data_bytes: int
    numpy_data_allocations: int


@dataclass
class SiteAlloc:
    """Allocations at one call site: the innermost engine frame of the stack (else the
    innermost frame), with the engine frame that called it (e.g. take <- layer_norm)."""
    function: str
    file: str
    line: int
    caller: str  # "file:line function" of the next engine frame out, or ""
    stages: str  # the stages the site allocated for, largest first
    bytes: int
    allocations: int
    numpy_data_bytes: int


@dataclass
class LineCpu:
    file: str
    line: int
    source: str
    cpu_share: float  # percent of the profile's CPU time: Python + native + system
    python_share: float
    native_share: float


@dataclass
class LineMemory:
    file: str
    line: int
    source: str
    malloc_mb: float  # sampled allocation volume
    mallocs: int
    peak_mb: float


@dataclass
class PyinstrumentSummary:
    duration_s: float
    samples: int
    interval_s: float
    top_self: list[FunctionTime] = field(default_factory=list)
    by_stage: list[StageTime] = field(default_factory=list)


@dataclass
class MemraySummary:
    total_bytes: int
    total_allocations: int
    numpy_data_bytes: int  # allocations whose native stack passes through PyDataMem_User*
    numpy_data_allocations: int
    harness_counter_bytes: int  # smbench._native's own counter over the same call
    high_water_bytes: int
    numpy_cache_bypassed: bool
    by_stage: list[StageAlloc] = field(default_factory=list)
    by_call_site: list[SiteAlloc] = field(default_factory=list)
    high_water_sites: list[SiteAlloc] = field(default_factory=list)


@dataclass
class ScaleneSummary:
    elapsed_s: float
    max_footprint_mb: float
    top_cpu: list[LineCpu] = field(default_factory=list)
    top_memory: list[LineMemory] = field(default_factory=list)


@dataclass
class ProfileSummary:
    """One profiler's run: its version, its artifacts (file names in the run dir), its data."""
    profiler: str
    version: str
    artifacts: dict[str, str]
    data: dict
    prompt_ids: list[int]
    generated: list[int]  # the profiled call's new tokens (same for every profiler, or a bug)
    wall_s: float = 0.0  # the worker's time, profiler start-up and reports included
