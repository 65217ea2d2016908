"""Parent side of `smbench profile`: run each profiler's worker, keep their summaries in a record.

The record is an ordinary run record (kind "profile", no timed results) with a
"profiles" list; the artifacts sit next to it in profiles/runs/<run-id>/.
"""
from __future__ import annotations

import time
from pathlib import Path

from engine import OptFlags

from ..record import make_record
from ..store import Store
from ..workloads import Workload
from . import require
from .job import ProfileJob
from .worker import ProfilerFailed, run_worker


def profile_workload(workload: Workload, flags: str, profilers: list[str], store: Store,
                     progress=lambda name: None) -> tuple[dict, Path]:
    """Profile `workload` (its new_tokens already set) under each profiler; save and return the record.

    A profiler that fails is listed under "profile_errors" and the others are kept; only
    when every profiler failed is there no record (the first failure is raised).
    """
    for name in profilers:  # every missing profiler is reported before any work starts
        require(name)
    flags = str(OptFlags.parse(flags))
    record = make_record(workload.to_record(), [], [flags], [], 0.0, kind="profile")
    run_dir = store.run_dir(record["run_id"])
    t0, summaries, errors = time.perf_counter(), [], []
    for name in profilers:
        progress(name)
        job = ProfileJob(name, workload.source or workload.name, flags, workload.new_tokens, str(run_dir))
        try:
            summaries.append(run_worker(job))
        except ProfilerFailed as exc:
            errors.append({"profiler": name, "error": str(exc)})
    if not summaries:
        raise ProfilerFailed(errors[0]["error"])
    record["prompt_ids"] = summaries[0]["prompt_ids"]
    record["profiles"] = summaries
    record["profile_errors"] = errors
    record["elapsed_s"] = time.perf_counter() - t0
    return record, store.save(record)
