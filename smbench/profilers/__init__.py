"""Profiler adapters: run a workload's decode loop under pyinstrument, memray or scalene.

Each profiler runs in a process of its own (`python -m smbench.profilers.<name> <job>`),
apart from timed runs, writes its native artifacts into the run directory and returns
a summary that goes into a run record of kind "profile".

Layout (after pyinstrument's own): `job` is the worker-side driver, the per-profiler
modules are collectors, `summary` holds the serializable data, `stages` and
`transforms` are pure transforms of profiler data, `render` draws the tables, and
`session` runs the workers from the parent and builds the record.
"""
from __future__ import annotations

import importlib.util

from ..errors import UserError

PROFILERS = ("pyinstrument", "memray", "scalene")
INSTALL_HINT = "pip install 'smbench[profile]'"


class MissingProfiler(UserError):
    exit_code = 2


def available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def require(name: str) -> None:
    """Raise a one-line error with the install command if a profiler is not installed."""
    if name not in PROFILERS:
        raise UserError(f"unknown profiler {name!r}; choose one of {', '.join(PROFILERS)} or all")
    if not available(name):
        raise MissingProfiler(f"{name} is not installed; install the profilers with `{INSTALL_HINT}`")


def selected(choice: str) -> list[str]:
    return list(PROFILERS) if choice == "all" else [choice]
