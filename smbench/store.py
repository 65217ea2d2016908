"""Where runs live: <root>/<run-id>/record.json plus a SQLite index for `smbench history`.

The JSON records are the source of truth; the index can always be rebuilt from them.
Nothing here deletes a record: unreadable files are reported and skipped, and an
unreadable index is moved aside and rebuilt.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from engine.weights import atomic_write_bytes

from .errors import UserError
from .record import RecordError, load_record

DEFAULT_ROOT = Path("profiles/runs")
INDEX_FILE = "index.sqlite"
RECORD_FILE = "record.json"
_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, path TEXT NOT NULL, created TEXT, kind TEXT, workload TEXT,
    flags TEXT, git_commit TEXT, best_flags TEXT, best_tokens_per_s REAL, naive_tokens_per_s REAL
);
CREATE INDEX IF NOT EXISTS runs_workload ON runs (workload);
"""


@dataclass
class HistoryRow:
    run_id: str
    path: str
    created: str
    kind: str
    workload: str
    flags: str
    git_commit: str | None
    best_flags: str | None
    best_tokens_per_s: float | None
    naive_tokens_per_s: float | None


def _summary(record: dict, path: Path) -> tuple:
    def tps(r):
        return (r["metrics"].get("tokens_per_s") or {}).get("median") or 0.0

    results = record["results"]
    best = max(results, key=tps) if results else None
    naive = next((r for r in results if r["flags"] == "none"), None)
    return (record["run_id"], str(path), record.get("created"), record.get("kind", "run"),
            record["workload"].get("name"), " | ".join(r["flags"] for r in results),
            (record.get("git") or {}).get("commit"), best["flags"] if best else None,
            tps(best) if best else None, tps(naive) if naive else None)


class Store:
    def __init__(self, root: Path | str = DEFAULT_ROOT):
        self.root = Path(root)
        self.warnings: list[str] = []
        self._checked = False  # the index passed an integrity check in this process

    # ---- records ----------------------------------------------------------------
    def save(self, record: dict) -> Path:
        path = self.root / record["run_id"] / RECORD_FILE
        atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
        self._index_one(record, path)
        return path

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def resolve(self, ref: str) -> Path:
        """A record path, a run directory, or a run id (unique prefix) from the index."""
        path = Path(ref)
        if path.is_file():
            return path
        if path.is_dir() and (path / RECORD_FILE).is_file():
            return path / RECORD_FILE
        if path.is_absolute() or len(path.parts) > 1 or path.suffix == ".json":
            raise RecordError(f"{ref}: no such record file or run directory; give a run id from "
                              "`smbench history` or a path to a record.json")
        direct = self.root / ref / RECORD_FILE
        if direct.is_file():
            return direct
        matches = sorted(p for p in self.root.glob(f"{ref}*/{RECORD_FILE}")) if self.root.is_dir() else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"run id {ref!r} is ambiguous ({len(matches)} runs match); give more characters")
        raise UserError(f"no run {ref!r} under {self.root}; give a run id from `smbench history` "
                        "or a path to a record.json")

    def load(self, ref: str) -> dict:
        return load_record(self.resolve(ref))

    # ---- index ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        db_path = self.root / INDEX_FILE
        try:
            return self._open_checked(db_path)
        except sqlite3.DatabaseError as exc:
            aside = db_path.with_name(f"{INDEX_FILE}.corrupt-{time.time_ns()}")
            os.replace(db_path, aside)
            self.warnings.append(f"{db_path}: unreadable index ({exc}); moved to {aside.name} and rebuilt")
            conn = sqlite3.connect(db_path)
            conn.executescript(_SCHEMA_SQL)
            return conn

    def _open_checked(self, db_path: Path) -> sqlite3.Connection:
        """Open the index; raise DatabaseError if it is corrupt anywhere, not only in its header."""
        conn = sqlite3.connect(db_path)
        try:
            conn.executescript(_SCHEMA_SQL)
            if not self._checked:
                check = conn.execute("PRAGMA quick_check").fetchone()
                if not check or check[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else '?'}")
                self._checked = True
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _index_one(self, record: dict, path: Path) -> None:
        with self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)", _summary(record, path))

    def sync(self) -> None:
        """Index records on disk that the index does not know yet; report unreadable ones."""
        if not self.root.is_dir():
            return
        with self._connect() as conn:
            known = {row[0] for row in conn.execute("SELECT path FROM runs")}
            for path in sorted(self.root.glob(f"*/{RECORD_FILE}")):
                if str(path) in known:
                    continue
                try:
                    record = load_record(path)
                except RecordError as exc:
                    self.warnings.append(f"skipped {exc}")
                    continue
                conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)",
                             _summary(record, path))
            for (path,) in list(conn.execute("SELECT path FROM runs")):
                if not Path(path).exists():
                    self.warnings.append(f"indexed record {path} is missing on disk; listed anyway")

    def history(self, workload: str | None = None, flags: str | None = None,
                commit: str | None = None, limit: int = 50) -> list[HistoryRow]:
        self.sync()
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if workload:
            sql += " AND workload = ?"
            args.append(workload)
        if flags:
            sql += " AND (' | ' || flags || ' | ') LIKE ?"
            args.append(f"% {flags} %")
        if commit:
            sql += " AND git_commit LIKE ?"
            args.append(f"{commit}%")
        sql += " ORDER BY created DESC, run_id DESC LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            return [HistoryRow(*row) for row in conn.execute(sql, args)]
