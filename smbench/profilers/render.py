"""Rich tables for profile summaries, read from the record (plain dicts), one per view."""
from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..console import human_bytes

SHOW = 8  # rows per table on the terminal; the record keeps more


def _table(title: str, columns: list[tuple[str, str]]) -> Table:
    width = max(len(line) for line in title.splitlines())
    table = Table(title=escape(title), title_justify="left", min_width=min(width, 150))
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")
    return table


def _row(table: Table, *cells: str) -> None:
    """Cells are data (source lines, paths), never markup: `x[i]` must print as written."""
    table.add_row(*(Text(c) for c in cells))


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def pyinstrument_tables(data: dict) -> list[Table]:
    head = f"pyinstrument — {data['samples']} samples over {1e3 * data['duration_s']:.1f} ms"
    fns = _table(f"{head}: top functions by self time",
                 [("function", "left"), ("where", "left"), ("self ms", "right"), ("share", "right")])
    for r in data["top_self"][:SHOW]:
        _row(fns, r["function"], f"{r['file']}:{r['line']}", f"{1e3 * r['self_s']:.2f}", _pct(r["share"]))
    stages = _table("pyinstrument: time by engine stage",
                    [("stage", "left"), ("ms", "right"), ("share", "right")])
    for r in data["by_stage"][:SHOW]:
        _row(stages, r["stage"], f"{1e3 * r['self_s']:.2f}", _pct(r["share"]))
    return [fns, stages]


def memray_tables(data: dict) -> list[Table]:
    head = (f"memray — {human_bytes(data['total_bytes'])} in {data['total_allocations']:,} allocations, "
            f"NumPy data {human_bytes(data['numpy_data_bytes'])} (harness counter "
            f"{human_bytes(data['harness_counter_bytes'])}), high-water mark {human_bytes(data['high_water_bytes'])}")
    stages = _table(f"{head}\nallocations by engine stage",
                    [("stage", "left"), ("bytes", "right"), ("allocs", "right"),
                     ("NumPy data", "right"), ("data allocs", "right")])
    for r in data["by_stage"][:SHOW + 4]:
        _row(stages, r["stage"], human_bytes(r["bytes"]), f"{r['allocations']:,}",
                       human_bytes(r["numpy_data_bytes"]), f"{r['numpy_data_allocations']:,}")
    return [stages, _sites("memray: allocations by call site", data["by_call_site"]),
            _sites("memray: live at the high-water mark, by call site", data["high_water_sites"])]


def _sites(title: str, rows: list[dict]) -> Table:
    table = _table(title, [("call site", "left"), ("called from", "left"), ("stages", "left"),
                           ("bytes", "right"), ("allocs", "right"), ("NumPy data", "right")])
    for r in rows[:SHOW]:
        _row(table, f"{r['file']}:{r['line']} {r['function']}", r["caller"], r["stages"],
                      human_bytes(r["bytes"]), f"{r['allocations']:,}", human_bytes(r["numpy_data_bytes"]))
    return table


def scalene_tables(data: dict) -> list[Table]:
    head = f"scalene — {data['elapsed_s']:.2f} s profiled, max footprint {data['max_footprint_mb']:.1f} MB"
    cpu = _table(f"{head}: top lines by CPU", [("line", "left"), ("source", "left"), ("CPU", "right"),
                                               ("Python", "right"), ("native", "right")])
    for r in data["top_cpu"][:SHOW]:
        _row(cpu, f"{r['file']}:{r['line']}", r["source"], f"{r['cpu_share']:.1f}%",
                    f"{r['python_share']:.1f}%", f"{r['native_share']:.1f}%")
    mem = _table("scalene: top lines by memory (sampled)", [("line", "left"), ("source", "left"),
                                                             ("alloc MB", "right"), ("mallocs", "right"),
                                                             ("peak MB", "right")])
    for r in data["top_memory"][:SHOW]:
        _row(mem, f"{r['file']}:{r['line']}", r["source"], f"{r['malloc_mb']:.2f}", f"{r['mallocs']:,}",
                    f"{r['peak_mb']:.2f}")
    return [cpu, mem]


RENDERERS = {"pyinstrument": pyinstrument_tables, "memray": memray_tables, "scalene": scalene_tables}


def print_profile(console, record: dict, path: Path) -> None:
    run_dir = Path(path).parent
    wl = record["workload"]
    console.print(f"smbench profile {record['run_id']} — workload {wl['name']}, flags "
                  f"{record['flag_sets'][0]}, {wl['new_tokens']} new tokens", markup=False, highlight=False)
    for summary in record["profiles"]:
        for table in RENDERERS[summary["profiler"]](summary["data"]):
            console.print(table)
    for summary in record["profiles"]:
        files = ", ".join(str(run_dir / name) for name in summary["artifacts"].values())
        console.print(f"{summary['profiler']} {summary['version']} ({summary['wall_s']:.1f} s): {files}",
                      markup=False, highlight=False, soft_wrap=True)
    console.print(f"record: {path}", markup=False, highlight=False, soft_wrap=True)
