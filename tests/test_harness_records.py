"""Run records, the run store and its history index, and record comparison.

Two real tiny runs (seed model, 8 tokens, naive and kv) are made once per module; the
corrupt-file tests write garbage next to them in a temporary runs directory.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sqlite3

import pytest

from smbench.compare import COMPARED, compare_records, compare_table
from smbench.errors import UserError
from smbench.metrics import build_results
from smbench.record import SCHEMA_VERSION, RecordError, load_record, make_record, validate_record
from smbench.runner import Runner
from smbench.store import INDEX_FILE, RECORD_FILE, Store
from smbench.workloads import Workload

FLAG_SETS = ("none", "kv")


def tiny_record(repeats: int = 3) -> dict:
    wl = Workload(name="tiny", model="seed", prompt="We are", new_tokens=8, repeats=repeats, warmup=0,
                  flag_sets=FLAG_SETS, source="<test>")
    wr = Runner(wl, wl.flag_sets).run()
    data = wl.to_dict()
    data["targets"] = []
    return make_record(data, wr.prompt_ids, wr.flag_sets, build_results(wr), wr.elapsed_s)


@pytest.fixture(scope="module")
def records() -> tuple[dict, dict]:
    a, b = tiny_record(), tiny_record()
    assert a["run_id"] != b["run_id"]
    return a, b


def as_json(obj) -> dict:
    return json.loads(json.dumps(obj))


def snapshot(root) -> dict:
    """Every file under root with its bytes, to prove nothing was deleted or rewritten."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- records -----------------------------------------------------------------------------

def test_store_save_then_load_round_trips(tmp_path, records):
    a, _ = records
    store = Store(tmp_path)
    path = store.save(a)
    assert path == tmp_path / a["run_id"] / RECORD_FILE
    assert store.load(a["run_id"]) == as_json(a)
    assert store.load(str(path)) == as_json(a)
    assert store.load(str(path.parent)) == as_json(a)
    assert store.load(a["run_id"][:18]) == as_json(a)  # unique prefix
    assert load_record(path)["schema_version"] == SCHEMA_VERSION


def test_record_is_strict_json(tmp_path, records):
    """No NaN/Infinity: other tools must be able to read records."""
    a, _ = records
    path = Store(tmp_path).save(a)

    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    json.loads(path.read_text(), parse_constant=reject)


def test_record_header(records):
    a, _ = records
    assert a["schema"] == "smbench.run" and a["kind"] == "run"
    assert a["flag_sets"] == list(FLAG_SETS) and [r["flags"] for r in a["results"]] == list(FLAG_SETS)
    for key in ("cpu", "cores", "python", "numpy", "blas"):
        assert a["machine"][key]
    assert "commit" in a["git"] and a["alloc_method"] and a["timing_method"]


@pytest.mark.parametrize("mutate, words", [
    (lambda r: r.update(schema_version=99), ["schema version 99", f"version {SCHEMA_VERSION}"]),
    (lambda r: r.update(schema_version="1"), ["schema version '1'"]),
    (lambda r: r.pop("schema_version"), ["schema version None"]),
    (lambda r: r.pop("schema"), ["not an smbench run record"]),
    (lambda r: r.pop("results"), ["missing 'results'"]),
    (lambda r: r.update(results={"none": {}}), ["'results' is malformed"]),
    (lambda r: r["results"][0].update(metrics=None), ["'results' is malformed"]),
    (lambda r: r.update(workload="tiny"), ["'workload' is malformed"]),
])
def test_bad_records_are_record_errors(tmp_path, records, mutate, words):
    bad = copy.deepcopy(as_json(records[0]))
    mutate(bad)
    path = tmp_path / RECORD_FILE
    path.write_text(json.dumps(bad))
    with pytest.raises(RecordError) as info:
        load_record(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    for w in words:
        assert w in message, message
    assert isinstance(info.value, UserError) and info.value.exit_code == 2


@pytest.mark.parametrize("text, words", [
    ('{"name": "some other tool", "results": []}', ["not an smbench run record"]),
    ('[1, 2, 3]', ["not an smbench run record"]),
    ('{"schema": "smbench.run", "schema_ver', ["not valid JSON", "corrupt"]),
    ('\x00\x01garbage', ["not valid JSON"]),
    ('', ["not valid JSON"]),
])
def test_foreign_and_corrupt_files_are_record_errors(tmp_path, text, words):
    path = tmp_path / RECORD_FILE
    path.write_text(text)
    with pytest.raises(RecordError) as info:
        load_record(path)
    for w in words:
        assert w in str(info.value)


def test_missing_record_file(tmp_path):
    with pytest.raises(RecordError, match="no such record file"):
        load_record(tmp_path / "nope" / RECORD_FILE)
    with pytest.raises(UserError, match="no such record file"):
        Store(tmp_path).load(str(tmp_path / "nope" / RECORD_FILE))


def test_validate_record_accepts_a_fresh_record(records):
    assert validate_record(as_json(records[0]), "<mem>")["run_id"] == records[0]["run_id"]


# ---- history and the index ---------------------------------------------------------------------

def _store_with_garbage(tmp_path, records):
    store = Store(tmp_path)
    for r in records:
        store.save(r)
    (tmp_path / "20000101T000000-garbag").mkdir()
    (tmp_path / "20000101T000000-garbag" / RECORD_FILE).write_bytes(b"\x00{not json at all")
    (tmp_path / "20000101T000000-foreig").mkdir()
    (tmp_path / "20000101T000000-foreig" / RECORD_FILE).write_text('{"tool": "pytest-benchmark"}')
    return store


def test_history_lists_good_runs_and_names_bad_files(tmp_path, records):
    _store_with_garbage(tmp_path, records)
    before = snapshot(tmp_path)
    store = Store(tmp_path)  # a fresh process's view
    rows = store.history()
    assert {r.run_id for r in rows} == {r["run_id"] for r in records}
    assert [r.created for r in rows] == sorted((r.created for r in rows), reverse=True)
    row = next(r for r in rows if r.run_id == records[0]["run_id"])
    assert row.workload == "tiny" and row.flags == "none | kv" and row.naive_tokens_per_s > 0
    assert row.best_flags in FLAG_SETS and row.best_tokens_per_s >= row.naive_tokens_per_s
    warnings = "\n".join(store.warnings)
    assert len(store.warnings) == 2, warnings
    assert "20000101T000000-garbag" in warnings and "not valid JSON" in warnings
    assert "20000101T000000-foreig" in warnings and "not an smbench run record" in warnings
    assert snapshot(tmp_path).keys() >= {k for k in before if k.name != INDEX_FILE}
    for key, data in before.items():
        if key.name != INDEX_FILE:
            assert snapshot(tmp_path)[key] == data, f"{key} was changed"


def test_history_filters(tmp_path, records):
    store = Store(tmp_path)
    for r in records:
        store.save(r)
    assert len(store.history(workload="tiny")) == 2
    assert store.history(workload="other") == []
    assert len(store.history(flags="kv")) == 2
    assert store.history(flags="pool") == []
    assert len(store.history(limit=1)) == 1


def test_history_of_an_empty_or_missing_root(tmp_path):
    assert Store(tmp_path / "none-yet").history() == []


@pytest.mark.parametrize("damage", ["garbage", "bad_page"])
def test_corrupt_index_is_moved_aside_and_rebuilt(tmp_path, records, damage):
    store = _store_with_garbage(tmp_path, records)
    index = tmp_path / INDEX_FILE
    if damage == "garbage":
        index.write_bytes(b"this is not a database" * 100)
    else:  # header and schema intact, a table page destroyed: only seen when rows are read
        data = bytearray(index.read_bytes())
        page = sqlite3.connect(index).execute("PRAGMA page_size").fetchone()[0]
        data[page:2 * page] = b"\xff" * page
        index.write_bytes(bytes(data))
    corrupt = index.read_bytes()
    records_before = {k: v for k, v in snapshot(tmp_path).items() if k.name == RECORD_FILE}

    store = Store(tmp_path)
    rows = store.history()
    assert {r.run_id for r in rows} == {r["run_id"] for r in records}
    moved = [w for w in store.warnings if "unreadable index" in w]
    assert len(moved) == 1
    asides = list(tmp_path.glob(f"{INDEX_FILE}.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == corrupt and asides[0].name in moved[0]
    assert {k: v for k, v in snapshot(tmp_path).items() if k.name == RECORD_FILE} == records_before
    # the rebuilt index is healthy: a second look neither warns about it nor moves anything
    again = Store(tmp_path)
    assert len(again.history()) == 2
    assert not any("unreadable index" in w for w in again.warnings)
    assert len(list(tmp_path.glob(f"{INDEX_FILE}.corrupt-*"))) == 1


def test_indexed_record_missing_on_disk_is_listed_with_a_warning(tmp_path, records):
    store = Store(tmp_path)
    path = store.save(records[0])
    path.rename(tmp_path / "moved.json")
    store = Store(tmp_path)
    assert [r.run_id for r in store.history()] == [records[0]["run_id"]]
    assert any("missing on disk" in w and records[0]["run_id"] in w for w in store.warnings)


def test_resolve_errors(tmp_path, records):
    store = Store(tmp_path)
    for r in records:
        store.save(r)
    with pytest.raises(UserError, match="no run 'nosuch'"):
        store.resolve("nosuch")
    with pytest.raises(UserError, match="ambiguous"):
        store.resolve(os.path.commonprefix([r["run_id"] for r in records]))  # the date
    with pytest.raises(UserError, match="no such record file"):
        store.resolve("/definitely/not/here/record.json")


# ---- metrics in the record -----------------------------------------------------------------

def test_timing_fields_exist_with_the_right_types(records):
    """Timing is noisy, so only shapes and types are tested; comparisons belong to benchmarks."""
    a, _ = records
    n_repeats = a["workload"]["repeats"]
    for r in a["results"]:
        m = r["metrics"]
        assert isinstance(m["probe_overhead"], float) and math.isfinite(m["probe_overhead"])
        for name in ("tokens_per_s", "decode_tokens_per_s", "ttft_ms"):
            s = m[name]
            assert s["n"] == n_repeats and len(s["samples"]) == n_repeats
            assert s["min"] <= s["median"] <= s["max"] and s["iqr"] >= 0
        mpt = m["ms_per_token"]
        assert set(mpt) == {"min", "median", "p95", "max"}
        assert 0 < mpt["min"] <= mpt["median"] <= mpt["p95"] <= mpt["max"]
        curve = m["ms_per_token_curve"]
        assert [pos for pos, _ in curve] == list(range(len(a["prompt_ids"]) + 1, len(a["prompt_ids"]) + 8))
        assert all(isinstance(pos, int) and isinstance(ms, float) and ms > 0 for pos, ms in curve)
        assert isinstance(m["ms_per_token_slope_us_per_position"], float)
        assert set(m["ms_per_token_fit"]) == {"slope", "intercept", "r2"}
        v = r["vs_naive"]
        assert isinstance(v["speedup"], float) and isinstance(v["speedup_significant"], bool)
        assert v["tokens_match"] is True and r["tokens_stable"] is True
        assert len(r["tokens"]) == 8
        for stage in r["stages"]:
            assert stage["phase"] in ("prefill", "decode") and 0.0 <= stage["share"] <= 1.0
    kv = a["results"][1]["metrics"]
    assert kv["kv_hit_rate"] > 0.5 and kv["kv_cache_mb"] > 0
    assert a["results"][0]["metrics"]["kv_hit_rate"] == 0.0


# ---- compare -----------------------------------------------------------------------------------

def test_compare_records_rows(records):
    a, b = records
    rows = compare_records(a, b)
    assert [(r["flags"], r["metric"]) for r in rows] == [(fs, name) for fs in FLAG_SETS for name, _, _ in COMPARED]
    for row in rows:
        assert set(row) >= {"flags", "metric", "a", "b", "ratio", "higher_is_better", "p_value", "significant",
                            "verdict"}
        assert row["verdict"] in ("better", "worse", "same")
        if row["a"] and row["b"] is not None:
            assert row["ratio"] == pytest.approx(row["b"] / row["a"])
        kind = next(k for name, _, k in COMPARED if name == row["metric"])
        if kind == "samples":
            assert 0.0 <= row["p_value"] <= 1.0 and isinstance(row["significant"], bool)
        else:
            assert row["p_value"] is None
    # allocation counts are deterministic: two runs of the same workload do not differ
    for row in rows:
        if row["metric"].startswith("alloc_"):
            assert row["a"] == row["b"] and row["significant"] is False and row["verdict"] == "same"


def test_compare_flags_real_changes(records):
    a = as_json(records[0])
    b = copy.deepcopy(a)
    b["run_id"] = "B"
    for r in b["results"]:
        m = r["metrics"]
        m["alloc_bytes_per_token"] *= 2
        n = len(m["tokens_per_s"]["samples"])
        # five clearly slower samples: a Mann-Whitney U test with 3 vs 5 values can reach p < 0.05
        slow = [0.5 * min(m["tokens_per_s"]["samples"]) * (1 - 0.01 * i) for i in range(5)]
        m["tokens_per_s"] = {**m["tokens_per_s"], "samples": slow, "median": sorted(slow)[2], "n": 5}
    b["results"] = b["results"] + [{"flags": "pool", "metrics": {}}]  # not in A: skipped
    rows = {(r["flags"], r["metric"]): r for r in compare_records(a, b)}
    assert all(fs != "pool" for fs, _ in rows)
    for fs in FLAG_SETS:
        alloc = rows[(fs, "alloc_bytes_per_token")]
        assert alloc["ratio"] == pytest.approx(2.0) and alloc["significant"] and alloc["verdict"] == "worse"
        tps = rows[(fs, "tokens_per_s")]
        assert tps["ratio"] < 0.5 and tps["p_value"] < 0.05 and tps["verdict"] == "worse"
    # and the other way round, the same changes are improvements
    back = {(r["flags"], r["metric"]): r for r in compare_records(b, a)}
    assert back[("none", "tokens_per_s")]["verdict"] == "better"
    assert back[("none", "alloc_bytes_per_token")]["verdict"] == "better"


def test_compare_table_renders(records):
    from rich.console import Console

    a, b = records
    console = Console(width=200, record=True, color_system=None)
    console.print(compare_table(a, b, compare_records(a, b)))
    text = console.export_text()
    assert a["run_id"] in text and b["run_id"] in text
    for name, _, _ in COMPARED:
        assert name in text
