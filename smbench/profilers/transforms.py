"""Pure transforms from raw profiler data (plain tuples and dicts) to summary rows.

Nothing here imports a profiler: the collectors turn their profiler's objects into
plain data first, so these functions are testable on hand-made input.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .stages import ENGINE_DIR, StageMap
from .summary import FunctionTime, LineCpu, LineMemory, SiteAlloc, StageAlloc, StageTime

ROOT = ENGINE_DIR.parent
# memray allocator kinds that release memory rather than allocate it
RELEASES = ("FREE", "MUNMAP", "PYMALLOC_FREE")
Frame = tuple[str, str, int]  # (function, file, line), the line being executed


def short_path(file: str) -> str:
    """A path relative to the repository when it is inside it (records stay portable)."""
    try:
        return str(Path(file).resolve().relative_to(ROOT))
    except (ValueError, OSError):
        pass
    _, sep, rest = file.rpartition("site-packages/")
    return rest if sep else file


# ---- pyinstrument: frame records -------------------------------------------------------
def parse_frame(identifier: str) -> tuple[str, str, int, int]:
    """pyinstrument's frame identifier -> (function, file, def line, current line).

    Format: "function\\0file\\0defline" then "\\x01"-separated attributes, of which
    "l<n>" is the line being executed and "c<Class>" the class of a method.
    """
    head, *attrs = identifier.split("\x01")
    function, file, line = (head.split("\x00") + ["", "0"])[:3]
    current = int(line or 0)
    for attr in attrs:
        if attr.startswith("l") and attr[1:].isdigit():
            current = int(attr[1:])
        elif attr.startswith("c"):
            function = f"{attr[1:]}.{function}"
    return function, file, int(line or 0), current


def _python_frames(call_stack: list[str]) -> list[tuple[str, str, int, int]]:
    frames = [parse_frame(f) for f in call_stack]
    return [f for f in frames if f[1] != "<thread>"]


def top_self_time(records, top: int = 10) -> list[FunctionTime]:
    """Functions by self time from pyinstrument's (call_stack, seconds) frame records."""
    total, by_fn = 0.0, defaultdict(float)
    for call_stack, seconds in records:
        frames = _python_frames(call_stack)
        total += seconds
        if frames:
            function, file, line, _ = frames[-1]
            by_fn[(function, file, line)] += seconds
    ranked = sorted(by_fn.items(), key=lambda kv: -kv[1])[:top]
    return [FunctionTime(fn, short_path(file), line, s, s / total if total else 0.0)
            for (fn, file, line), s in ranked]


def time_by_stage(records, stage_map: StageMap) -> list[StageTime]:
    """Sampled time per engine stage: each sample goes to the stage of its stack."""
    total, by_stage = 0.0, defaultdict(float)
    for call_stack, seconds in records:
        stack = [(fn, file, cur) for fn, file, _, cur in reversed(_python_frames(call_stack))]
        by_stage[stage_map.stage_of(stack)] += seconds
        total += seconds
    ranked = sorted(by_stage.items(), key=lambda kv: -kv[1])
    return [StageTime(stage, s, s / total if total else 0.0) for stage, s in ranked]


# ---- memray: allocation records --------------------------------------------------------
def call_site(stack: list[Frame], stage_map: StageMap) -> tuple[Frame, Frame | None]:
    """The innermost engine frame of a stack (innermost first) and the engine frame that called
    it; without engine frames, the innermost frame."""
    engine_frames = [f for f in stack if stage_map.in_engine(f[1])]
    if engine_frames:
        return engine_frames[0], engine_frames[1] if len(engine_frames) > 1 else None
    return (stack[0] if stack else ("(no Python frame)", "", 0)), None


def _where(frame: Frame | None) -> str:
    return "" if frame is None else f"{short_path(frame[1])}:{frame[2]} {frame[0]}"


def allocations_by(allocs, stage_map: StageMap, top: int = 10) -> tuple[list[StageAlloc], list[SiteAlloc]]:
    """By stage and by call site, from (allocator, size, count, stack, is_numpy_data) tuples;
    stacks are (function, file, line) frames, innermost first."""
    stages: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    sites: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    cache: dict[tuple, tuple[str, tuple]] = {}
    for allocator, size, count, stack, numpy_data in allocs:
        if allocator in RELEASES:
            continue
        key = tuple(stack)
        if key not in cache:
            cache[key] = (stage_map.stage_of(stack), call_site(stack, stage_map))
        stage, site = cache[key]
        for acc in (stages[stage], sites[site][stage]):
            acc[0] += size
            acc[1] += count
            if numpy_data:
                acc[2] += size
                acc[3] += count
    by_stage = [StageAlloc(s, *acc) for s, acc in sorted(stages.items(), key=lambda kv: -kv[1][0])]
    return by_stage, _site_rows(sites, top)


def _site_rows(sites, top: int) -> list[SiteAlloc]:
    rows = []
    for ((function, file, line), caller), per_stage in sites.items():
        ranked = sorted(per_stage.items(), key=lambda kv: -kv[1][0])
        total = [sum(acc[i] for _, acc in ranked) for i in range(3)]
        rows.append(SiteAlloc(function, short_path(file), line, _where(caller),
                              ", ".join(s for s, _ in ranked), *total))
    return sorted(rows, key=lambda r: -r.bytes)[:top]


# ---- scalene: profile JSON -------------------------------------------------------------
_HTML_ESCAPES = {"\\u003c": "<", "\\u003e": ">", "\\u0026": "&"}


def source_text(line: str) -> str:
    """A source line as scalene stores it (with <, > and & escaped for its HTML view)."""
    for escaped, char in _HTML_ESCAPES.items():
        line = line.replace(escaped, char)
    return line.strip()


def _scalene_lines(profile: dict):
    for file, data in (profile.get("files") or {}).items():
        for row in data.get("lines") or []:
            yield file, row


def top_cpu_lines(profile: dict, top: int = 10) -> list[LineCpu]:
    rows = []
    for file, r in _scalene_lines(profile):
        py, native, system = r.get("n_cpu_percent_python", 0.0), r.get("n_cpu_percent_c", 0.0), \
            r.get("n_sys_percent", 0.0)
        if py + native + system > 0:
            rows.append(LineCpu(short_path(file), r["lineno"], source_text(r.get("line", "")),
                                py + native + system, py, native))
    return sorted(rows, key=lambda r: -r.cpu_share)[:top]


def top_memory_lines(profile: dict, top: int = 10) -> list[LineMemory]:
    rows = [LineMemory(short_path(file), r["lineno"], source_text(r.get("line", "")), r.get("n_malloc_mb", 0.0),
                       int(r.get("n_mallocs", 0)), r.get("n_peak_mb", 0.0))
            for file, r in _scalene_lines(profile) if r.get("n_malloc_mb", 0.0) > 0]
    return sorted(rows, key=lambda r: -r.malloc_mb)[:top]
