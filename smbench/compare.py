"""Compare two run records metric by metric, flag set by flag set."""
from __future__ import annotations

from rich.table import Table

from .console import human_bytes
from .stats import compare_samples
from .targets import metric_value

# (metric, higher is better, kind): "samples" metrics get a significance test.
COMPARED = (
    ("tokens_per_s", True, "samples"),
    ("decode_tokens_per_s", True, "samples"),
    ("ttft_ms", False, "samples"),
    ("alloc_bytes_per_token", False, "count"),
    ("alloc_calls_per_token", False, "count"),
    ("gc_per_100_tokens", False, "count"),
    ("kv_hit_rate", True, "count"),
    ("peak_rss_mb", False, "count"),
)


def compare_records(a: dict, b: dict) -> list[dict]:
    rows = []
    b_results = {r["flags"]: r for r in b["results"]}
    for ra in a["results"]:
        rb = b_results.get(ra["flags"])
        if rb is None:
            continue
        for name, higher_better, kind in COMPARED:
            va, vb = metric_value(ra["metrics"], name), metric_value(rb["metrics"], name)
            row = {"flags": ra["flags"], "metric": name, "a": va, "b": vb,
                   "ratio": (vb / va) if va not in (None, 0) and vb is not None else None,
                   "higher_is_better": higher_better, "p_value": None, "significant": None}
            if kind == "samples" and isinstance(ra["metrics"].get(name), dict):
                test = compare_samples(ra["metrics"][name].get("samples", []),
                                       rb["metrics"][name].get("samples", []))
                row["p_value"], row["significant"] = test["p_value"], test["significant"]
            elif va is not None and vb is not None:
                row["significant"] = va != vb  # deterministic counts: any change is real
            if row["significant"] and va is not None and vb is not None:
                row["verdict"] = "better" if (vb > va) == higher_better else "worse"
            else:
                row["verdict"] = "same"
            rows.append(row)
    return rows


def compare_table(a: dict, b: dict, rows: list[dict]) -> Table:
    table = Table(title=f"compare A={a['run_id']} ({a['workload']['name']}) "
                        f"vs B={b['run_id']} ({b['workload']['name']})", title_justify="left")
    for col in ("flags", "metric", "A", "B", "B/A", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("flags", "metric", "verdict") else "right")

    def show(name, v):
        if v is None:
            return "-"
        return human_bytes(v) if name.startswith("alloc_bytes") else f"{v:,.3f}" if v < 100 else f"{v:,.0f}"

    colors = {"better": "green", "worse": "red", "same": "dim"}
    for r in rows:
        table.add_row(r["flags"], r["metric"], show(r["metric"], r["a"]), show(r["metric"], r["b"]),
                      "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
                      "-" if r["p_value"] is None else f"{r['p_value']:.3f}",
                      f"[{colors[r['verdict']]}]{r['verdict']}[/]")
    return table
