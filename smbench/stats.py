"""Summaries of repeated measurements and significance of differences between them."""
from __future__ import annotations

import numpy as np
from scipy import stats as sps

ALPHA = 0.05


def summarize(samples) -> dict:
    """Median and spread of a sample; the raw values are kept for later tests."""
    x = np.asarray(list(samples), dtype=np.float64)
    if x.size == 0:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None,
                "iqr": None, "mean": None, "stdev": None, "samples": []}
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return {"n": int(x.size), "median": float(med), "min": float(x.min()), "max": float(x.max()),
            "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1), "mean": float(x.mean()),
            "stdev": float(x.std(ddof=1)) if x.size > 1 else 0.0, "samples": [float(v) for v in x]}


def percentiles(samples, qs=(50, 95)) -> dict:
    x = np.asarray(list(samples), dtype=np.float64)
    if x.size == 0:
        return {}
    out = {"min": float(x.min()), "max": float(x.max())}
    for q, v in zip(qs, np.percentile(x, qs)):
        out["median" if q == 50 else f"p{q}"] = float(v)
    return out


def compare_samples(a, b) -> dict:
    """Ratio of medians b/a and a two-sided Mann-Whitney U test of a vs b."""
    a = np.asarray(list(a), dtype=np.float64)
    b = np.asarray(list(b), dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return {"ratio": None, "p_value": None, "significant": False, "test": "mann-whitney-u"}
    ma, mb = float(np.median(a)), float(np.median(b))
    ratio = mb / ma if ma else None
    if a.size < 2 or b.size < 2 or (np.ptp(np.concatenate([a, b])) == 0):
        p = 1.0 if ma == mb else 0.0 if a.size >= 2 and b.size >= 2 else None
    else:
        p = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return {"ratio": ratio, "p_value": p, "significant": p is not None and p < ALPHA,
            "test": "mann-whitney-u"}


def fit_slope(xs, ys) -> dict:
    """Least-squares line y = slope*x + intercept, with r^2: growth of cost with position."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0:
        return {"slope": None, "intercept": None, "r2": None}
    fit = sps.linregress(x, y)
    return {"slope": float(fit.slope), "intercept": float(fit.intercept), "r2": float(fit.rvalue ** 2)}
