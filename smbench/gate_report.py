"""Renderers for gate results: a rich table for the terminal and markdown for a CI job summary."""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

COLUMNS = ("check", "flags", "metric", "baseline", "now", "tolerance", "verdict", "detail")
COLORS = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def _cells(c) -> tuple[str, ...]:
    return (c.section, c.flags, c.metric, c.baseline, c.now, c.tolerance, c.verdict, c.detail)


def _provenance(baseline: dict) -> str:
    git = baseline.get("git") or {}
    machine = baseline.get("machine") or {}
    commit = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
    return f"commit {commit}, {baseline.get('created', '?')}, {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores)"


def gate_table(checks, baseline: dict, record: dict, path: Path) -> Table:
    wl = record["workload"]
    table = Table(title=f"smbench gate — workload {wl['name']} ({wl['new_tokens']} new tokens, "
                        f"{wl['repeats']} timed rounds) vs {path}: {_provenance(baseline)}",
                  title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col in ("baseline", "now") else "left", no_wrap=col != "detail")
    for c in checks:
        cells = [escape(x) for x in _cells(c)]
        cells[6] = f"[{COLORS[c.verdict]}]{cells[6]}[/]"
        table.add_row(*cells)
    return table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def gate_markdown(checks, baseline: dict, record: dict, path: Path, result: str, elapsed_s: float) -> str:
    wl = record["workload"]
    icon = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
    failed = [c for c in checks if c.verdict == "fail"]
    lines = [
        f"## smbench gate: {'PASS' if result == 'pass' else 'REGRESSION'}",
        "",
        f"Workload `{wl['name']}` ({wl['new_tokens']} new tokens, {wl['repeats']} timed rounds, "
        f"{elapsed_s:.0f} s) against `{path}` ({_provenance(baseline)}). "
        f"Run record `{record['run_id']}` at commit {((record.get('git') or {}).get('commit') or 'unknown')[:10]}.",
        "",
        f"{len(checks)} checks: {len(checks) - len(failed)} pass, {len(failed)} fail.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for c in checks:
        cells = [_md_cell(x) for x in _cells(c)]
        cells[6] = f"{icon[c.verdict]} {cells[6]}"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "<details><summary>Thresholds and why</summary>", ""]
    for name, t in baseline["thresholds"].items():
        values = ", ".join(f"{k}={v}" for k, v in t.items() if k != "explanation")
        lines.append(f"- **{name}** ({values or 'exact'}): {t.get('explanation', '')}")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def baseline_written(baseline: dict, path: Path, record_path: Path, elapsed_s: float) -> Table:
    table = Table(title=f"baseline written: {path} ({_provenance(baseline)}, {elapsed_s:.0f} s; "
                        f"record {record_path})", title_justify="left")
    for col in ("flags", "tokens", "alloc/token", "alloc calls/token", "GC/100 tok", "steady decode max",
                "speedup (CPU)", "speedup (wall)"):
        table.add_column(col, justify="left" if col == "flags" else "right")
    for fs, f in baseline["flag_sets"].items():
        sp = f["speedup"]
        table.add_row(escape(fs), str(len(f["tokens"])), f"{f['alloc_bytes_per_token']:,.1f} B",
                      f"{f['alloc_calls_per_token']:,.2f}", f"{f['gc_per_100_tokens']:.2f}",
                      f"{f['steady_decode_max_bytes']:,} B / {f['steady_decode_max_calls']:,}",
                      f"{sp['median']:.2f}x" if sp["median"] else "-",
                      f"{sp['wall_median']:.2f}x" if sp["wall_median"] else "-")
    return table
