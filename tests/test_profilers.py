"""`smbench profile`: pyinstrument, memray and scalene run for real on a tiny workload.

The profilers are test dependencies (the `test` extra pulls in `profile`), so nothing
here skips: a profiler that cannot run fails its test. One `smbench profile --with all`
run (seed model, naive, 5 tokens) is shared by the tests that read its artifacts.
"""
from __future__ import annotations

import json
from collections import defaultdict
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import smbench.profilers as profilers
import smbench.profilers.session as session
from engine.probe import STAGES
from smbench.cli import main
from smbench.probes import StageProbe
from smbench.profilers.job import ProfileJob, prepare
from smbench.profilers.render import print_profile
from smbench.profilers.stages import ENGINE_DIR, NO_STAGE_FRAME, UNATTRIBUTED, StageMap
from smbench.profilers.transforms import (allocations_by, parse_frame, top_cpu_lines, top_memory_lines,
                                          top_self_time)
from smbench.profilers.worker import ProfilerFailed, run_worker
from smbench.record import load_record
from smbench.store import Store
from smbench.workloads import load_workload

WORKLOAD, TOKENS = "seed", 5
# memray's NumPy-data bytes per stage against the harness's StageProbe, for every stage
# holding at least MIN_SHARE of the bytes. Both count the same PyDataMem_User* calls, so
# the agreement is exact today; the tolerance only absorbs a stray Python-level buffer.
TOLERANCE, MIN_SHARE = 0.01, 0.02
OPS_FUNCTIONS = {"linear", "gelu_exact", "layer_norm", "softmax_lastaxis", "Workspace.take"}


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> tuple[dict, Path]:
    """One `smbench profile --with all --json` run; returns (record, run dir)."""
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        # The workers inherit this: on a shared 2-core machine threaded BLAS spins on tiny
        # matmuls; allocations and stage attribution do not depend on it.
        mp.setenv("OPENBLAS_NUM_THREADS", "1")
        result = CliRunner().invoke(main, ["profile", "--with", "all", "-w", WORKLOAD, "--tokens", str(TOKENS),
                                           "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    return record, out / record["run_id"]


def _summary(record: dict, name: str) -> dict:
    return next(p for p in record["profiles"] if p["profiler"] == name)


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# ---- stage map: pure, from source --------------------------------------------------------
SYNTHETIC = '''\
def loop(probe):
    for _ in range(3):
        a = 1
        probe.step_begin(1, 1)
        b = 2
        probe.stage_end("first", 0)
        c = 3
        probe.stage_end("second", 0)
        probe.step_end()
        d = 4

def helper():
    return 5
'''


def test_stage_map_takes_the_first_edge_at_or_after_the_line():
    smap = StageMap({"/src/m.py": SYNTHETIC}, engine_dir=Path("/src"))
    fn = smap.function_at("/src/m.py", 5)
    assert fn.name == "loop" and fn.stages == [None, "first", "second", None]

    def stage(*lines):
        return smap.stage_of([("f", "/src/m.py", line) for line in lines])

    assert stage(5) == "first" and stage(6) == "first" and stage(7) == "second"
    assert stage(3) == UNATTRIBUTED  # before step_begin: the harness counts nothing there
    assert stage(10) == UNATTRIBUTED  # after step_end
    assert stage(13, 7) == "second"  # helper has no edges: its caller's line decides
    assert smap.stage_of([("g", "/elsewhere.py", 1)]) == NO_STAGE_FRAME


def test_stage_map_reads_every_stage_from_the_engine_source():
    smap = StageMap.from_engine()
    edges = smap.edges()
    naive = set(edges["forward"]) | set(edges["_block"]) | set(edges["_attention"]) | set(edges["generate"])
    assert naive == set(STAGES)
    assert set(edges["_attention"]) == {"attn.scores", "attn.softmax", "attn.context"}
    assert "attn.core" in edges["_blocks_fused"]


def test_stage_map_attributes_helpers_through_their_callers():
    smap, model = StageMap.from_engine(), ENGINE_DIR / "model.py"
    in_qkv = ("_qkv", str(model), _line_of(model, "q = ops.linear(h, b.w_qkv"))
    qkv_call = ("_block", str(model), _line_of(model, "q, kt, v = self._qkv("))
    assert smap.stage_of([in_qkv, qkv_call]) == "attn.qkv"
    in_ops = ("layer_norm", str(ENGINE_DIR / "ops.py"), 33)
    ln_2_call = ("_block", str(model), _line_of(model, "h = ops.layer_norm(x, b.ln_2_g"))
    assert smap.stage_of([in_ops, ln_2_call]) == "ln_2"
    gen = ENGINE_DIR / "generate.py"
    assert smap.stage_of([("generate", str(gen), _line_of(gen, "token = sample("))]) == "sample"


# ---- pure transforms -------------------------------------------------------------------
def test_transforms_summarize_hand_made_profiler_data():
    assert parse_frame("forward\x00/e/model.py\x00101\x01cGPT\x01l110") == ("GPT.forward", "/e/model.py", 101, 110)
    thread = "MainThread\x00<thread>\x001"
    records = [([thread, "a\x00/x.py\x001\x01l2", "b\x00/x.py\x005\x01l6"], 0.3), ([thread, "a\x00/x.py\x001\x01l3"], 0.1)]
    top = top_self_time(records)
    assert [(r.function, round(r.share, 2)) for r in top] == [("b", 0.75), ("a", 0.25)]

    smap = StageMap({"/src/m.py": SYNTHETIC}, engine_dir=Path("/src"))
    allocs = [("MALLOC", 100, 1, [("loop", "/src/m.py", 5)], True),
              ("MALLOC", 50, 1, [("helper", "/src/m.py", 13), ("loop", "/src/m.py", 7)], False),
              ("FREE", 999, 1, [], False)]
    by_stage, sites = allocations_by(allocs, smap)
    assert [(s.stage, s.bytes, s.numpy_data_bytes) for s in by_stage] == [("first", 100, 100), ("second", 50, 0)]
    assert sites[1].function == "helper" and sites[1].caller == "/src/m.py:7 loop"

    scalene = {"files": {"/e/ops.py": {"lines": [
        {"lineno": 1, "line": "x -\\u003e y\n", "n_cpu_percent_python": 1.0, "n_cpu_percent_c": 2.0,
         "n_sys_percent": 0.0, "n_malloc_mb": 0.0},
        {"lineno": 2, "line": "z\n", "n_cpu_percent_python": 0.0, "n_cpu_percent_c": 0.0, "n_sys_percent": 0.0,
         "n_malloc_mb": 3.0, "n_mallocs": 2, "n_peak_mb": 1.0}]}}}
    assert [(r.line, r.source, r.cpu_share) for r in top_cpu_lines(scalene)] == [(1, "x -> y", 3.0)]
    assert [(r.line, r.malloc_mb) for r in top_memory_lines(scalene)] == [(2, 3.0)]


# ---- errors ------------------------------------------------------------------------------
def test_a_missing_profiler_is_one_line_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(profilers, "available", lambda name: name != "scalene")
    result = CliRunner().invoke(main, ["profile", "--with", "all", "--tokens", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "scalene is not installed" in result.output and "pip install 'smbench[profile]'" in result.output
    assert not any(tmp_path.iterdir())  # checked before any worker ran


def test_a_failing_worker_is_reported_with_its_stderr(tmp_path):
    with pytest.raises(ProfilerFailed, match="nosuch worker failed"):
        run_worker(ProfileJob("nosuch", WORKLOAD, "none", 1, str(tmp_path)))


def test_one_failing_profiler_keeps_the_others(monkeypatch, tmp_path):
    def fake_worker(job):
        if job.profiler == "scalene":
            raise ProfilerFailed("scalene worker failed (exit 1): no samples")
        return {"profiler": job.profiler, "artifacts": {}, "data": {}, "prompt_ids": [1], "generated": [2]}

    monkeypatch.setattr(session, "run_worker", fake_worker)
    workload = load_workload(WORKLOAD).with_(new_tokens=1)
    record, path = session.profile_workload(workload, "", ["memray", "scalene"], Store(tmp_path))
    assert [p["profiler"] for p in load_record(path)["profiles"]] == ["memray"]
    assert record["profile_errors"] == [{"profiler": "scalene", "error": "scalene worker failed (exit 1): no samples"}]
    with pytest.raises(ProfilerFailed, match="no samples"):
        session.profile_workload(workload, "", ["scalene"], Store(tmp_path))


# ---- real runs ---------------------------------------------------------------------------
def test_profile_record_is_a_valid_run_record(profiled):
    record, run_dir = profiled
    loaded = load_record(run_dir / "record.json")
    assert loaded["kind"] == "profile" and loaded["results"] == [] and loaded["flag_sets"] == ["none"]
    assert [p["profiler"] for p in loaded["profiles"]] == ["pyinstrument", "memray", "scalene"]
    generated = {tuple(p["generated"]) for p in loaded["profiles"]}
    assert len(generated) == 1 and len(generated.pop()) == TOKENS  # every profiler ran the same call
    for p in loaded["profiles"]:
        for name in p["artifacts"].values():
            assert (run_dir / name).stat().st_size > 0, name


def test_pyinstrument_summary_names_engine_functions_and_stages(profiled):
    record, run_dir = profiled
    s = _summary(record, "pyinstrument")
    assert set(s["artifacts"]) == {"html", "json", "speedscope", "session"}
    json.loads((run_dir / s["artifacts"]["json"]).read_text())
    assert "profiles" in json.loads((run_dir / s["artifacts"]["speedscope"]).read_text())
    data = s["data"]
    assert data["samples"] > 0
    assert OPS_FUNCTIONS & {r["function"] for r in data["top_self"]}
    assert any(r["file"].startswith("engine/") for r in data["top_self"])
    assert len(set(STAGES) & {r["stage"] for r in data["by_stage"]}) >= 3


def test_memray_summary_covers_every_stage_and_the_high_water_mark(profiled):
    record, run_dir = profiled
    s = _summary(record, "memray")
    assert set(s["artifacts"]) == {"capture", "flamegraph", "stats"}
    assert "<html" in (run_dir / s["artifacts"]["flamegraph"]).read_text()[:2000].lower()
    json.loads((run_dir / s["artifacts"]["stats"]).read_text())
    data = s["data"]
    assert set(STAGES) <= {r["stage"] for r in data["by_stage"]}
    assert data["numpy_data_bytes"] == data["harness_counter_bytes"] > 0
    assert data["total_bytes"] >= data["numpy_data_bytes"]
    assert 0 < data["high_water_bytes"] <= data["total_bytes"] and data["high_water_sites"]
    assert any(r["file"].startswith("engine/") and r["stages"] for r in data["by_call_site"])


def test_scalene_summary_has_engine_lines_by_cpu_and_memory(profiled):
    record, run_dir = profiled
    s = _summary(record, "scalene")
    assert set(s["artifacts"]) == {"json", "html", "driver"}
    assert json.loads((run_dir / s["artifacts"]["json"]).read_text())["files"]
    data = s["data"]
    assert any(r["file"].startswith("engine/") for r in data["top_cpu"])
    assert any(r["file"].startswith("engine/") for r in data["top_memory"])


def test_memray_stages_agree_with_the_harness_stage_probe(profiled, tmp_path):
    """The same generation (same build, same warmup) counted by StageProbe in this process."""
    record, _ = profiled
    memray_stages = {r["stage"]: r["numpy_data_bytes"] for r in _summary(record, "memray")["data"]["by_stage"]}
    prep = prepare(ProfileJob("harness", WORKLOAD, "none", TOKENS, str(tmp_path)))
    with StageProbe() as probe:
        prep.model.probe = probe
        generated = prep.decode()
    assert generated == _summary(record, "memray")["generated"]
    harness: dict[str, int] = defaultdict(int)
    for row in probe.data.stages:
        harness[row.stage] += row.alloc_bytes
    total = sum(harness.values())
    top = [s for s, b in sorted(harness.items(), key=lambda kv: -kv[1]) if b >= MIN_SHARE * total]
    assert len(top) >= 8
    report = {s: (harness[s], memray_stages.get(s, 0)) for s in top}
    print("\nstage: harness bytes, memray NumPy-data bytes:", report)
    for stage, (h, m) in report.items():
        assert abs(m - h) <= TOLERANCE * h, (stage, h, m)


def test_profile_prints_summaries_and_artifact_paths(profiled):
    record, run_dir = profiled
    out = StringIO()
    print_profile(Console(file=out, width=200), record, run_dir / "record.json")
    text = out.getvalue()
    for title in ("top functions by self time", "allocations by engine stage", "by call site",
                  "high-water mark", "top lines by CPU", "top lines by memory"):
        assert title in text
    for p in record["profiles"]:
        for name in p["artifacts"].values():
            assert str(run_dir / name) in text
