"""memray collector: every heap allocation of the decode loop, with Python and native stacks.

The stage probe's counting NumPy allocator (smbench._native) is installed while
tracking, so NumPy's small-buffer cache is bypassed exactly as in `smbench run`. Native
stacks tell NumPy array data buffers (allocated through PyDataMem_User*, what the
harness counts) from everything else NumPy and Python allocate (ufunc iterator
buffers, Python objects).

Artifacts: memray.bin (the capture: `memray tree|summary|table memray.bin`),
memray-flamegraph.html and memray-stats.json (memray's own reports).
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from importlib.metadata import version

from .job import ProfileJob, prepare
from .stages import StageMap
from .summary import MemraySummary, ProfileSummary
from .transforms import RELEASES, allocations_by
from .worker import artifact, run_tool, serve

TOP = 10
NUMPY_DATA_ALLOCATORS = ("PyDataMem_UserNEW", "PyDataMem_UserNEW_ZEROED", "PyDataMem_UserRENEW")
NATIVE_DEPTH = 4  # the PyDataMem_User* frame sits right above the allocator


def _track(decode, capture) -> tuple[list[int], int]:
    """Run `decode` under one memray Tracker: its tokens, and the bytes the harness's counter saw."""
    import memray

    from .. import _native

    _native.install()
    try:
        before = _native.alloc_counts()[1]
        with memray.Tracker(capture, native_traces=True, trace_python_allocators=False):
            generated = decode()
        return generated, _native.alloc_counts()[1] - before
    finally:
        _native.uninstall()


def _plain(records):
    """memray records -> (allocator, size, count, Python stack, is NumPy data) for the transforms."""
    import memray

    for r in records:
        kind = memray.AllocatorType(r.allocator).name
        if kind in RELEASES:
            continue
        native = r.native_stack_trace(max_stacks=NATIVE_DEPTH)
        yield (kind, r.size, r.n_allocations, r.stack_trace(),
               any(f[0] in NUMPY_DATA_ALLOCATORS for f in native))


def summarize(capture, harness_bytes: int, stage_map: StageMap) -> MemraySummary:
    import memray

    reader = memray.FileReader(str(capture))
    by_stage, by_site = allocations_by(_plain(reader.get_allocation_records()), stage_map, TOP)
    _, at_peak = allocations_by(_plain(reader.get_high_watermark_allocation_records(merge_threads=True)),
                                stage_map, TOP)
    totals = [sum(getattr(s, k) for s in by_stage)
              for k in ("bytes", "allocations", "numpy_data_bytes", "numpy_data_allocations")]
    return MemraySummary(*totals, harness_bytes, reader.metadata.peak_memory, True, by_stage, by_site, at_peak)


def collect(job: ProfileJob) -> ProfileSummary:
    prep = prepare(job)
    paths = {"capture": artifact(job, ".bin"), "flamegraph": artifact(job, "-flamegraph.html"),
             "stats": artifact(job, "-stats.json")}
    generated, harness_bytes = _track(prep.decode, paths["capture"])
    memray_cli = [sys.executable, "-m", "memray"]
    run_tool([*memray_cli, "flamegraph", "-f", "-o", str(paths["flamegraph"]), str(paths["capture"])])
    run_tool([*memray_cli, "stats", "--json", "-f", "-o", str(paths["stats"]), str(paths["capture"])])
    data = summarize(paths["capture"], harness_bytes, StageMap.from_engine())
    return ProfileSummary("memray", version("memray"), {k: p.name for k, p in paths.items()}, asdict(data),
                          prep.prompt_ids, generated)


if __name__ == "__main__":
    serve(collect)
