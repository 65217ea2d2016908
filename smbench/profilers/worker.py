"""The process boundary: the parent starts `python -m smbench.profilers.<name> <job-json>`;
the worker runs its collector and leaves `<name>.summary.json` in the run directory.

One profiler per process: memray allows one Tracker per process, scalene must own its
process, and none of them should share a process with timed runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .job import ProfileJob
from .summary import ProfileSummary

Collector = Callable[[ProfileJob], ProfileSummary]


class ProfilerFailed(UserError):
    exit_code = 1


def summary_path(job: ProfileJob) -> Path:
    return Path(job.out_dir) / f"{job.profiler}.summary.json"


def run_worker(job: ProfileJob) -> dict:
    """Run one profiler in a subprocess and return its summary (a ProfileSummary as a dict)."""
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", f"smbench.profilers.{job.profiler}", job.to_json()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = summary_path(job)
    if proc.returncode != 0 or not out.is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ProfilerFailed(f"{job.profiler} worker failed (exit {proc.returncode}): {tail or 'no output'}")
    summary = json.loads(out.read_text())
    out.unlink()  # the record keeps it
    return summary


def serve(collect: Collector) -> None:
    """Worker entry point: `python -m smbench.profilers.<name> '<job json>'`."""
    from engine import EngineError

    job = ProfileJob.from_json(sys.argv[1])
    t0 = time.perf_counter()
    try:
        summary = collect(job)
    except (UserError, EngineError) as exc:  # one line for the parent's message, not a traceback
        sys.exit(str(exc))
    summary.wall_s = time.perf_counter() - t0
    summary_path(job).write_text(json.dumps(asdict(summary), indent=1) + "\n")


def artifact(job: ProfileJob, suffix: str) -> Path:
    """`<run dir>/<profiler><suffix>`, with any earlier file of that name removed."""
    path = Path(job.out_dir) / f"{job.profiler}{suffix}"
    path.unlink(missing_ok=True)
    return path


def run_tool(cmd: list[str], cwd: Path | None = None) -> None:
    """Run a profiler's own CLI from a worker; its failure fails the worker with its message."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        sys.exit(f"{' '.join(cmd[:4])} failed (exit {proc.returncode}): {tail}")
