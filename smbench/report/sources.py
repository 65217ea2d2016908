"""Which records a report draws on: the runs given, a kernels record, profile records.

Records are classified by `kind`. A kernels record or profile records not given on
the command line are looked up in the store; finding none is fine (the report says
how to make them).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..record import RecordError, load_record
from ..store import RECORD_FILE, Store
from .data import Artifact, ProfileInfo, profile_infos as infos_of

MAX_ARTIFACTS = 30
MAX_PROFILES = 3


@dataclass
class Loaded:
    record: dict
    path: Path


@dataclass
class Sources:
    runs: list[Loaded]
    kernels: Loaded | None = None
    kernels_origin: str = ""
    profiles: list[Loaded] = field(default_factory=list)


def load_refs(refs: list[str], store: Store) -> Sources:
    runs, kernels, profiles = [], None, []
    for ref in refs:
        path = store.resolve(ref)
        rec = Loaded(load_record(path), path)
        kind = rec.record.get("kind", "run")
        if kind == "kernels":
            kernels = rec
        elif kind == "profile":
            profiles.append(rec)
        else:
            runs.append(rec)
    if not runs:
        raise UserError(f"none of {', '.join(refs)} is a run record (kind \"run\"); give at least one run id "
                        "from `smbench history`")
    src = Sources(runs, kernels, "given on the command line" if kernels else "", profiles)
    if src.kernels is None:
        src.kernels, src.kernels_origin = find_kernels(store, runs[0].record)
    if not src.profiles:
        src.profiles = find_profiles(store, runs[0].record)
    return src


def _records_of_kind(store: Store, kind: str) -> list[Loaded]:
    out = []
    for row in store.history(limit=100_000):
        if row.kind != kind:
            continue
        try:
            out.append(Loaded(load_record(Path(row.path)), Path(row.path)))
        except RecordError:
            continue
    return out  # newest first


def find_kernels(store: Store, run: dict) -> tuple[Loaded | None, str]:
    found = _records_of_kind(store, "kernels")
    machine = run.get("machine") or {}

    def same(rec: dict) -> bool:
        m = rec.get("machine") or {}
        return (m.get("cpu"), m.get("hostname")) == (machine.get("cpu"), machine.get("hostname"))

    for preference, origin in ((lambda r: same(r) and not r["workload"].get("quick"), "newest full run on this "
                                                                                      "machine in the store"),
                               (same, "newest on this machine in the store (a --quick run)"),
                               (lambda r: True, "newest in the store (another machine)")):
        for rec in found:
            if preference(rec.record):
                return rec, origin
    return None, ""


def find_profiles(store: Store, run: dict) -> list[Loaded]:
    """Profile records that name this run, else the newest ones of the same workload."""
    found = _records_of_kind(store, "profile")
    naming = [p for p in found if run["run_id"] in json.dumps({k: v for k, v in p.record.items() if k != "run_id"})]
    if naming:
        return naming[:MAX_PROFILES]
    name = run["workload"].get("name")
    return [p for p in found if (p.record.get("workload") or {}).get("name") == name][:MAX_PROFILES]


def artifacts(run_dir: Path, out_dir: Path) -> list[Artifact]:
    """Files beside a record (profiler outputs), linked relative to the report."""
    if not run_dir.is_dir():
        return []
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != RECORD_FILE)[:MAX_ARTIFACTS]
    out = []
    for p in files:
        try:
            href = os.path.relpath(p.resolve(), out_dir.resolve())
        except ValueError:  # another drive
            href = p.resolve().as_uri()
        out.append(Artifact(str(p.relative_to(run_dir)), href.replace(os.sep, "/"), p.stat().st_size))
    return out


def profile_infos(src: Sources, out_dir: Path) -> list[ProfileInfo]:
    return [info for p in src.profiles for info in infos_of(p.record, artifacts(p.path.parent, out_dir))]
