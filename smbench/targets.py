"""Workload targets (e.g. tokens_per_s >= 10000) evaluated against a run record."""
from __future__ import annotations

from .workloads import Target


def metric_value(metrics: dict, name: str) -> float | None:
    """A metric as one number: summaries give their median; missing or non-numeric gives None."""
    value = metrics.get(name)
    if isinstance(value, dict):
        value = value.get("median")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def evaluate_targets(record: dict) -> list[dict]:
    """For each target: the best value over flag sets, which set, the gap, and whether it is met."""
    rows = []
    for t in record["workload"].get("targets") or []:
        target = Target(t["metric"], t["op"], t["value"])
        best = None
        for r in record["results"]:
            v = metric_value(r["metrics"], target.metric)
            if v is None:
                continue
            if best is None or target.gap(v) > target.gap(best[0]):
                best = (v, r["flags"])
        rows.append({"metric": target.metric, "target": str(target),
                     "actual": best[0] if best else None, "flags": best[1] if best else "-",
                     "gap": target.gap(best[0]) if best else None,
                     "met": bool(best) and target.met(best[0])})
    return rows
