"""CI perf gates: run a workload and hold it to a committed baseline (profiles/baseline.json).

What is gated, and how tightly (the thresholds and their reasons live in the baseline file):
- correctness: every flag set's greedy tokens equal naive's, in every repeat;
- deterministic counts: NumPy bytes/calls allocated per token and per (phase, stage, layer),
  stage calls, K/V rows reused, steady-state decode allocations with `pool`: a small stated
  tolerance, in both directions (a drop means the baseline is stale);
- GC collections per run: +-1 collection (the gen-0 counter's phase at the start is unknown);
- timing: only each flag set's speedup over naive, per interleaved round of the same process,
  tested one-sided (Mann-Whitney U) against the baseline's ratios minus a tolerance.

Data flow: `measure` runs the workload (GateRunner) into an ordinary run record plus a
"gate" section (CPU times, steady decode steps) -> `facts` distils a record into the numbers
gated (the same function builds the baseline) -> `evaluate` compares facts with the baseline
into Checks -> gate_report renders them. The `gate` click command ties these together.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import click
import numpy as np
from scipy import stats as sps

from .environment import measurement_environment
from .errors import UserError
from .record import read_json_document
from .runner import FlagSetRun, Runner, WorkloadRun

SCHEMA = "smbench.baseline"
SCHEMA_VERSION = 1
BASELINE_FILE = "baseline.json"
UPDATE_HINT = "smbench gate --update-baseline"
DEFAULT_REPEATS = 15
DEFAULT_INSTRUMENTED = 2
BLAS_THREADS = 1
# glibc: arrays above the mmap threshold are mmap'd and unmapped on free (page faults on every
# use), and the threshold moves up as big blocks are freed, so naive's speed depends on what the
# process did before (measured: 190 ms first gate run, 157 ms from the second one on). Fixing it
# (which also stops the adjustment) makes every run see the same allocator: 32 MiB, glibc's
# ceiling for the dynamic threshold, is the state a long-running process converges to.
MALLOC_MMAP_THRESHOLD = 32 << 20
# Workload fields that change what is measured: the baseline only applies if they are equal.
DEFINITION_KEYS = ("model", "prompt", "prompt_tokens", "new_tokens", "seed", "flag_sets", "keep_fraction",
                   "temperature", "top_k", "top_p")
STAGE_COLUMNS = ("alloc_bytes", "alloc_calls", "calls")

DEFAULT_THRESHOLDS = {
    "correctness": {
        "explanation": "Each flag set's greedy tokens must equal naive's (pool, kv and fused are exact "
                       "and promise identical tokens) and be the same in every repeat; otherwise the gate "
                       "fails and that flag set's speedup does not count. Naive's tokens differing from the "
                       "baseline's is only a warning: the model's math changed, or this machine's BLAS "
                       "rounds differently.",
    },
    "alloc": {
        "rel_tolerance": 0.01,
        "explanation": "NumPy data allocations (bytes and calls) per token in total, and per (phase, stage, "
                       "layer) per run, counted by the C counting allocator (smbench/_native.c). They are "
                       "deterministic for a given tree and NumPy version (the instrumented runs must agree), "
                       "so the tolerance is only 1%. A change beyond it fails in either direction: an "
                       "increase is a regression; a decrease means the baseline is stale (a later "
                       "regression back to the old value would pass), so re-record it with "
                       f"`{UPDATE_HINT}`.",
    },
    "op_counts": {
        "rel_tolerance": 0.0,
        "explanation": "Exact counts of the work done: stage calls per (phase, stage, layer) per run, and "
                       "kv_hit_rate (K/V rows reused from the cache / rows attended). Any change fails. "
                       "(The engine has no FLOP counter; these are its op counts.)",
    },
    "gc": {
        "abs_tolerance_per_run": 1.0,
        "explanation": "Garbage collections (all generations) per instrumented run. A collection fires when "
                       "the interpreter's gen-0 counter (container allocations minus frees) crosses its "
                       "threshold, and the counter's value when a run starts depends on everything the "
                       "process did before, so identical code sees one collection more or fewer per run. "
                       "Tolerance: +-1 collection per run (shown per 100 tokens: 100 / new_tokens).",
    },
    "steady_decode": {
        "bytes_per_step": 8,
        "calls_per_step": 1,
        "explanation": "Flag sets with pool, kv and fused: every decode step after warmup (the last "
                       "instrumented run) may allocate at most 8 bytes in 1 NumPy allocation: the int64 0-d "
                       "array logits.argmax() returns before int() unwraps it (the sample stage). Any other "
                       "allocation in steady-state decoding is new and fails. Other flag sets with pool may "
                       "not exceed the per-step maximum their baseline measured (tolerance 0): without kv "
                       "each step re-embeds the window (np.take turns the Python id list into an int64 index "
                       "array, 8 B per position), and the unfused NumPy ops wrap scalar operands (eps, the "
                       "attention scale, GELU constants) in small 0-d arrays.",
    },
    "speedup": {
        "rel_tolerance": 0.08,
        "alpha": 0.01,
        "test": "one-sided Mann-Whitney U: now ratios < (1 - rel_tolerance) x baseline ratios",
        "explanation": "Timing is gated only as each flag set's speedup over naive: per round, naive's CPU "
                       "time / the flag set's CPU time, both from the same interleaved round of the same "
                       "process, so machine speed drift cancels. CPU time is the generating thread's "
                       "(time.thread_time) with BLAS pinned to 1 thread, so time taken by other processes "
                       "does not count; wall-clock speedups are shown but not gated (on a loaded 2-core "
                       "machine they swing by 30%+ because the long naive run is preempted more often). "
                       "A flag set fails when its ratios are significantly below (1 - rel_tolerance) x the "
                       "baseline's (p < alpha). rel_tolerance covers how much the ratio moves between runs "
                       "of an unchanged tree: measured within 3.5% of the baseline over 14 runs, idle or with "
                       "two busy loops on this 2-core machine, and a baseline recorded under load moved by "
                       "2.7%; smaller slowdowns are not claimed. Faster than the baseline passes.",
    },
}
MEASURE_EXPLANATION = (
    "One process builds every flag set, runs one cold instrumented pass each (first-use allocations, pool "
    "sizing), `warmup` generations, `instrumented` runs under the stage probe (allocations, stage calls, "
    "GC; interleaved; deterministic, so two prove it), then `repeats` timed rounds interleaved across flag "
    "sets in alternating order. BLAS is limited to `blas_threads` thread(s) (threadpoolctl): a multi-"
    "threaded GEMM on a shared machine waits for a descheduled worker thread, which makes naive's time "
    "depend on the machine's load. glibc's mmap threshold is fixed at `malloc_mmap_threshold` bytes "
    "(mallopt) so naive's large temporaries come from the heap in every run, not mmap'd or not depending "
    "on what the process allocated before (which moved naive's time by 18% between runs in one process).")


# ---- baseline file ----------------------------------------------------------------------------
class GateFailure(UserError):
    """The tree is not fit for a baseline (e.g. wrong tokens): exit 1, like a regression."""
    exit_code = 1


def default_baseline_path() -> Path:
    from .workloads import REPO_PROFILES

    local = Path.cwd() / "profiles" / BASELINE_FILE
    return local if local.is_file() else REPO_PROFILES / BASELINE_FILE


def load_baseline(path: Path) -> dict:
    fix = f"record one with `{UPDATE_HINT} --baseline {path}`"
    obj = read_json_document(path, "baseline", f"no baseline file; {fix}", f": {fix}", error=UserError)
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise UserError(f"{path}: not an smbench baseline (no \"schema\": \"{SCHEMA}\"); {fix}")
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: baseline schema version {obj.get('schema_version')!r}, this smbench reads "
                        f"version {SCHEMA_VERSION}; {fix}")
    for key in ("workload", "measure", "thresholds", "flag_sets"):
        if not isinstance(obj.get(key), dict):
            raise UserError(f"{path}: baseline is missing {key!r}; the file is truncated or edited: {fix}")
    try:
        _check_thresholds(obj["thresholds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: baseline thresholds are malformed ({exc}); fix them or {fix}") from None
    return obj


def _check_thresholds(t: dict) -> None:
    for section, keys in (("alloc", ("rel_tolerance",)), ("op_counts", ("rel_tolerance",)),
                          ("gc", ("abs_tolerance_per_run",)), ("steady_decode", ("bytes_per_step", "calls_per_step")),
                          ("speedup", ("rel_tolerance", "alpha"))):
        for key in keys:
            value = t[section][key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{section}.{key} must be a number >= 0, got {value!r}")


def _compact_json(obj, indent: int = 0) -> str:
    """Dicts one key per line, lists inline: a readable, diffable file of a few hundred lines."""
    if isinstance(obj, dict) and obj:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {_compact_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj)


def write_baseline(baseline: dict, path: Path) -> None:
    from engine.weights import atomic_write_bytes

    atomic_write_bytes(Path(path), (_compact_json(baseline) + "\n").encode())


def workload_definition(workload) -> dict:
    d = workload.to_dict()
    out = {k: d[k] for k in DEFINITION_KEYS}
    out["flag_sets"] = list(out["flag_sets"])
    return out


def workload_ref(workload) -> str:
    """How to find the workload again: its name if it is a profiles/ workload, else its path."""
    from .workloads import REPO_PROFILES

    src = Path(workload.source) if workload.source else None
    if src is not None and src.resolve() == (REPO_PROFILES / f"{workload.name}.toml").resolve():
        return workload.name
    return str(src.resolve()) if src is not None else workload.name


def check_workload(baseline: dict, workload, path: Path) -> None:
    want, have = baseline["workload"].get("definition", {}), workload_definition(workload)
    diffs = [f"{k}: {want.get(k)!r} -> {have[k]!r}" for k in DEFINITION_KEYS if want.get(k) != have[k]]
    if diffs:
        raise UserError(f"{path}: baseline was recorded for a different workload {workload.name!r} "
                        f"({'; '.join(diffs)}); re-record it with `{UPDATE_HINT}`")


def make_baseline(record: dict, workload, measure: dict, thresholds: dict) -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": record.get("git"),
        "machine": record.get("machine"),
        "source_run_id": record["run_id"],
        "workload": {"ref": workload_ref(workload), "name": workload.name,
                     "definition": workload_definition(workload)},
        "measure": {**measure, "explanation": MEASURE_EXPLANATION},
        "thresholds": thresholds,
        "flag_sets": facts(record),
    }


# ---- measurement ------------------------------------------------------------------------------
@dataclass
class Measure:
    repeats: int = DEFAULT_REPEATS
    warmup: int = 1
    instrumented: int = DEFAULT_INSTRUMENTED
    blas_threads: int = BLAS_THREADS
    malloc_mmap_threshold: int = MALLOC_MMAP_THRESHOLD
    timer: str = "thread_time"

    @classmethod
    def from_baseline(cls, measure: dict, repeats: int | None = None) -> "Measure":
        keys = ("repeats", "warmup", "instrumented", "blas_threads", "malloc_mmap_threshold")
        m = cls(**{k: measure[k] for k in keys if k in measure})
        if repeats:
            m.repeats = repeats
        return m


def units_of_work(measure: Measure, n_sets: int) -> int:
    return n_sets * (1 + measure.warmup + measure.instrumented + measure.repeats)


class GateRunner(Runner):
    """Runner with the gate's schedule: instrumented runs first, then many timed rounds.

    The speedup gate uses the timed runs' CPU time (FlagSetRun.timed_cpu_s).
    """

    def __init__(self, workload, flag_sets, measure: Measure, progress=None):
        super().__init__(workload, flag_sets, progress)
        self.measure = measure

    def _measure(self, runs: dict[str, FlagSetRun]) -> None:
        self._rounds(self.measure.instrumented, lambda fs: self._instrumented(fs, runs[fs]))
        self._rounds(self.measure.repeats, lambda fs: self._timed(fs, runs[fs]))

    def run(self) -> WorkloadRun:
        return super().run(warmup=self.measure.warmup)


def _steady_decode(run) -> dict:
    """Per-step allocations of the decode steps of the last instrumented run (after warmup)."""
    steps = run.instrumented[-1].steps[1:] if run.instrumented else []
    return {"max_bytes": max((s.alloc_bytes for s in steps), default=0),
            "max_calls": max((s.alloc_calls for s in steps), default=0), "steps": len(steps)}


def measure(workload, m: Measure, progress: Callable[[str], None] | None = None,
            set_total: Callable[[int], None] | None = None) -> dict:
    """Run the workload the gate's way; an ordinary run record (kind "gate") plus a "gate" section."""
    from .metrics import build_results
    from .record import make_record

    with measurement_environment(m.blas_threads, m.malloc_mmap_threshold) as conditions:
        runner = GateRunner(workload, list(workload.flag_sets), m, progress)
        if set_total is not None:
            set_total(units_of_work(m, len(runner.flag_sets)))
        wr = runner.run()
        wl = workload.to_record()
        wl["repeats"], wl["warmup"] = m.repeats, m.warmup
        # inside the limit, so the record's machine facts show the BLAS threads the runs used
        record = make_record(wl, wr.prompt_ids, wr.flag_sets, build_results(wr), wr.elapsed_s, kind="gate")
    record["gate"] = {
        "measure": asdict(m),
        "malloc_pinned": conditions["malloc_pinned"],
        "cpu_s": {fs: wr.runs[fs].timed_cpu_s for fs in wr.flag_sets},
        "steady_decode": {fs: _steady_decode(wr.runs[fs]) for fs in wr.flag_sets},
    }
    return record


# ---- facts: the numbers gated, from a record --------------------------------------------------
def _stage_key(row: dict) -> str:
    return f"{row['phase']}/{row['stage']}/{'-' if row['layer'] < 0 else row['layer']}"


def _ratios(num: list[float], den: list[float]) -> list[float]:
    return [a / b for a, b in zip(num, den) if b > 0]


def facts(record: dict) -> dict:
    """Per flag set: tokens, deterministic counts, steady decode allocations and speedup samples."""
    gate, new_tokens = record["gate"], record["workload"]["new_tokens"]
    by_flags = {r["flags"]: r for r in record["results"]}
    naive_cpu, naive_wall = gate["cpu_s"]["none"], by_flags["none"]["metrics"]["tokens_per_s"]["samples"]
    out = {}
    for fs, r in by_flags.items():
        m, steady = r["metrics"], gate["steady_decode"][fs]
        ratios = _ratios(naive_cpu, gate["cpu_s"][fs])
        wall = _ratios(m["tokens_per_s"]["samples"], naive_wall)  # tokens/s ratio = naive time / fs time
        out[fs] = {
            "tokens": r["tokens"],
            "tokens_match_naive": r["vs_naive"]["tokens_match"],
            "tokens_stable": r["tokens_stable"],
            "alloc_bytes_per_token": m["alloc_bytes_per_token"],
            "alloc_calls_per_token": m["alloc_calls_per_token"],
            "alloc_deterministic": m["alloc_deterministic"],
            "kv_hit_rate": m["kv_hit_rate"],
            "gc_collections_per_run": m["gc_per_100_tokens"] * new_tokens / 100.0,
            "gc_per_100_tokens": m["gc_per_100_tokens"],
            "steady_decode_max_bytes": steady["max_bytes"],
            "steady_decode_max_calls": steady["max_calls"],
            "stages": {_stage_key(s): [s[c] for c in STAGE_COLUMNS] for s in r["stages"]},
            "speedup": {"median": float(np.median(ratios)) if ratios else None,
                        "wall_median": float(np.median(wall)) if wall else None,
                        "samples": [round(x, 4) for x in ratios]},
        }
    return out


# ---- evaluation -------------------------------------------------------------------------------
@dataclass
class Check:
    section: str  # correctness | alloc | op_counts | gc | steady_decode | speedup
    flags: str
    metric: str
    baseline: str
    now: str
    tolerance: str
    verdict: str  # pass | warn | fail
    detail: str = ""


def _pct(now: float, base: float) -> str:
    return f"{100 * (now / base - 1):+.1f}%" if base else ("+inf" if now else "0")


def _count_check(section, fs, metric, base, now, rel, fmt="{:,.1f}", unit="") -> Check:
    base = 0.0 if base is None else float(base)
    now = 0.0 if now is None else float(now)
    limit = rel * abs(base)
    diff = now - base
    if abs(diff) <= limit:
        verdict, detail = "pass", ""
    elif diff > 0:
        verdict, detail = "fail", f"regression {_pct(now, base)}"
    else:
        verdict, detail = "fail", f"improved {_pct(now, base)}: the baseline is stale, re-record it"
    tol = f"±{100 * rel:g}%" if rel else "exact"
    return Check(section, fs, metric, fmt.format(base) + unit, fmt.format(now) + unit, tol, verdict, detail)


def _check_tokens(fs: str, base: dict, now: dict, naive_tokens: list[int]) -> list[Check]:
    checks = []
    if fs == "none":
        same = now["tokens"] == base.get("tokens")
        checks.append(Check("correctness", fs, "tokens == baseline's", f"{len(base.get('tokens') or [])} tokens",
                            "same" if same else "differ", "exact", "pass" if same else "warn",
                            "" if same else "naive's output changed: model math or BLAS rounding"))
    else:
        ok = now["tokens_match_naive"]
        first = next((i for i, (a, b) in enumerate(zip(now["tokens"], naive_tokens)) if a != b), None)
        checks.append(Check("correctness", fs, "tokens == naive's", "match", "match" if ok else "differ",
                            "exact", "pass" if ok else "fail",
                            "" if ok else f"first difference at new token {first}" if first is not None
                            else "different length"))
    stable = now["tokens_stable"]
    checks.append(Check("correctness", fs, "tokens stable", "yes", "yes" if stable else "no",
                        "exact", "pass" if stable else "fail", "" if stable else "nondeterministic output"))
    return checks


def _check_allocs(fs: str, base: dict, now: dict, t: dict) -> list[Check]:
    rel = t["alloc"]["rel_tolerance"]
    checks = [_count_check("alloc", fs, "alloc_bytes_per_token", base["alloc_bytes_per_token"],
                           now["alloc_bytes_per_token"], rel, unit=" B"),
              _count_check("alloc", fs, "alloc_calls_per_token", base["alloc_calls_per_token"],
                           now["alloc_calls_per_token"], rel, fmt="{:,.2f}")]
    det = now["alloc_deterministic"]
    checks.append(Check("alloc", fs, "allocs deterministic", "yes", "yes" if det else "no", "exact",
                        "pass" if det else "fail", "" if det else "allocations differ between identical runs"))
    return checks


def _check_stages(fs: str, base: dict, now: dict, t: dict) -> list[Check]:
    """Per (phase, stage, layer): alloc bytes and calls (alloc tolerance), stage calls (exact)."""
    rels = (t["alloc"]["rel_tolerance"], t["alloc"]["rel_tolerance"], t["op_counts"]["rel_tolerance"])
    sections = ("alloc", "alloc", "op_counts")
    keys = list(dict.fromkeys([*base["stages"], *now["stages"]]))
    failing, n = [], 0
    for key in keys:
        b, c = base["stages"].get(key, [0, 0, 0]), now["stages"].get(key, [0, 0, 0])
        for i, col in enumerate(STAGE_COLUMNS):
            n += 1
            check = _count_check(sections[i], fs, f"{key} {col}", b[i], c[i], rels[i], fmt="{:,.0f}")
            if check.verdict != "pass":
                failing.append(check)
    summary = Check("alloc", fs, "per stage (bytes, allocs, calls)", f"{len(base['stages'])} rows",
                    f"{len(now['stages'])} rows", f"±{100 * rels[0]:g}%; calls exact", "fail" if failing else "pass",
                    f"{len(failing)} of {n} values differ (below)" if failing else f"all {n} values within")
    return [summary, *failing]


def _check_op_counts(fs: str, base: dict, now: dict, t: dict) -> list[Check]:
    return [_count_check("op_counts", fs, "kv_hit_rate", base["kv_hit_rate"], now["kv_hit_rate"],
                         t["op_counts"]["rel_tolerance"], fmt="{:.4f}")]


def _check_gc(fs: str, base: dict, now: dict, t: dict, new_tokens: int) -> Check:
    tol = t["gc"]["abs_tolerance_per_run"]
    b, c = base["gc_collections_per_run"], now["gc_collections_per_run"]
    per100 = 100.0 / new_tokens
    ok = abs(c - b) <= tol + 1e-9
    detail = "" if ok else ("regression" if c > b else "improved: the baseline is stale, re-record it") + \
        f" ({b:.2f} -> {c:.2f} collections per run)"
    return Check("gc", fs, "gc_per_100_tokens", f"{b * per100:.2f}", f"{c * per100:.2f}",
                 f"±{tol * per100:.2f} (±{tol:g}/run)", "pass" if ok else "fail", detail)


def _has(fs: str, *names: str) -> bool:
    return set(names) <= set(fs.split(","))


def _check_steady(fs: str, base: dict, now: dict, t: dict) -> list[Check]:
    if not _has(fs, "pool"):
        return []
    bytes_, calls = now["steady_decode_max_bytes"], now["steady_decode_max_calls"]
    if _has(fs, "pool", "kv", "fused"):
        limit_b, limit_c = t["steady_decode"]["bytes_per_step"], t["steady_decode"]["calls_per_step"]
        tol = "budget"
    else:
        limit_b, limit_c = base["steady_decode_max_bytes"], base["steady_decode_max_calls"]
        tol = "<= baseline"
    checks = []
    for metric, value, limit in (("decode step bytes (max)", bytes_, limit_b),
                                 ("decode step allocs (max)", calls, limit_c)):
        ok = value <= limit
        checks.append(Check("steady_decode", fs, metric, f"<= {limit:,}", f"{value:,}", tol,
                            "pass" if ok else "fail", "" if ok else "steady-state decoding allocates something new"))
    return checks


def _check_speedup(fs: str, base: dict, now: dict, t: dict, tokens_ok: bool) -> Check:
    s = t["speedup"]
    rel, alpha = s["rel_tolerance"], s["alpha"]
    b, c = base["speedup"], now["speedup"]
    tol = f"-{100 * rel:g}%, p<{alpha:g}"
    if not tokens_ok:
        return Check("speedup", fs, "speedup vs naive (CPU)", f"{b['median']:.2f}x", "-", tol, "fail",
                     "does not count: tokens differ from naive")
    threshold = [x * (1 - rel) for x in b["samples"]]
    p = float(sps.mannwhitneyu(c["samples"], threshold, alternative="less").pvalue) \
        if len(c["samples"]) >= 2 and len(threshold) >= 2 else 1.0
    slower = c["median"] < np.median(threshold)
    verdict = "fail" if (p < alpha and slower) else "pass"
    detail = f"{_pct(c['median'], b['median'])}, p={p:.2g}; wall {c['wall_median']:.2f}x " \
             f"(baseline {b['wall_median']:.2f}x, not gated)"
    if verdict == "fail":
        detail = "regression " + detail
    return Check("speedup", fs, "speedup vs naive (CPU)", f"{b['median']:.2f}x", f"{c['median']:.2f}x", tol,
                 verdict, detail)


MACHINE_KEYS = ("cpu", "cores", "python", "numpy", "blas")


def _check_machine(base: dict | None, now: dict | None) -> Check:
    def show(m: dict | None) -> str:
        m = m or {}
        return f"{m.get('cpu', '?')} x{m.get('cores', '?')}"

    diffs = [k for k in MACHINE_KEYS if (base or {}).get(k) != (now or {}).get(k)]
    return Check("machine", "-", "machine == baseline's", show(base), show(now), "same", "warn" if diffs else "pass",
                 f"{', '.join(diffs)} differ: ratios and counts may not transfer; re-record the baseline on "
                 "this machine" if diffs else "")


def evaluate(baseline: dict, record: dict) -> list[Check]:
    t, new_tokens = baseline["thresholds"], record["workload"]["new_tokens"]
    now_all = facts(record)
    naive_tokens = now_all["none"]["tokens"]
    checks: list[Check] = [_check_machine(baseline.get("machine"), record.get("machine"))]
    for fs, now in now_all.items():
        base = baseline["flag_sets"].get(fs)
        if base is None:
            raise UserError(f"baseline has no flag set {fs!r}; re-record it with `{UPDATE_HINT}`")
        checks += _check_tokens(fs, base, now, naive_tokens)
        checks += _check_allocs(fs, base, now, t)
        checks += _check_stages(fs, base, now, t)
        checks += _check_op_counts(fs, base, now, t)
        checks.append(_check_gc(fs, base, now, t, new_tokens))
        checks += _check_steady(fs, base, now, t)
        if fs != "none":
            ok = now["tokens_match_naive"] and now["tokens_stable"] and now_all["none"]["tokens_stable"]
            checks.append(_check_speedup(fs, base, now, t, ok))
    return checks


def verdict(checks: list[Check]) -> str:
    if any(c.verdict == "fail" for c in checks):
        return "regression"
    return "pass"


# ---- orchestration ----------------------------------------------------------------------------
def resolve_workload(name: str | None, baseline: dict | None):
    from .workloads import load_workload

    if name is None and baseline is not None:
        name = baseline["workload"].get("ref") or baseline["workload"].get("name")
    return load_workload(name)


def record_baseline(path: Path, workload_name: str | None, repeats: int | None,
                    progress: Callable[[str], None] | None = None,
                    set_total: Callable[[int], None] | None = None) -> tuple[dict, dict]:
    """Measure and write a new baseline; thresholds and settings carry over from a readable old one."""
    try:
        old = load_baseline(path) if Path(path).exists() else None
    except UserError:
        old = None  # a corrupt baseline is what --update-baseline repairs
    workload = resolve_workload(workload_name, old)
    m = Measure.from_baseline(old["measure"], repeats) if old else Measure(repeats=repeats or DEFAULT_REPEATS)
    thresholds = {**DEFAULT_THRESHOLDS, **(old["thresholds"] if old else {})}
    record = measure(workload, m, progress, set_total)
    bad = [r["flags"] for r in record["results"] if not (r["vs_naive"]["tokens_match"] and r["tokens_stable"])]
    if bad:
        raise GateFailure(f"flag set {bad[0]!r} does not reproduce naive's tokens; fix correctness before "
                          "recording a baseline")
    baseline = make_baseline(record, workload, asdict(m), thresholds)
    write_baseline(baseline, path)
    return baseline, record


def run_gate(path: Path, workload_name: str | None, repeats: int | None,
             progress: Callable[[str], None] | None = None,
             set_total: Callable[[int], None] | None = None) -> tuple[list[Check], dict, dict]:
    baseline = load_baseline(path)
    workload = resolve_workload(workload_name, baseline)
    check_workload(baseline, workload, path)
    record = measure(workload, Measure.from_baseline(baseline["measure"], repeats), progress, set_total)
    return evaluate(baseline, record), record, baseline


def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .console import err_console

    # auto_refresh=False: no refresh thread, whose allocations would shift the GC counts measured.
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True, auto_refresh=False)


@click.command()
@click.option("--workload", "-w", "workload_name", default=None,
              help="Workload name or .toml path (default: the baseline's).")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Baseline file (default profiles/baseline.json).")
@click.option("--update-baseline", is_flag=True, help="Measure and rewrite the baseline (after a deliberate change).")
@click.option("--repeats", type=click.IntRange(2), default=None,
              help=f"Timed rounds (default: the baseline's; {DEFAULT_REPEATS} for a new baseline).")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the markdown summary here ($GITHUB_STEP_SUMMARY is appended to when set).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory for the gate's run record (default profiles/runs).")
def gate(workload_name, baseline_path, update_baseline, repeats, summary_path, out):
    """Gate a workload against the committed baseline: exit 0 pass, 1 regression, 2 input error."""
    from .console import console
    from .gate_report import baseline_written, gate_markdown, gate_table
    from .store import DEFAULT_ROOT, Store

    path = baseline_path or default_baseline_path()
    t0 = time.perf_counter()
    with _progress_bar() as bar:
        task = bar.add_task("gate: loading", total=None)

        def progress(label: str) -> None:
            bar.update(task, advance=1, description=f"gate: {label}", refresh=True)

        def set_total(total: int) -> None:
            bar.update(task, total=total, refresh=True)

        if update_baseline:
            baseline, record = record_baseline(path, workload_name, repeats, progress, set_total)
        else:
            checks, record, baseline = run_gate(path, workload_name, repeats, progress, set_total)
    store_path = Store(out or DEFAULT_ROOT).save(record)
    elapsed = time.perf_counter() - t0
    if update_baseline:
        console.print(baseline_written(baseline, path, store_path, elapsed))
        return
    result = verdict(checks)
    console.print(gate_table(checks, baseline, record, path))
    console.print(f"gate: [bold {'green' if result == 'pass' else 'red'}]{result}[/] in {elapsed:.0f} s · "
                  f"record: {store_path}")
    md = gate_markdown(checks, baseline, record, path, result, elapsed)
    if summary_path:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(md)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as fh:
            fh.write(md)
    if result != "pass":
        sys.exit(1)

