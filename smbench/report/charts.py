"""Charts as inline SVG strings (matplotlib, Agg backend, text drawn as paths).

Text is drawn as glyph paths, so no user string reaches the SVG as markup; labels
are still escaped for mathtext ('$'). Each SVG's ids get a per-chart prefix so
several charts can share one HTML document without id clashes. Output is
deterministic (fixed hash salt, no date) so a regenerated report diffs cleanly.
"""
from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from .data import Ablation, ChartData  # noqa: E402

RC = {"svg.fonttype": "path", "svg.hashsalt": "smbench", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}
# tab20's pairs split apart (dark shades first) so neighbouring stages differ clearly.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39"]
_ID = re.compile(r'id="([^"]+)"')


def label(text: str) -> str:
    """A user string safe for matplotlib text (no mathtext)."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def to_svg(fig, prefix: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]                      # drop the XML prolog and doctype
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)   # comments repeat label text
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    ids = set(_ID.findall(svg))
    for old in sorted(ids, key=len, reverse=True):
        new = f"{prefix}-{old}"
        svg = svg.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})") \
                 .replace(f'href="#{old}"', f'href="#{new}"')
    return svg.strip()


def _plain_log(axis, suffix: str = "") -> None:
    """Log-scale tick labels as plain numbers (0.2, 1, 5) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _colors(names) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def ms_per_token_chart(data: ChartData) -> str | None:
    curves = {k: v for k, v in data.curves.items() if v}
    if not curves:
        return None
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        colors = _colors(curves)
        for flags, curve in curves.items():
            emphasis = flags in ("none", "kv")
            ax.plot([p for p, _ in curve], [ms for _, ms in curve], label=label(flags), color=colors[flags],
                    linewidth=2.2 if emphasis else 1.0, alpha=1.0 if emphasis else 0.7)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.set_xlabel("position (tokens in context)")
        ax.set_ylabel("ms per decode step (median, log)")
        ax.set_title("ms/token vs position: naive recomputes the window, kv computes one position")
        ax.legend(fontsize=7, ncol=2, frameon=False)
        return to_svg(fig, "c1")


def _stacked(ax, per_set: dict[str, dict[str, float]], colors: dict[str, str], scale: float, xlabel: str):
    sets = list(per_set)
    for y, flags in enumerate(sets):
        left = 0.0
        for stage, value in per_set[flags].items():
            width = value * scale
            ax.barh(y, width, left=left, color=colors[stage], edgecolor="white", linewidth=0.4)
            left += width
    ax.set_yticks(range(len(sets)), [label(s) for s in sets])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)


def stage_chart(data: ChartData) -> str | None:
    if not any(data.stage_ms.values()):
        return None
    stages = list(dict.fromkeys(s for d in data.stage_ms.values() for s in d))
    colors = _colors(stages)
    with plt.rc_context(RC):
        height = max(2.6, 0.32 * len(data.stage_ms) + 1.6)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
        _stacked(a1, data.stage_ms, colors, 1.0, "ms per decode step")
        _stacked(a2, data.stage_alloc, colors, 1 / 1024, "KB allocated per decode step")
        a1.set_title("time by stage")
        a2.set_title("allocation by stage")
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[s]) for s in stages]
        fig.legend(handles, [label(s) for s in stages], loc="lower center", ncol=min(len(stages), 8),
                   fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.035 * (len(stages) // 8)))
        fig.tight_layout(rect=(0, 0.08 + 0.03 * (len(stages) // 8), 1, 1))
        return to_svg(fig, "c2")


def _log_bars(ax, names, centre, low, high, color: str, capsize: int, xlabel: str, title: str) -> None:
    """Horizontal bars on a log axis with low-high whiskers around each centre, 1x marked."""
    lo = [max(c - l, 0) for c, l in zip(centre, low)]
    hi = [max(h - c, 0) for c, h in zip(centre, high)]
    ax.barh(range(len(names)), centre, xerr=[lo, hi], color=color, ecolor="#555", capsize=capsize)
    ax.set_yticks(range(len(names)), names)
    ax.set_xscale("log")
    _plain_log(ax.xaxis, "x")
    ax.axvline(1.0, color="#e15759", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def ablation_chart(abl: Ablation) -> str | None:
    if not abl.speedups:
        return None
    with plt.rc_context(RC):
        panels = 2 if abl.marginals else 1
        fig, axes = plt.subplots(1, panels, figsize=(10 if panels == 2 else 7.5, max(2.6, 0.28 * len(abl.speedups)
                                                                                      + 1.2)), squeeze=False)
        _log_bars(axes[0][0], [label(f) for f, *_ in abl.speedups], [m for _, m, _, _ in abl.speedups],
                  [low for _, _, low, _ in abl.speedups], [high for _, _, _, high in abl.speedups],
                  "#4e79a7", 2, "tokens/s vs naive (median; bars: min–max over repeats), log",
                  "speedup by flag set")
        if abl.marginals:
            _log_bars(axes[0][1], [label(m.flag) for m in abl.marginals], [m.geomean for m in abl.marginals],
                      [m.min for m in abl.marginals], [m.max for m in abl.marginals], "#59a14f", 3,
                      "marginal gain: geometric mean over the other flags (bars: min–max), log",
                      "each flag's marginal gain")
        fig.tight_layout()
        return to_svg(fig, "c3")


def all_charts(data: ChartData, abl: Ablation) -> dict[str, str | None]:
    return {"ms_per_token": ms_per_token_chart(data), "stages": stage_chart(data),
            "ablation": ablation_chart(abl)}
