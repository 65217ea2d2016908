"""Run records: one JSON document per run, schema-versioned and validated on load."""
from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path

from .errors import UserError
from .machine import git_state, machine_facts
from .probes import ALLOC_METHOD

SCHEMA = "smbench.run"
SCHEMA_VERSION = 1
TIMING_METHOD = ("wall time of Model.generate per repeat (prefill + decode + sampling, model load "
                 "excluded); per-step times from C clock reads at step edges; repeats interleaved "
                 "across flag sets")
REQUIRED = ("schema", "schema_version", "run_id", "created", "workload", "results", "machine")


class RecordError(UserError):
    pass


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def make_record(workload: dict, prompt_ids: list[int], flag_sets: list[str], results: list[dict],
                elapsed_s: float, kind: str = "run") -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "run_id": new_run_id(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "workload": workload,
        "prompt_ids": prompt_ids,
        "flag_sets": flag_sets,
        "machine": machine_facts(),
        "git": git_state(),
        "alloc_method": ALLOC_METHOD,
        "timing_method": TIMING_METHOD,
        "elapsed_s": elapsed_s,
        "results": results,
    }


def validate_record(obj, source: str) -> dict:
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise RecordError(f"{source}: not an smbench run record (no \"schema\": \"{SCHEMA}\"); "
                          "pass a record.json written by `smbench run`")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(f"{source}: record schema version {version!r}, this smbench reads version "
                          f"{SCHEMA_VERSION}; re-run the workload or use the matching smbench")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise RecordError(f"{source}: record is missing {missing[0]!r}; the file is truncated or edited")
    if not isinstance(obj["workload"], dict):
        raise RecordError(f"{source}: record 'workload' is malformed; the file is truncated or edited")
    if not isinstance(obj["results"], list) or not all(
            isinstance(r, dict) and isinstance(r.get("flags"), str) and isinstance(r.get("metrics"), dict)
            for r in obj["results"]):
        raise RecordError(f"{source}: record 'results' is malformed; the file is truncated or edited")
    return obj


def read_json_document(path: Path, noun: str, missing: str, fix: str, error=RecordError):
    """Parse a JSON file, turning every way it can be unreadable into one `error` line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {noun} ({exc}){fix}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise error(f"{path}: {noun} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                    f"the file is corrupt{fix}") from None


def load_record(path: Path) -> dict:
    obj = read_json_document(path, "record", "no such record file; give a run id or a record.json path", "")
    return validate_record(obj, str(path))
