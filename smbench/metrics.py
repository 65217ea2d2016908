"""Turn raw probe data (runner.FlagSetRun) into the metrics a run record stores.

Metric names follow DESIGN.md. Timings come from the timed repeats (StepProbe);
per-stage shares and all allocation counts from the instrumented repeats (StageProbe).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .probes import ProbeData
from .runner import FlagSetRun, WorkloadRun
from .stats import compare_samples, fit_slope, percentiles, summarize

MB = 1024 * 1024


def _decode_steps(data: ProbeData):
    return data.steps[1:]  # step 0 is the prefill (time to first token)


def step_metrics(run: FlagSetRun, new_tokens: int) -> dict:
    tps = [new_tokens / w for w in run.timed_wall_s]
    decode_tps, ttft_ms, per_token_ms = [], [], []
    by_position: dict[int, list[float]] = defaultdict(list)
    for data in run.timed_steps:
        steps = _decode_steps(data)
        if data.steps:
            ttft_ms.append(data.steps[0].ns / 1e6)
        if steps:
            decode_tps.append(len(steps) / (sum(s.ns for s in steps) / 1e9))
        for s in steps:
            per_token_ms.append(s.ns / 1e6)
            by_position[s.n_total].append(s.ns / 1e6)
    curve = [[pos, float(np.median(v))] for pos, v in sorted(by_position.items())]
    fit = fit_slope([c[0] for c in curve], [c[1] for c in curve])
    return {
        "tokens_per_s": summarize(tps),
        "decode_tokens_per_s": summarize(decode_tps),
        "ttft_ms": summarize(ttft_ms),
        "ms_per_token": percentiles(per_token_ms, (50, 95)),
        "ms_per_token_curve": curve,
        "ms_per_token_slope_us_per_position": None if fit["slope"] is None else fit["slope"] * 1000,
        "ms_per_token_fit": fit,
    }


def _alloc_totals(data: ProbeData) -> tuple[int, int]:
    return sum(s.alloc_bytes for s in data.steps), sum(s.alloc_calls for s in data.steps)


def alloc_metrics(run: FlagSetRun, new_tokens: int) -> dict:
    steady = run.instrumented[-1]
    totals = [_alloc_totals(d) for d in run.instrumented]
    bytes_, calls = totals[-1]
    decode = _decode_steps(steady)
    cold_bytes, cold_calls = _alloc_totals(run.cold) if run.cold else (None, None)
    prefill = steady.steps[0] if steady.steps else None
    return {
        "alloc_bytes_per_token": bytes_ / new_tokens,
        "alloc_calls_per_token": calls / new_tokens,
        "alloc_bytes_per_decode_step": sum(s.alloc_bytes for s in decode) / len(decode) if decode else 0.0,
        "alloc_calls_per_session": calls,
        "alloc_bytes_per_session": bytes_,
        "prefill_alloc_bytes": prefill.alloc_bytes if prefill else 0,
        "cold_alloc_bytes": cold_bytes,
        "cold_alloc_calls": cold_calls,
        "alloc_deterministic": len(set(totals)) == 1,
        "alloc_bytes_per_step": [s.alloc_bytes for s in steady.steps],
    }


def stage_table(run: FlagSetRun) -> list[dict]:
    """Per (phase, stage, layer), summed over instrumented repeats and averaged per repeat."""
    n_runs = len(run.instrumented)
    acc: dict[tuple, dict] = {}
    for data in run.instrumented:
        for row in data.stages:
            key = (row.phase, row.stage, row.layer)
            a = acc.setdefault(key, {"calls": 0, "total_ns": 0, "min_ns": row.min_ns, "max_ns": 0,
                                     "alloc_bytes": row.alloc_bytes, "alloc_calls": row.alloc_calls})
            a["calls"] += row.calls
            a["total_ns"] += row.total_ns
            a["min_ns"] = min(a["min_ns"], row.min_ns)
            a["max_ns"] = max(a["max_ns"], row.max_ns)
    phase_total = defaultdict(float)
    for (phase, _, _), a in acc.items():
        phase_total[phase] += a["total_ns"]
    rows = []
    for (phase, stage, layer), a in acc.items():
        rows.append({
            "phase": phase, "stage": stage, "layer": layer,
            "calls": a["calls"] // n_runs,
            "total_ms": a["total_ns"] / n_runs / 1e6,
            "mean_us": a["total_ns"] / a["calls"] / 1e3 if a["calls"] else 0.0,
            "min_us": a["min_ns"] / 1e3, "max_us": a["max_ns"] / 1e3,
            "share": a["total_ns"] / phase_total[phase] if phase_total[phase] else 0.0,
            "alloc_bytes": a["alloc_bytes"], "alloc_calls": a["alloc_calls"],
        })
    return rows


def flag_set_metrics(run: FlagSetRun, new_tokens: int) -> dict:
    m = step_metrics(run, new_tokens)
    m.update(alloc_metrics(run, new_tokens))
    gc_rate = [100.0 * c / run.gc_tokens for c in run.gc_collections] if run.gc_tokens else [0.0] * 3
    attended = run.kv_computed + run.kv_reused
    m.update({
        "gc_per_100_tokens": sum(gc_rate),
        "gc_per_100_tokens_by_generation": gc_rate,
        "kv_hit_rate": run.kv_reused / attended if attended else 0.0,
        "model_mb": run.model_bytes / MB,
        "kv_cache_mb": run.kv_cache_bytes / MB,
        "kv_cache_pct_of_model": 100.0 * run.kv_cache_bytes / run.model_bytes if run.model_bytes else 0.0,
        "workspace_mb": run.workspace_bytes / MB,
        "peak_rss_mb": run.peak_rss_mb,
    })
    timed, inst = np.median(run.timed_wall_s), np.median(run.instrumented_wall_s)
    m["probe_overhead"] = float(inst / timed - 1.0) if timed else None
    return m


def versus_naive(metrics: dict, naive: dict, run: FlagSetRun, naive_run: FlagSetRun) -> dict:
    cmp = compare_samples(naive["tokens_per_s"]["samples"], metrics["tokens_per_s"]["samples"])
    nb, b = naive["alloc_bytes_per_token"], metrics["alloc_bytes_per_token"]
    return {
        "speedup": cmp["ratio"], "speedup_p_value": cmp["p_value"], "speedup_significant": cmp["significant"],
        "alloc_reduction": (nb / b) if b else None,  # None: allocates nothing (infinite reduction)
        "alloc_bytes_saved_per_token": nb - b,
        "tokens_match": run.tokens == naive_run.tokens,
    }


def build_results(wr: WorkloadRun) -> list[dict]:
    n = wr.workload.new_tokens
    metrics = {fs: flag_set_metrics(wr.runs[fs], n) for fs in wr.flag_sets}
    naive_run, naive = wr.runs["none"], metrics["none"]
    results = []
    for fs in wr.flag_sets:
        run = wr.runs[fs]
        results.append({
            "flags": fs,
            "tokens": run.tokens,
            "tokens_stable": run.tokens_stable,
            "metrics": metrics[fs],
            "vs_naive": versus_naive(metrics[fs], naive, run, naive_run),
            "stages": stage_table(run),
        })
    return results
