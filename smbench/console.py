"""Terminal output: one rich Console, consistent tables for run, compare and history."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from .report.data import stage_totals
from .units import human_bytes

# Tables are wide; a pipe or CI log gets 150 columns instead of rich's default 80.
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


def fmt(x: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def _top(result: dict, key: str, n: int = 3) -> str:
    """The n largest decode stages (summed over layers) by time share or allocated bytes."""
    totals = stage_totals(result)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][key])[:n]
    if key == "alloc_bytes":
        return ", ".join(f"{s} {human_bytes(a[key])}" for s, a in ranked if a[key] > 0) or "nothing allocated"
    return ", ".join(f"{s} {100 * a['share']:.0f}%" for s, a in ranked)


def run_table(record: dict) -> Table:
    wl = record["workload"]
    table = Table(title=f"smbench run {record['run_id']} — workload {wl['name']} "
                        f"({wl['new_tokens']} new tokens, {wl['repeats']} repeats)", title_justify="left")
    for col, justify in (("flags", "left"), ("tokens/s\nmedian ± IQR", "right"), ("TTFT\nms", "right"),
                         ("ms/token\nmin/med/p95/max", "right"), ("slope\nµs/pos", "right"),
                         ("alloc\nper token", "right"), ("GC\n/100 tok", "right"),
                         ("speedup\nvs naive", "right"), ("alloc\nreduction", "right"), ("same\ntokens", "center")):
        table.add_column(col, justify=justify)
    for r in record["results"]:
        m, v = r["metrics"], r["vs_naive"]
        tps, mpt = m["tokens_per_s"], m["ms_per_token"]
        sig = "" if v["speedup_significant"] or r["flags"] == "none" else " (n.s.)"
        reduction = "-" if r["flags"] == "none" else (
            "∞ (0 B)" if v["alloc_reduction"] is None else f"{v['alloc_reduction']:.0f}x")
        table.add_row(
            r["flags"], f"{tps['median']:,.0f} ± {tps['iqr']:,.0f}", fmt(m["ttft_ms"]["median"], ".2f"),
            "/".join(fmt(mpt.get(k), ".3f") for k in ("min", "median", "p95", "max")),
            fmt(m["ms_per_token_slope_us_per_position"], ".3f"),
            human_bytes(m["alloc_bytes_per_token"]), fmt(m["gc_per_100_tokens"], ".1f"),
            f"{v['speedup']:.2f}x{sig}", reduction, "yes" if v["tokens_match"] else "[red]NO[/red]")
    return table


def stage_summary_table(record: dict) -> Table:
    table = Table(title="Top stages in decode steps (summed over layers)", title_justify="left")
    table.add_column("flags")
    table.add_column("by time (share of step)")
    table.add_column("by allocated bytes (per run)")
    for r in record["results"]:
        table.add_row(r["flags"], _top(r, "total_ms"), _top(r, "alloc_bytes"))
    return table


def facts_table(record: dict) -> Table:
    table = Table(title="Memory, cache and probe", title_justify="left")
    for col in ("flags", "model", "KV cache (% model)", "KV hit rate", "cold alloc", "peak RSS",
                "probe overhead"):
        table.add_column(col, justify="left" if col == "flags" else "right")
    for r in record["results"]:
        m = r["metrics"]
        table.add_row(r["flags"], f"{m['model_mb']:.2f} MB",
                      f"{m['kv_cache_mb']:.2f} MB ({m['kv_cache_pct_of_model']:.0f}%)",
                      f"{100 * m['kv_hit_rate']:.1f}%", human_bytes(m["cold_alloc_bytes"]),
                      f"{m['peak_rss_mb']:.0f} MB", fmt(100 * m["probe_overhead"], "+.1f", "%")
                      if m["probe_overhead"] is not None else "-")
    return table


def targets_table(record: dict) -> Table | None:
    targets = record["workload"].get("targets") or []
    if not targets:
        return None
    table = Table(title="Targets (best flag set)", title_justify="left")
    for col in ("metric", "target", "best", "flags", "gap", "met"):
        table.add_column(col)
    from .targets import evaluate_targets

    for row in evaluate_targets(record):
        table.add_row(row["metric"], row["target"], fmt(row["actual"], ",.1f"), row["flags"],
                      fmt(row["gap"], "+,.1f"), "[green]yes[/green]" if row["met"] else "[red]no[/red]")
    return table


def print_run(record: dict, path) -> None:
    console.print(run_table(record))
    console.print(stage_summary_table(record))
    console.print(facts_table(record))
    t = targets_table(record)
    if t is not None:
        console.print(t)
    m = record["machine"]
    console.print(f"machine: {m['cpu']} · {m['cores']} cores · Python {m['python']} · NumPy {m['numpy']} "
                  f"· {m['blas']}")
    console.print(f"record: {path}")
