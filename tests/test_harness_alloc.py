"""Allocation accounting: deterministic, cumulative (not peak), and agreeing with memray.

The harness counts NumPy array data buffers with a counting PyDataMem handler
(smbench/_native.c) and attributes them to steps and stages. These tests pin the three
properties the records promise: the same run counts the same, the figure is a running
total rather than a high-water mark, and an independent tool sees the same bytes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import pytest

import engine
from engine.probe import NULL_PROBE
from smbench.metrics import build_results
from smbench.probes import StageProbe
from smbench.runner import Runner
from smbench.workloads import Workload

PROMPT = "We are accounted"
NEW_TOKENS = 12
FLAG_SETS = ("none", "pool,kv,fused")


def tiny_workload(**changes) -> Workload:
    base = dict(name="tiny", model="seed", prompt=PROMPT, new_tokens=NEW_TOKENS, repeats=2, warmup=1,
                flag_sets=FLAG_SETS, source="<test>")
    return Workload(**{**base, **changes})


def run_tiny():
    wr = Runner(tiny_workload(), FLAG_SETS).run()
    return wr, {r["flags"]: r for r in build_results(wr)}


@pytest.fixture(scope="module")
def two_runs():
    """The same tiny workload run twice, each with fresh models."""
    return run_tiny(), run_tiny()


def _alloc_by_stage(result: dict) -> dict:
    return {(s["phase"], s["stage"], s["layer"]): (s["alloc_bytes"], s["alloc_calls"]) for s in result["stages"]}


def _alloc_by_step(data) -> list[tuple[int, int, int]]:
    return [(s.n_total, s.alloc_bytes, s.alloc_calls) for s in data.steps]


def test_same_run_twice_counts_identical_allocations_per_stage_and_step(two_runs):
    (wr_a, res_a), (wr_b, res_b) = two_runs
    for fs in FLAG_SETS:
        a, b = wr_a.runs[fs], wr_b.runs[fs]
        # per step, in every instrumented repeat, and in the cold run (first use, pool sizing)
        steps_a = [_alloc_by_step(d) for d in a.instrumented]
        steps_b = [_alloc_by_step(d) for d in b.instrumented]
        assert steps_a == steps_b, fs
        assert steps_a[0] == steps_a[1], f"{fs}: repeats within one run differ"
        assert len(steps_a[0]) == NEW_TOKENS
        assert _alloc_by_step(a.cold) == _alloc_by_step(b.cold), fs
        # per stage, as stored in the record
        assert _alloc_by_stage(res_a[fs]) == _alloc_by_stage(res_b[fs]), fs
        for key in ("alloc_bytes_per_session", "alloc_calls_per_session", "alloc_bytes_per_step",
                    "cold_alloc_bytes", "cold_alloc_calls"):
            assert res_a[fs]["metrics"][key] == res_b[fs]["metrics"][key], (fs, key)
        assert res_a[fs]["metrics"]["alloc_deterministic"] is True


def test_stage_and_step_allocations_partition_the_session(two_runs):
    """Every counted byte lands in exactly one step and exactly one stage."""
    (wr, results), _ = two_runs
    for fs in FLAG_SETS:
        m = results[fs]["metrics"]
        assert sum(m["alloc_bytes_per_step"]) == m["alloc_bytes_per_session"]
        assert sum(s["alloc_bytes"] for s in results[fs]["stages"]) == m["alloc_bytes_per_session"]
        assert sum(s["alloc_calls"] for s in results[fs]["stages"]) == m["alloc_calls_per_session"]
        assert m["alloc_bytes_per_token"] == pytest.approx(m["alloc_bytes_per_session"] / NEW_TOKENS)
    naive, best = results["none"]["metrics"], results["pool,kv,fused"]["metrics"]
    assert naive["alloc_bytes_per_token"] > 100 * max(best["alloc_bytes_per_token"], 1)


def test_allocation_figures_are_cumulative_not_peak(two_runs):
    """Naive decoding frees most of what it allocates each step: its live peak (tracemalloc,
    which also sees NumPy buffers) is a small fraction of the bytes the harness counts."""
    (_, results), _ = two_runs
    counted = results["none"]["metrics"]["alloc_bytes_per_session"]

    model = engine.load("seed", flags="", seed=0)
    prompt = model.encode(PROMPT)
    model.generate(prompt, NEW_TOKENS)  # warm, like the runner's instrumented repeats
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        with StageProbe() as probe:
            model.probe = probe
            model.generate(prompt, NEW_TOKENS)
        model.probe = NULL_PROBE
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(s.alloc_bytes for s in probe.data.steps) == counted  # same generation, same count
    peak_growth = peak - base
    assert counted > 5 * peak_growth, (counted, peak_growth)
    # and the largest single step is far below the session total
    assert counted > 5 * max(results["none"]["metrics"]["alloc_bytes_per_step"])


# ---- memray cross-check ---------------------------------------------------------------------

MEMRAY_CHILD = r"""
import json, sys
import memray
import engine
from engine.probe import NULL_PROBE
from smbench import _native
from smbench.probes import StageProbe

flags, n, prompt, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
_native.install()  # same NumPy allocation path as the harness: small-buffer cache bypassed
model = engine.load("seed", flags=flags, seed=0)
ids = model.encode(prompt)
model.generate(ids, n)  # warm: pools sized, like the runner's steady repeats
with memray.Tracker(path, trace_python_allocators=False, native_traces=True):
    with StageProbe() as probe:
        model.probe = probe
        model.generate(ids, n)
    model.probe = NULL_PROBE
print(json.dumps({"bytes": sum(s.alloc_bytes for s in probe.data.steps),
                  "calls": sum(s.alloc_calls for s in probe.data.steps)}))
"""


def _memray_generation(tmp_path, flags: str) -> tuple[dict, list]:
    """Run one generation under memray in a subprocess (one Tracker per process)."""
    path = tmp_path / f"gen-{flags.replace(',', '_')}.bin"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", MEMRAY_CHILD, flags, str(NEW_TOKENS), PROMPT, str(path)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), _engine_mallocs(path)


def _engine_mallocs(path) -> list[dict]:
    """MALLOC/CALLOC/REALLOC records whose Python stack passes through the engine package."""
    import memray  # a test dependency: missing it must fail loudly, not skip
    pkg = os.path.dirname(engine.__file__) + os.sep
    kinds = {memray.AllocatorType.MALLOC, memray.AllocatorType.CALLOC, memray.AllocatorType.REALLOC}
    rows = []
    for rec in memray.FileReader(str(path)).get_allocation_records():
        if rec.allocator not in kinds:
            continue
        stack = rec.stack_trace()
        engine_frames = [(fn, f) for fn, f, _ in stack if f.startswith(pkg)]
        if not engine_frames:
            continue
        native = [fn for fn, _, _ in rec.native_stack_trace()]
        rows.append({
            "size": rec.size,
            # NumPy array data: allocated through the PyDataMem handler (PyDataMem_UserNEW,
            # _UserNEW_ZEROED, _UserRENEW), the population the counting handler sees
            "data_buffer": any(fn.startswith("PyDataMem_User") for fn in native),
            # inside a decode step: under GPT.step_logits or sampling.sample (the probe's window)
            "in_step": any(fn in ("step_logits", "sample") for fn, _ in engine_frames),
            "innermost_engine": engine_frames[0],
        })
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("flags", ["none", "pool,kv,fused"])
def test_memray_agrees_with_counted_bytes(tmp_path, two_runs, flags):
    """memray and the counting handler see the same NumPy data bytes for one generation.

    Investigation notes (why the memray side filters by native stack, not just Python stack):
    with native_traces=False, *every* malloc made under an engine frame is included, and that is
    not the population the harness counts (NumPy array data buffers). For this 12-token seed run
    the engine-stack total was ~3x the counted bytes for naive (47.3 MB vs 15.9 MB) and for `pool`
    31.3 MB vs 6.7 KB. The rest, by native stack: OpenBLAS's threaded sgemm (`sgemm_thread_nn`)
    mallocs a 512 KiB buffer on each multi-row matmul; NumPy's ufunc iterator allocates its
    buffers (`npyiter_allocate_buffers`, ~8-9 KiB) on broadcasting ufuncs, e.g. in layer_norm,
    even with out=; NpyIter objects over 512 B go through pymalloc to malloc. None is a NumPy data
    buffer, so none can reach a PyDataMem handler. native_traces=True lets us select the handler's
    allocations (PyDataMem_User* frames); then the two agree to the byte inside the step window.

    The only data buffers memray sees outside the window are generate()'s setup before the first
    step (np.random.default_rng(seed): 8 calls, 125 bytes); the probe's window is the decode
    steps, so the harness leaves them out by design. On the naive total they are <0.01%; for
    pool,kv,fused (224 counted bytes in 13 calls) they are a fixed 125 B, so that case is
    compared within the step window, and the out-of-window records are checked to be setup only.
    """
    counted, rows = _memray_generation(tmp_path, flags)
    (_, results), _ = two_runs
    # the subprocess's count is the record's count for the same generation
    assert counted["bytes"] == results[flags]["metrics"]["alloc_bytes_per_session"]
    assert counted["calls"] == results[flags]["metrics"]["alloc_calls_per_session"]

    data = [r for r in rows if r["data_buffer"]]
    in_step = sum(r["size"] for r in data if r["in_step"])
    outside = [r for r in data if not r["in_step"]]
    total = sum(r["size"] for r in data)
    print(f"\n{flags}: harness {counted['bytes']} B / {counted['calls']} calls; memray data buffers "
          f"{total} B / {len(data)} calls ({in_step} B in steps); all engine-stack mallocs "
          f"{sum(r['size'] for r in rows)} B / {len(rows)} calls")

    assert in_step == pytest.approx(counted["bytes"], rel=0.05)
    assert sum(1 for r in data if r["in_step"]) == pytest.approx(counted["calls"], rel=0.05)
    assert all(r["innermost_engine"][0] == "generate" for r in outside), outside
    assert sum(r["size"] for r in outside) <= 1024
    if counted["bytes"] > 1_000_000:  # large enough that setup bytes cannot matter
        assert total == pytest.approx(counted["bytes"], rel=0.05)
    # the Python-stack-only figure is a superset (see the docstring), never smaller
    assert sum(r["size"] for r in rows) >= counted["bytes"]
