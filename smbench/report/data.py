"""The report's data: pure transforms of run records into plain dataclasses.

Renderers (markdown.py, html.py, charts.py) only format what is computed here;
nothing here formats text except the one-sentence executive summary.
"""
from __future__ import annotations

import itertools
import math
import shlex
from collections import defaultdict
from dataclasses import dataclass, field

from engine.flags import FLAG_HELP, OptFlags

from ..targets import metric_value as metric
from ..workloads import Target

MB = 1024 * 1024
NAIVE = "none"
# Where an unfused stage's work goes when the `fused` flag merges stages.
FUSED_INTO = {"attn.scores": "attn.core", "attn.softmax": "attn.core", "attn.context": "attn.core",
              "ln_2": "residual+ln_2", "residual": "residual+ln_2", "ln_1": "residual+ln_1",
              "ln_f": "residual+ln_f"}
KEY_METRICS = (  # (record metric, label, unit, scale to display unit, higher is better)
    ("tokens_per_s", "tokens/s", "tok/s", 1.0, True),
    ("ms_per_token", "ms per token (decode step, median)", "ms", 1.0, False),
    ("alloc_bytes_per_token", "MB allocated per token", "MB", 1.0 / MB, False),
    ("alloc_calls_per_session", "allocations per session", "calls", 1.0, False),
    ("gc_per_100_tokens", "GC collections per 100 tokens", "per 100 tok", 1.0, False),
)


# ---- small helpers ----------------------------------------------------------------
def canonical(flags: str) -> str:
    try:
        return str(OptFlags.parse(flags))
    except Exception:  # an unknown flag from a newer engine: keep the label as written
        return flags


def decode_steps(result: dict, new_tokens: int) -> int:
    calls = [s["calls"] for s in result.get("stages", []) if s["phase"] == "decode" and s["stage"] == "sample"]
    return calls[0] if calls else max(new_tokens - 1, 1)


def stage_totals(result: dict, phase: str = "decode") -> dict[str, dict]:
    """Per stage, summed over layers: calls, total_ms, min/max µs, alloc bytes/calls."""
    out: dict[str, dict] = {}
    for s in result.get("stages", []):
        if s["phase"] != phase:
            continue
        a = out.setdefault(s["stage"], {"calls": 0, "total_ms": 0.0, "min_us": math.inf, "max_us": 0.0,
                                        "alloc_bytes": 0, "alloc_calls": 0, "layers": 0})
        a["calls"] += s["calls"]
        a["total_ms"] += s["total_ms"]
        a["min_us"] = min(a["min_us"], s["min_us"])
        a["max_us"] = max(a["max_us"], s["max_us"])
        a["alloc_bytes"] += s["alloc_bytes"]
        a["alloc_calls"] += s["alloc_calls"]
        a["layers"] += 1
    total = sum(a["total_ms"] for a in out.values())
    for a in out.values():
        a["share"] = a["total_ms"] / total if total else 0.0
        a["mean_us"] = 1000 * a["total_ms"] / a["calls"] if a["calls"] else 0.0
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["total_ms"]))


def best_result(record: dict) -> dict:
    return max(record["results"], key=lambda r: metric(r["metrics"], "tokens_per_s") or 0.0)


def result_by_flags(record: dict) -> dict[str, dict]:
    return {canonical(r["flags"]): r for r in record["results"]}


# ---- executive summary -------------------------------------------------------------
@dataclass
class Summary:
    sentence: str
    stage: str | None = None
    share: float | None = None
    naive_ms: float | None = None
    best_flags: str | None = None
    best_speedup: float | None = None
    best_ms: float | None = None
    best_stage: str | None = None  # where the stage's work is in the best set (itself or merged)


def executive_summary(record: dict) -> Summary:
    flags = result_by_flags(record)
    naive = flags.get(NAIVE)
    n_new = record["workload"].get("new_tokens", 2)
    if naive is None or not naive.get("stages"):
        return Summary("The run has no naive (flags 'none') result with stage data, so there is no baseline "
                       "to find a bottleneck in.")
    stages = stage_totals(naive)
    stage, top = next(iter(stages.items()))
    steps = decode_steps(naive, n_new)
    naive_ms = top["total_ms"] / steps
    best = best_result(record)
    speedup = (best.get("vs_naive") or {}).get("speedup")
    s = Summary("", stage, top["share"], naive_ms, best["flags"], speedup)
    head = (f"The bottleneck is {stage}: {100 * top['share']:.1f}% of naive decode time "
            f"({naive_ms:.4f} ms per token, summed over layers)")
    if canonical(best["flags"]) == NAIVE:
        s.sentence = head + "; no flag set in this run beats naive, so nothing has removed it yet."
        return s
    b_stages = stage_totals(best)
    b_steps = decode_steps(best, n_new)
    target = stage if stage in b_stages else FUSED_INTO.get(stage)
    lead = f"; the fastest flag set, \"{best['flags']}\" ({speedup:.2f}x naive tokens/s),"
    if target in b_stages:
        s.best_stage, s.best_ms = target, b_stages[target]["total_ms"] / b_steps
        change = 100 * (s.best_ms / naive_ms - 1) if naive_ms else 0.0
        verb = "cuts it to" if change < 0 else "leaves it at"
        what = (f" {verb} {s.best_ms:.4f} ms per token ({change:+.1f}%)" if target == stage else
                f" merges it into {target}, which takes {s.best_ms:.4f} ms per token ({change:+.1f}%)")
    else:
        what = " removes it"
    b_top, b_row = next(iter(b_stages.items())) if b_stages else (None, None)
    if b_top is None:
        tail = "."
    elif b_top == target:
        tail = f", yet it is still that set's largest stage ({100 * b_row['share']:.1f}%)."
    else:
        tail = f", and its largest stage is now {b_top} ({100 * b_row['share']:.1f}%)."
    s.sentence = head + lead + what + tail
    return s


# ---- key metrics vs targets --------------------------------------------------------
@dataclass
class KeyMetric:
    metric: str
    label: str
    unit: str
    scale: float
    naive: float | None
    best: float | None
    best_flags: str | None
    target_op: str | None = None    # e.g. ">="
    target_value: float | None = None  # display units
    gap: float | None = None        # display units, >= 0 means met
    met: bool | None = None


def _targets(record: dict) -> dict[str, Target]:
    return {t["metric"]: Target(t["metric"], t["op"], t["value"]) for t in record["workload"].get("targets") or []}


def key_metrics(record: dict) -> list[KeyMetric]:
    targets = _targets(record)
    naive = result_by_flags(record).get(NAIVE)
    known = {m[0] for m in KEY_METRICS}
    extra = [(name, name, "", 1.0, t.op in (">=", ">")) for name, t in targets.items() if name not in known]
    rows = []
    speed = {r["flags"]: metric(r["metrics"], "tokens_per_s") or 0.0 for r in record["results"]}
    for name, label, unit, scale, higher in (*KEY_METRICS, *extra):
        values = [(metric(r["metrics"], name), r["flags"]) for r in record["results"]]
        values = [(v, f) for v, f in values if v is not None]
        target = targets.get(name)
        sign = 1.0 if higher else -1.0
        # best value (or gap to target); among equals the faster flag set
        pick = max(values, key=lambda vf: (target.gap(vf[0]) if target else sign * vf[0], speed[vf[1]]),
                   default=None)
        row = KeyMetric(name, label, unit, scale,
                        metric(naive["metrics"], name) * scale if naive and metric(naive["metrics"], name)
                        is not None else None,
                        pick[0] * scale if pick else None, pick[1] if pick else None)
        if target is not None and pick:
            row.target_op, row.target_value = target.op, target.value * scale
            row.gap = target.gap(pick[0]) * scale
            row.met = target.met(pick[0])
        rows.append(row)
    return rows


@dataclass
class FlagRow:
    flags: str
    tokens_per_s: float | None
    tokens_per_s_iqr: float | None
    ms_per_token: float | None
    ms_per_token_p95: float | None
    ttft_ms: float | None
    alloc_mb_per_token: float | None
    alloc_calls_per_session: float | None
    gc_per_100_tokens: float | None
    speedup: float | None
    p_value: float | None
    significant: bool
    alloc_reduction: float | None
    allocates_nothing: bool
    tokens_match: bool
    kv_hit_rate: float | None


def flag_rows(record: dict) -> list[FlagRow]:
    rows = []
    for r in record["results"]:
        m, v = r["metrics"], r.get("vs_naive") or {}
        tps = m.get("tokens_per_s") or {}
        ab = metric(m, "alloc_bytes_per_token")
        rows.append(FlagRow(
            r["flags"], tps.get("median"), tps.get("iqr"), metric(m, "ms_per_token"),
            (m.get("ms_per_token") or {}).get("p95"), metric(m, "ttft_ms"),
            ab / MB if ab is not None else None, metric(m, "alloc_calls_per_session"),
            metric(m, "gc_per_100_tokens"), v.get("speedup"), v.get("speedup_p_value"),
            bool(v.get("speedup_significant")), v.get("alloc_reduction"),
            canonical(r["flags"]) != NAIVE and v.get("alloc_reduction") is None and ab == 0,
            bool(v.get("tokens_match", True)), metric(m, "kv_hit_rate")))
    return rows


# ---- hot paths and allocation tree ---------------------------------------------------
@dataclass
class HotRow:
    stage: str
    share: float
    calls: int
    total_ms: float
    mean_us: float
    min_us: float
    max_us: float
    alloc_mb: float


@dataclass
class HotPaths:
    flags: str
    label: str
    steps: int
    rows: list[HotRow]


def hot_paths(record: dict) -> list[HotPaths]:
    flags = result_by_flags(record)
    n_new = record["workload"].get("new_tokens", 2)
    picks = [(flags.get(NAIVE), "naive")]
    best = best_result(record)
    if canonical(best["flags"]) != NAIVE:
        picks.append((best, "fastest flag set"))
    out = []
    for r, label in picks:
        if r is None or not r.get("stages"):
            continue
        rows = [HotRow(stage, a["share"], a["calls"], a["total_ms"], a["mean_us"], a["min_us"], a["max_us"],
                       a["alloc_bytes"] / MB) for stage, a in stage_totals(r).items()]
        out.append(HotPaths(r["flags"], label, decode_steps(r, n_new), rows))
    return out


@dataclass
class AllocNode:
    label: str
    bytes: float
    calls: float
    children: list["AllocNode"] = field(default_factory=list)


def alloc_tree(record: dict) -> list[AllocNode]:
    """flag set -> stage -> layer; bytes and calls per session (prefill + decode)."""
    roots = []
    for r in record["results"]:
        by_stage: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for s in r.get("stages", []):
            cell = by_stage[s["stage"]][s["layer"]]
            cell[0] += s["alloc_bytes"]
            cell[1] += s["alloc_calls"]
        stages = []
        for stage, layers in by_stage.items():
            kids = [AllocNode("model-level" if layer < 0 else f"layer {layer}", b, c)
                    for layer, (b, c) in sorted(layers.items()) if b or c]
            total_b, total_c = sum(k.bytes for k in kids), sum(k.calls for k in kids)
            if len(kids) == 1 and kids[0].label == "model-level":
                kids = []  # a model-level stage has no per-layer breakdown
            if total_b or total_c:
                stages.append(AllocNode(stage, total_b, total_c, sorted(kids, key=lambda k: -k.bytes)))
        stages.sort(key=lambda n: -n.bytes)
        roots.append(AllocNode(r["flags"], sum(n.bytes for n in stages), sum(n.calls for n in stages), stages))
    return roots


# ---- kernels and roofline ------------------------------------------------------------
BUSY_LOAD = 0.5  # 1-minute load average above which other processes shared the cores


@dataclass
class KernelSection:
    run_id: str
    origin: str
    created: str
    limits: dict
    rows: list[dict]
    same_machine: bool
    quick: bool

    @property
    def busy_note(self) -> str | None:
        load = max(self.limits.get("loadavg_1m_start") or 0.0, self.limits.get("loadavg_1m_end") or 0.0)
        if load <= BUSY_LOAD:
            return None
        busy = (f"The machine was busy while these kernels ran (1-minute load average up to {load:.2f} on "
                f"{self.limits.get('cores', '?')} cores)")
        if str(self.limits.get("threads")) == "1":
            return (busy + "; BLAS ran on one thread (OPENBLAS_NUM_THREADS=1), so the sgemm peak is one core's "
                    "and matmuls did not wait for the busy core.")
        return (busy + ": multi-threaded BLAS calls wait for the busy core, so matmul times (and the sgemm "
                "peak) can be inflated. Re-run `smbench kernels` on a quiet machine.")


def kernel_section(kernels: dict | None, origin: str, run: dict) -> KernelSection | None:
    if kernels is None:
        return None
    km, rm = kernels.get("machine") or {}, run.get("machine") or {}
    same = (km.get("cpu"), km.get("hostname")) == (rm.get("cpu"), rm.get("hostname"))
    return KernelSection(kernels["run_id"], origin, kernels.get("created", ""), kernels.get("limits") or {},
                         kernels.get("kernels") or [], same, bool((kernels.get("workload") or {}).get("quick")))


@dataclass
class RooflineRow:
    flags: str
    weight_mb: float
    floor_ms: float
    ms_per_token: float | None
    ratio: float | None   # measured / floor


@dataclass
class Roofline:
    bandwidth_gb_s: float
    method: str
    rows: list[RooflineRow]
    cache_note: str


def weight_bytes_read(record: dict, result: dict) -> tuple[float, str]:
    """Bytes of weights one decode step reads, and how that was worked out."""
    model_bytes = (metric(result["metrics"], "model_mb") or 0.0) * MB
    try:
        from engine.config import PRESETS

        cfg = PRESETS.get(record["workload"].get("model"))
    except ImportError:  # pragma: no cover - the engine ships with smbench
        cfg = None
    if cfg is None:
        return model_bytes, "all weights (model_mb): a slight overestimate, position embeddings included"
    unread = (cfg.n_ctx - 1) * cfg.n_embd * 4  # one position-embedding row is read per step
    return model_bytes - unread, ("model_mb minus the position-embedding rows a step does not read "
                                  "(every block weight, the tied LM head and one position row)")


def roofline(record: dict, ks: KernelSection | None) -> Roofline | None:
    if ks is None or not ks.limits.get("bandwidth_gb_s"):
        return None
    bw = ks.limits["bandwidth_gb_s"]
    rows, method = [], ""
    for r in record["results"]:
        nbytes, method = weight_bytes_read(record, r)
        floor_ms = nbytes / (bw * 1e9) * 1e3
        ms = metric(r["metrics"], "ms_per_token")
        rows.append(RooflineRow(r["flags"], nbytes / MB, floor_ms, ms, ms / floor_ms if ms and floor_ms else None))
    caches = ks.limits.get("caches") or {}
    weight_mb = max((r.weight_mb for r in rows), default=0.0)
    fits = [(lvl, size) for lvl, size in sorted(caches.items(), key=lambda kv: kv[1]) if weight_mb * MB <= size]
    if fits:
        lvl, size = fits[0]
        note = (f"The weights ({weight_mb:.2f} MB) fit in {lvl} ({size / MB:.0f} MB), so after the first step "
                "they are read from cache, not DRAM: a flag set can run below this floor.")
    else:
        note = f"The weights ({weight_mb:.2f} MB) exceed every cache level, so DRAM bandwidth bounds each step."
    return Roofline(bw, method, rows, note)


# ---- before / after and ablation -------------------------------------------------------
@dataclass
class BeforeAfter:
    label: str
    flags: str
    tokens_per_s: float | None
    speedup: float | None
    significant: bool
    alloc_mb_per_token: float | None
    ms_per_token: float | None


@dataclass
class Marginal:
    flag: str
    help: str
    geomean: float
    min: float
    max: float
    leave_one_out: float | None   # all flags vs all but this one
    pairs: int


@dataclass
class Ablation:
    run_id: str
    universe: list[str]
    naive: BeforeAfter | None
    singles: list[BeforeAfter]
    combos: list[BeforeAfter]
    marginals: list[Marginal]
    missing: list[str]
    speedups: list[tuple[str, float, float, float]]  # flags, median ratio, low, high (min/max ratios)


def _ba(label: str, r: dict) -> BeforeAfter:
    m, v = r["metrics"], r.get("vs_naive") or {}
    ab = metric(m, "alloc_bytes_per_token")
    return BeforeAfter(label, r["flags"], metric(m, "tokens_per_s"), v.get("speedup"),
                       bool(v.get("speedup_significant")), ab / MB if ab is not None else None,
                       metric(m, "ms_per_token"))


def flag_universe(records: list[dict]) -> list[str]:
    names = list(FLAG_HELP)
    for rec in records:
        for r in rec["results"]:
            for n in canonical(r["flags"]).split(","):
                if n and n != NAIVE and n not in names:
                    names.append(n)
    return names


def all_sets(universe: list[str]) -> list[str]:
    sets = []
    for k in range(len(universe) + 1):
        for combo in itertools.combinations(universe, k):
            sets.append(",".join(combo) or NAIVE)
    return sets


def _key(flags: str, universe: list[str]) -> str:
    names = set(canonical(flags).split(","))
    return ",".join(n for n in universe if n in names) or NAIVE


def ablation(record: dict, universe: list[str]) -> Ablation:
    present = {_key(r["flags"], universe): r for r in record["results"]}
    naive = present.get(NAIVE)
    singles = [_ba(f"{f} alone", present[f]) for f in universe if f in present]
    combos, combo_keys = [], set()
    exact = ",".join(f for f in universe if f in ("pool", "kv", "fused"))
    for label, key in (("exact flags together", exact), ("all flags", ",".join(universe))):
        if key in present and "," in key and key not in combo_keys:
            combos.append(_ba(label, present[key]))
            combo_keys.add(key)
    best = best_result(record)
    best_key = _key(best["flags"], universe)
    if best_key not in combo_keys and best_key not in universe and best_key != NAIVE:
        combos.append(_ba("fastest set in run", best))
    missing = [s for s in all_sets(universe) if s not in present]
    marginals = []
    if not missing:
        tps = {k: metric(r["metrics"], "tokens_per_s") for k, r in present.items()}
        for f in universe:
            others = [x for x in universe if x != f]
            ratios = []
            for k in range(len(others) + 1):
                for combo in itertools.combinations(others, k):
                    without = _key(",".join(combo) or NAIVE, universe)
                    with_ = _key(",".join((*combo, f)), universe)
                    if tps.get(without) and tps.get(with_):
                        ratios.append(tps[with_] / tps[without])
            if not ratios:
                continue
            all_key, loo_key = ",".join(universe), _key(",".join(others) or NAIVE, universe)
            loo = tps[all_key] / tps[loo_key] if tps.get(all_key) and tps.get(loo_key) else None
            geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            marginals.append(Marginal(f, FLAG_HELP.get(f, ""), geo, min(ratios), max(ratios), loo, len(ratios)))
    speedups = []
    if naive is not None:
        base = (naive["metrics"].get("tokens_per_s") or {})
        for r in record["results"]:
            t = r["metrics"].get("tokens_per_s") or {}
            if base.get("median") and t.get("median"):
                speedups.append((r["flags"], t["median"] / base["median"], t["min"] / base["max"],
                                 t["max"] / base["min"]))
    speedups.sort(key=lambda x: x[1])
    return Ablation(record["run_id"], universe, _ba("naive", naive) if naive else None, singles, combos,
                    marginals, missing, speedups)


# ---- profiles, artifacts, conditions ---------------------------------------------------
@dataclass
class Artifact:
    name: str
    href: str      # relative to the report, or absolute when not reachable relatively
    bytes: int


@dataclass
class ProfileInfo:
    run_id: str
    title: str
    facts: list[tuple[str, str]]
    tables: list[tuple[str, list[str], list[list[str]]]]  # title, columns, rows
    artifacts: list[Artifact]


def _scalar(v) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _cell(v) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return str(v)


def _table_of(title: str, items: list, limit: int = 8):
    dicts = [d for d in items if isinstance(d, dict)][:limit]
    if not dicts:
        return None
    cols = [k for k in dicts[0] if all(_scalar(d.get(k)) for d in dicts)][:8]
    if not cols:
        return None
    return (title, cols, [[_cell(d.get(c)) for c in cols] for d in dicts])


def _facts_and_tables(obj: dict) -> tuple[list, list]:
    facts = [(k, _cell(v)) for k, v in obj.items() if _scalar(v)]
    tables = [t for k, v in obj.items() if isinstance(v, list) for t in [_table_of(k, v)] if t]
    return facts, tables


def profile_infos(record: dict, files: list[Artifact]) -> list[ProfileInfo]:
    """One block per profiler summary of a kind "profile" record (smbench profile), defensively:
    scalar fields become facts, lists of rows become tables, artifacts link to the files."""
    flags = ", ".join(record.get("flag_sets") or []) or "?"
    run_id = record.get("run_id", "?")
    out = []
    for summary in record.get("profiles") or []:
        if not isinstance(summary, dict):
            continue
        data = summary.get("data") if isinstance(summary.get("data"), dict) else {}
        facts, tables = _facts_and_tables(data)
        named = summary.get("artifacts") if isinstance(summary.get("artifacts"), dict) else {}
        by_file = {v: k for k, v in named.items()}
        arts = [Artifact(f"{by_file[a.name]}: {a.name}", a.href, a.bytes) for a in files if a.name in by_file]
        title = f"{summary.get('profiler', '?')} {summary.get('version', '')} — flags {flags} — record {run_id}"
        out.append(ProfileInfo(run_id, title, facts[:16], tables[:6], arts))
    for err in record.get("profile_errors") or []:
        if isinstance(err, dict):
            out.append(ProfileInfo(run_id, f"{err.get('profiler', '?')} failed — record {run_id}",
                                   [("error", _cell(err.get("error")))], [], []))
    if not out:  # an unknown layout: show what is there
        facts, tables = _facts_and_tables(record)
        out.append(ProfileInfo(run_id, f"record {run_id}", [f for f in facts if f[0] not in ("schema",)][:16],
                               tables[:6], files))
    return out


@dataclass
class Conditions:
    rows: list[tuple[str, str]]
    spread: list[tuple[str, str, str, str]]  # flags, median tok/s, IQR %, min–max


def conditions(record: dict, others: list[dict], ks: KernelSection | None) -> Conditions:
    m, g, wl = record.get("machine") or {}, record.get("git") or {}, record["workload"]
    commit = (g.get("commit") or "unknown")[:12] + (" (uncommitted changes)" if g.get("dirty") else "")
    rows = [
        ("run", f"{record['run_id']} (created {record.get('created', '?')}, {record.get('elapsed_s', 0):.0f} s)"),
        ("workload", f"{wl.get('name')} — {wl.get('description', '')}"),
        ("model", str(wl.get("model"))),
        ("tokens", f"prompt {len(record.get('prompt_ids') or [])}, new {wl.get('new_tokens')}"),
        ("repeats", f"{wl.get('repeats')} timed + {wl.get('repeats')} instrumented per flag set, "
                    f"{wl.get('warmup')} warmup"),
        ("machine", f"{m.get('cpu')} · {m.get('cores')} cores · {m.get('platform')}"),
        ("versions", f"Python {m.get('python')} · NumPy {m.get('numpy')} · SciPy {m.get('scipy')} · "
                     f"BLAS {m.get('blas')}"),
        ("commit", commit),
        ("timing", record.get("timing_method", "")),
        ("allocations", record.get("alloc_method", "")),
    ]
    for o in others:
        rows.append(("also in this report", f"{o.get('kind', 'run')} {o['run_id']} ({o['workload'].get('name')}, "
                                            f"{len(o['results'])} flag sets)"))
    if ks is not None:
        lim = ks.limits
        rows.append(("kernels record", f"{ks.run_id} ({ks.origin}; created {ks.created})"
                                       + ("" if ks.same_machine else " — measured on a DIFFERENT machine")))
        rows.append(("BLAS threads (kernels run)", str(lim.get("threads", "default"))))
    spread = []
    for r in record["results"]:
        t = r["metrics"].get("tokens_per_s") or {}
        if t.get("median"):
            spread.append((r["flags"], f"{t['median']:,.1f}", f"{100 * (t.get('iqr') or 0) / t['median']:.1f}%",
                           f"{t['min']:,.1f}–{t['max']:,.1f}"))
    return Conditions(rows, spread)


# ---- the whole report ------------------------------------------------------------------
@dataclass
class ChartData:
    curves: dict[str, list[list[float]]]
    stage_ms: dict[str, dict[str, float]]        # flags -> stage -> ms per decode step
    stage_alloc: dict[str, dict[str, float]]     # flags -> stage -> bytes per decode step


@dataclass
class ReportData:
    title: str
    run: dict
    summary: Summary
    key_metrics: list[KeyMetric]
    flag_rows: list[FlagRow]
    hot_paths: list[HotPaths]
    alloc_tree: list[AllocNode]
    kernels: KernelSection | None
    roofline: Roofline | None
    ablation: Ablation
    profiles: list[ProfileInfo]
    run_artifacts: list[Artifact]
    conditions: Conditions
    charts: ChartData
    commands: dict[str, str]


def chart_data(record: dict) -> ChartData:
    n_new = record["workload"].get("new_tokens", 2)
    curves, ms, alloc = {}, {}, {}
    for r in record["results"]:
        curves[r["flags"]] = r["metrics"].get("ms_per_token_curve") or []
        steps = decode_steps(r, n_new)
        totals = stage_totals(r)
        ms[r["flags"]] = {s: a["total_ms"] / steps for s, a in totals.items()}
        alloc[r["flags"]] = {s: a["alloc_bytes"] / steps for s, a in totals.items()}
    return ChartData(curves, ms, alloc)


def build(run: dict, others: list[dict], kernels: dict | None, kernels_origin: str,
          profiles: list[ProfileInfo], run_artifacts: list[Artifact]) -> ReportData:
    runs = [run, *[o for o in others if o.get("kind", "run") == "run"]]
    universe = flag_universe(runs)
    complete = [r for r in runs if not ablation(r, universe).missing]
    abl_record = complete[0] if complete else max(runs, key=lambda r: len(r["results"]))
    ks = kernel_section(kernels, kernels_origin, run)
    wl = run["workload"]
    return ReportData(
        title=f"smbench report — workload {wl.get('name')} — run {run['run_id']}",
        run=run,
        summary=executive_summary(run),
        key_metrics=key_metrics(run),
        flag_rows=flag_rows(run),
        hot_paths=hot_paths(run),
        alloc_tree=alloc_tree(run),
        kernels=ks,
        roofline=roofline(run, ks),
        ablation=ablation(abl_record, universe),
        profiles=profiles,
        run_artifacts=run_artifacts,
        conditions=conditions(run, others, ks),
        charts=chart_data(run),
        commands={"kernels": "smbench kernels",
                  "ablation": f"smbench run -w {shlex.quote(str(wl.get('name')))} --ablation",
                  "profile": f"smbench profile --with all -w {shlex.quote(str(wl.get('name')))}"},
    )
