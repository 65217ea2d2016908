"""`smbench kernels`: micro-benchmarks of the engine's ops against this machine's limits.

Every kernel is the engine's own code: `engine.ops` with a `Workspace` (unpooled =
the naive path's fresh array per op, pooled = the `pool` flag's reused buffers) and
the numba kernels of `engine.fused`. ReLU and the dot product have no engine op;
they are written in the same `ws.take` style so naive and pooled differ only in
where the output goes.

The limits are measured in the same run, before the kernels:
- memory bandwidth: `np.copyto` over a buffer several times larger than the last
  cache level (STREAM "copy": bytes read + bytes written per second);
- sgemm peak: a large float32 `np.matmul` (2 n^3 flops per call).
Both are the best sample, as peaks should be; kernels report the median.

Each kernel has a roofline time: max(bytes / bandwidth, flops / peak). Its
fraction of the limit is that time over the measured median; the rating is read
from the fraction. A fraction above 1 means the data stayed in cache, so the DRAM
roof did not apply (the table says so).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine import fused, ops
from engine.config import ModelConfig, preset
from engine.workspace import Workspace

from .record import make_record
from .stats import summarize

KIND = "kernels"
VARIANTS = ("none", "pool", "fused", "blas")  # record "flags" of each result group
VARIANT_HELP = {"none": "naive: a fresh array per op (Workspace unpooled)",
                "pool": "pooled: out= into reused buffers (Workspace pooled)",
                "fused": "engine.fused numba kernel (one pass)",
                "blas": "one BLAS call"}
F32 = np.float32


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; `quick` shrinks everything except the bandwidth buffer."""
    elementwise: int = 1 << 23      # 32 MB per float32 array: beyond a 32 MB L3 with in + out
    softmax_rows: int = 8192        # x 1024 columns
    ln_rows: int = 65536            # x n_embd
    dot: int = 10_000_000
    square: int = 512
    stream: int = 1 << 25           # 128 MB per buffer
    sgemm: int = 2048
    repeats: int = 7
    sample_s: float = 0.03          # minimum time per sample (calls are looped to reach it)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(elementwise=1 << 16, softmax_rows=64, ln_rows=512, dot=1 << 16, square=128,
                   stream=1 << 24, sgemm=512, repeats=3, sample_s=0.002)


@dataclass
class Kernel:
    """One measured form of one op. `fn` is called repeatedly; `reset` runs before each sample."""
    name: str
    variant: str
    shape: str
    bytes: float          # minimal traffic: inputs read once + outputs written once
    flops: float
    fn: Callable[[], object]
    reset: Callable[[], object] | None = None
    note: str = ""


# ---- timing ---------------------------------------------------------------------
def time_calls(fn: Callable[[], object], repeats: int, sample_s: float,
               reset: Callable[[], object] | None = None) -> list[float]:
    """Seconds per call: `repeats` samples, each looping `fn` long enough to time reliably."""
    if reset:
        reset()
    fn()  # warm: first-touch pages, numba dispatch, BLAS threads
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, min(10_000, int(sample_s / once)))
    out = []
    for _ in range(repeats):
        if reset:
            reset()
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        out.append((time.perf_counter() - t0) / loops)
    return out


# ---- machine limits -------------------------------------------------------------
def cache_sizes() -> dict[str, int]:
    """Cache sizes in bytes by level name (L1d, L2, L3), from sysfs; {} if unknown."""
    out: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        mult = {"K": 1024, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        value = int(size.rstrip("KMG")) * mult
        out[f"L{level}{'d' if kind == 'Data' else ''}"] = value
    return out


def _stream_copy_gb_s(n: int, repeats: int) -> list[float]:
    """Copy bandwidth samples; the buffers are freed on return, before the sgemm runs."""
    src, dst = np.ones(n, F32), np.zeros(n, F32)
    return [2 * n * 4 / t / 1e9 for t in time_calls(lambda: np.copyto(dst, src), repeats, 0.0)]


def _sgemm_gflops(m: int, repeats: int) -> list[float]:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, m), F32), rng.standard_normal((m, m), F32)
    c = np.empty((m, m), F32)
    return [2 * m ** 3 / t / 1e9 for t in time_calls(lambda: np.matmul(a, b, out=c), repeats, 0.0)]


def measure_limits(sizes: Sizes) -> dict:
    load_start = os.getloadavg()[0]
    n, m = sizes.stream, sizes.sgemm
    bw_gbs = _stream_copy_gb_s(n, max(3, sizes.repeats - 2))
    gflops = _sgemm_gflops(m, max(3, sizes.repeats - 2))
    caches = cache_sizes()
    return {
        "bandwidth_gb_s": max(bw_gbs),
        "bandwidth_samples_gb_s": bw_gbs,
        "bandwidth_method": f"np.copyto of {n * 4 / (1 << 20):.0f} MB float32 buffers; "
                            "bytes read + written per second; best sample",
        "stream_buffer_bytes": n * 4,
        "sgemm_gflops": max(gflops),
        "sgemm_samples_gflops": gflops,
        "sgemm_method": f"np.matmul float32 {m}x{m}x{m}; 2n^3 flops per call; best sample",
        "sgemm_n": m,
        "caches": caches,
        "threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default",
        # Other processes on the machine: a busy core makes multi-threaded BLAS calls wait for it.
        "loadavg_1m_start": load_start,
        "cores": os.cpu_count(),
    }


# ---- the kernels ----------------------------------------------------------------
def _ws(variant: str) -> Workspace:
    return Workspace(pooled=variant != "none")


def _rng_array(shape, scale=1.0, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F32)


def elementwise_kernels(s: Sizes) -> list[Kernel]:
    n = s.elementwise
    x, y = _rng_array(n, 2.0), _rng_array(n, 2.0, seed=1)
    shape, b2, b3 = f"[{n:,}]", 2 * 4 * n, 3 * 4 * n
    out = []
    for v in ("none", "pool"):
        ws = _ws(v)
        out.append(Kernel("add", v, shape, b3, n, lambda ws=ws: np.add(x, y, out=ws.take("add", x.shape))))
        out.append(Kernel("relu", v, shape, b2, n,
                          lambda ws=ws: np.maximum(x, F32(0), out=ws.take("relu", x.shape))))
    gelus = (("gelu_exact", ops.gelu_exact, fused.GELU_EXACT), ("gelu_tanh", ops.gelu_tanh, fused.GELU_TANH),
             ("gelu_fast", ops.gelu_fast, fused.GELU_FAST))
    x2 = x.reshape(-1, 1024) if n % 1024 == 0 else x.reshape(1, -1)
    zero_bias = np.zeros(x2.shape[1], F32)
    for name, op, mode in gelus:
        for v in ("none", "pool"):
            ws = _ws(v)
            out.append(Kernel(name, v, shape, b2, 0, lambda ws=ws, op=op: op(x, ws, "gelu")))
        buf = np.empty_like(x2)
        out.append(Kernel(name, "fused", shape, b2, 0,
                          lambda buf=buf, mode=mode: fused.bias_gelu(buf, zero_bias, mode),
                          reset=lambda buf=buf: np.copyto(buf, x2),
                          note="in place (bias_gelu, zero bias); input restored before each sample"))
    return out


def softmax_kernels(s: Sizes) -> list[Kernel]:
    rows, cols = s.softmax_rows, 1024
    x = _rng_array((4, rows // 4, cols), 3.0)
    return [Kernel("softmax", v, f"[4, {rows // 4}, {cols}]", 2 * 4 * x.size, 0,
                   lambda ws=_ws(v): ops.softmax_lastaxis(x, ws, "probs")) for v in ("none", "pool")]


def layernorm_kernels(s: Sizes, cfg: ModelConfig) -> list[Kernel]:
    c = cfg.n_embd
    x = _rng_array((s.ln_rows, c), 1.0)
    g, b = _rng_array(c, 0.1, 2) + 1, _rng_array(c, 0.1, 3)
    eps, shape, nbytes = float(cfg.layer_norm_epsilon), f"[{s.ln_rows:,}, {c}]", 2 * 4 * x.size
    out = [Kernel("layernorm", v, shape, nbytes, 0,
                  lambda ws=_ws(v): ops.layer_norm(x, g, b, eps, ws, "ln")) for v in ("none", "pool")]
    y = np.empty_like(x)
    out.append(Kernel("layernorm", "fused", shape, nbytes, 0, lambda: fused.layer_norm(x, g, b, eps, y)))
    return out


def attention_kernels(cfg: ModelConfig) -> list[Kernel]:
    """One query attending over a full context (a decode step at the end of the window)."""
    H, hd, T = cfg.n_head, cfg.head_dim, cfg.n_ctx
    q = _rng_array((H, 1, hd), 0.3)
    kt, v = _rng_array((H, hd, T), 1.0, 1), _rng_array((H, T, hd), 1.0, 2)
    scale = F32(1.0)
    nbytes, flops = 4 * (2 * H * T * hd + 2 * H * hd), 4 * H * T * hd
    shape = f"H={H}, keys={T}, hd={hd}"

    def unfused(ws):
        s = np.matmul(q, kt, out=ws.take("scores", (H, 1, T)))
        s = np.multiply(s, scale, out=ws.take("scores", s.shape))
        p = ops.softmax_lastaxis(s, ws, "probs")
        return np.matmul(p, v, out=ws.take("ctx_h", (H, 1, hd)))

    out = [Kernel("attention.decode", var, shape, nbytes, flops, lambda ws=_ws(var): unfused(ws))
           for var in ("none", "pool")]
    scores, ctx = np.empty(T, F32), np.empty((1, H * hd), F32)
    out.append(Kernel("attention.decode", "fused", shape, nbytes, flops,
                      lambda: fused.attend(q, kt, v, T - 1, scores, ctx)))
    return out


def _linear_kernel(name, m, k, n, variant, seed=0) -> Kernel:
    x, w, b = _rng_array((m, k), 1.0, seed), _rng_array((k, n), 0.05, seed + 1), _rng_array(n, 0.1, seed + 2)
    ws = _ws(variant)
    return Kernel(name, variant, f"[{m}x{k}]·[{k}x{n}]", 4 * (m * k + k * n + 2 * m * n), 2 * m * k * n,
                  lambda: ops.linear(x, w, b, ws, name))


def matmul_kernels(s: Sizes, cfg: ModelConfig) -> list[Kernel]:
    c, T, V = cfg.n_embd, cfg.n_ctx // 2, cfg.vocab_size
    out = []
    # attn.qkv at decode: the naive model runs three linears on column slices of w_qkv,
    # the fused one a single matmul plus split_heads (bias, scale, head split).
    h = _rng_array((1, c), 1.0)
    w, b = _rng_array((c, 3 * c), 0.05, 1), _rng_array(3 * c, 0.1, 2)
    qkv_bytes, qkv_flops, qkv_shape = 4 * (c + 3 * c * c + 2 * 3 * c), 2 * c * 3 * c, f"[1x{c}]·[{c}x{3 * c}]"

    def qkv_unfused(ws):
        for j, nm in enumerate(("q", "k", "v")):
            ops.linear(h, w[:, j * c:(j + 1) * c], b[j * c:(j + 1) * c], ws, nm)

    for var in ("none", "pool"):
        out.append(Kernel("matmul.attn_qkv", var, qkv_shape, qkv_bytes, qkv_flops,
                          lambda ws=_ws(var): qkv_unfused(ws), note="three linears on column slices"))
    H, hd = cfg.n_head, cfg.head_dim
    qkv, q = np.empty((1, 3 * c), F32), np.empty((H, 1, hd), F32)
    kt, vv = np.zeros((H, hd, cfg.n_ctx), F32), np.zeros((H, cfg.n_ctx, hd), F32)

    def qkv_fused():
        np.matmul(h, w, out=qkv)
        fused.split_heads(qkv, b, F32(1.0), q, kt, vv, 0)

    out.append(Kernel("matmul.attn_qkv", "fused", qkv_shape, qkv_bytes, qkv_flops, qkv_fused,
                      note="one matmul + split_heads"))
    for var in ("none", "pool"):
        out.append(_linear_kernel("matmul.mlp_fc", T, c, 4 * c, var))
        out.append(_linear_kernel("matmul.lm_head", 1, c, V, var))
        out.append(_linear_kernel(f"matmul.{s.square}", s.square, s.square, s.square, var))
    return out


def dot_kernels(s: Sizes) -> list[Kernel]:
    n = s.dot
    a, b = _rng_array(n, 1.0), _rng_array(n, 1.0, 1)
    shape = f"[{n:,}]"

    def naive(ws):
        return np.sum(np.multiply(a, b, out=ws.take("prod", a.shape)))

    out = [Kernel("dot", v, shape, 2 * 4 * n, 2 * n, lambda ws=_ws(v): naive(ws), note="multiply then sum")
           for v in ("none", "pool")]
    out.append(Kernel("dot", "blas", shape, 2 * 4 * n, 2 * n, lambda: np.dot(a, b), note="np.dot (sdot)"))
    return out


def all_kernels(sizes: Sizes, cfg: ModelConfig) -> list[Kernel]:
    return [*elementwise_kernels(sizes), *softmax_kernels(sizes), *layernorm_kernels(sizes, cfg),
            *attention_kernels(cfg), *matmul_kernels(sizes, cfg), *dot_kernels(sizes)]


# ---- results --------------------------------------------------------------------
RATINGS = ((0.6, "at limit"), (0.3, "good"), (0.1, "fair"), (0.0, "poor"))


def rating(fraction: float, bound: str = "memory") -> str:
    """Band of the fraction of the roofline limit achieved."""
    if fraction > 1.0:
        # memory-bound and faster than DRAM allows: the data never left the cache;
        # compute-bound: at the measured peak (itself a best sample)
        return "in cache" if bound == "memory" else "at limit"
    return next(label for floor, label in RATINGS if fraction >= floor)


def kernel_row(k: Kernel, seconds: list[float], limits: dict) -> dict:
    t = summarize(seconds)
    med = t["median"]
    mem_s = k.bytes / (limits["bandwidth_gb_s"] * 1e9)
    flop_s = k.flops / (limits["sgemm_gflops"] * 1e9)
    bound = "compute" if flop_s > mem_s else "memory"
    fraction = max(mem_s, flop_s) / med
    return {
        "kernel": k.name, "variant": k.variant, "shape": k.shape, "note": k.note,
        "bytes": k.bytes, "flops": k.flops,
        "time_s": t,
        "time_us": med * 1e6, "min_us": t["min"] * 1e6, "max_us": t["max"] * 1e6,
        "spread_pct": 100 * t["iqr"] / med if med else 0.0,
        "gb_per_s": k.bytes / med / 1e9,
        "gflops": k.flops / med / 1e9 if k.flops else None,
        "bound": bound,
        "pct_of_bandwidth": 100 * (k.bytes / med / 1e9) / limits["bandwidth_gb_s"],
        "pct_of_sgemm": 100 * (k.flops / med / 1e9) / limits["sgemm_gflops"] if k.flops else None,
        "fraction_of_limit": fraction,
        "rating": rating(fraction, bound),
    }


def add_speedups(rows: list[dict]) -> None:
    naive = {(r["kernel"], r["shape"]): r["time_us"] for r in rows if r["variant"] == "none"}
    for r in rows:
        base = naive.get((r["kernel"], r["shape"]))
        r["speedup_vs_naive"] = base / r["time_us"] if base and r["time_us"] else None


def make_kernels_record(rows: list[dict], limits: dict, cfg_name: str, cfg: ModelConfig, quick: bool,
                        elapsed_s: float) -> dict:
    """A run record (schema smbench.run, kind "kernels"): one result group per variant."""
    groups = [{"flags": v, "variant": v, "description": VARIANT_HELP[v],
               "metrics": {"kernels": sum(1 for r in rows if r["variant"] == v)},
               "kernels": [r for r in rows if r["variant"] == v]}
              for v in VARIANTS if any(r["variant"] == v for r in rows)]
    workload = {"name": "kernels" + ("-quick" if quick else ""),
                "description": f"op micro-benchmarks; model shapes of '{cfg_name}'",
                "model": cfg_name, "model_config": cfg.to_dict(), "quick": quick, "targets": []}
    record = make_record(workload, [], [g["flags"] for g in groups], groups, elapsed_s, kind=KIND)
    record.update({"limits": limits, "kernels": rows,
                   "timing_method": "median of repeats; each repeat loops the call for a minimum time"})
    return record


def run_kernels(model: str = "seed", quick: bool = False, only: str | None = None,
                progress: Callable[[str], None] | None = None) -> dict:
    """Measure limits, then every kernel; returns a kernels record (not yet saved)."""
    progress = progress or (lambda label: None)
    t0 = time.perf_counter()
    sizes = Sizes.quick() if quick else Sizes()
    cfg = preset(model)
    fused.warm_up()
    progress("machine limits")
    limits = measure_limits(sizes)
    rows = []
    for k in all_kernels(sizes, cfg):
        if only and only not in k.name:
            continue
        progress(f"{k.name} ({k.variant})")
        rows.append(kernel_row(k, time_calls(k.fn, sizes.repeats, sizes.sample_s, k.reset), limits))
    limits["loadavg_1m_end"] = os.getloadavg()[0]
    add_speedups(rows)
    order = {name: i for i, name in enumerate(dict.fromkeys(r["kernel"] for r in rows))}
    rows.sort(key=lambda r: (order[r["kernel"]], VARIANTS.index(r["variant"])))
    return make_kernels_record(rows, limits, model, cfg, quick, time.perf_counter() - t0)


def count_kernels(model: str = "seed", quick: bool = False, only: str | None = None) -> int:
    sizes = Sizes.quick() if quick else Sizes()
    return sum(1 for k in all_kernels(sizes, preset(model)) if not only or only in k.name)


# ---- console --------------------------------------------------------------------
def fmt_time(us: float) -> str:
    return f"{us / 1000:,.2f} ms" if us >= 1000 else f"{us:,.1f} µs"


def kernels_table(record: dict):
    from rich.table import Table

    lim = record["limits"]
    table = Table(title=f"smbench kernels {record['run_id']} — limits: bandwidth {lim['bandwidth_gb_s']:.1f} GB/s "
                        f"(stream copy), sgemm {lim['sgemm_gflops']:.1f} GFLOPS — load average "
                        f"{lim.get('loadavg_1m_start', 0):.2f} at start", title_justify="left")
    for col, justify in (("kernel", "left"), ("shape", "left"), ("variant", "left"),
                         ("median", "right"), ("min–max", "right"), ("IQR\n%", "right"), ("GB/s", "right"),
                         ("GFLOPS", "right"), ("bound", "left"), ("% of\nlimit", "right"),
                         ("rating", "left"), ("vs\nnaive", "right")):
        table.add_column(col, justify=justify)
    colors = {"at limit": "green", "good": "green", "fair": "yellow", "poor": "red"}
    for r in record["kernels"]:
        color = colors.get(r["rating"], "cyan")
        table.add_row(r["kernel"], r["shape"], r["variant"],
                      fmt_time(r["time_us"]), f"{fmt_time(r['min_us'])}–{fmt_time(r['max_us'])}",
                      f"{r['spread_pct']:.1f}",
                      f"{r['gb_per_s']:.2f}", "-" if r["gflops"] is None else f"{r['gflops']:.2f}", r["bound"],
                      f"{100 * r['fraction_of_limit']:.1f}", f"[{color}]{r['rating']}[/]",
                      "-" if r["variant"] == "none" or r["speedup_vs_naive"] is None
                      else f"{r['speedup_vs_naive']:.2f}x")
    return table

