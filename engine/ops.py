"""The model's math in NumPy, one function per op.

Each op writes its result into `ws.take(name, shape)`: a fresh array on the naive
path, a reused buffer with the `pool` flag (see workspace.py). Constants are
float32 or Python floats: a float64 NumPy scalar would silently upcast float32
arrays and halve the speed.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from .workspace import Workspace

INV_SQRT2 = 1.0 / math.sqrt(2.0)
TANH_C = math.sqrt(2.0 / math.pi)
FAST_GELU_K = 1.702
# max |x*sigmoid(1.702x) - exact_gelu(x)| over all float32 x (0.02034, attained near |x| = 2.27);
# checked in tests/test_engine_ops.py.
FAST_GELU_MAX_ABS_ERROR = 0.0205


def gelu_exact_reference(x: np.ndarray) -> np.ndarray:
    """float64 exact GELU, the yardstick for the approximations."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + erf(x * INV_SQRT2))


def layer_norm(x, g, b, eps: float, ws: Workspace, name: str):
    rows = (x.shape[0], 1)
    mu = np.mean(x, axis=-1, keepdims=True, out=ws.take(name + ".mu", rows))
    xc = np.subtract(x, mu, out=ws.take(name, x.shape))
    sq = np.multiply(xc, xc, out=ws.take(name + ".sq", x.shape))
    var = np.mean(sq, axis=-1, keepdims=True, out=ws.take(name + ".var", rows))
    var = np.add(var, eps, out=ws.take(name + ".var", rows))
    rstd = np.sqrt(var, out=ws.take(name + ".var", rows))
    y = np.divide(xc, rstd, out=ws.take(name, x.shape))
    y = np.multiply(y, g, out=ws.take(name, x.shape))
    return np.add(y, b, out=ws.take(name, x.shape))


def linear(x, w, b, ws: Workspace, name: str):
    y = np.matmul(x, w, out=ws.take(name, (x.shape[0], w.shape[1])))
    return np.add(y, b, out=ws.take(name, y.shape))


def gelu_exact(x, ws: Workspace, name: str):
    """0.5 x (1 + erf(x / sqrt 2)): the form `gelu` checkpoints declare."""
    t = np.multiply(x, INV_SQRT2, out=ws.take(name + ".t", x.shape))
    t = erf(t, out=ws.take(name + ".t", x.shape))
    t = np.add(t, 1.0, out=ws.take(name + ".t", x.shape))
    t = np.multiply(t, x, out=ws.take(name + ".t", x.shape))
    return np.multiply(t, 0.5, out=ws.take(name, x.shape))


def gelu_tanh(x, ws: Workspace, name: str):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): GPT-2's `gelu_new`. x*x*x, never x**3."""
    t = np.multiply(x, x, out=ws.take(name + ".t", x.shape))
    t = np.multiply(t, x, out=ws.take(name + ".t", x.shape))
    t = np.multiply(t, 0.044715, out=ws.take(name + ".t", x.shape))
    t = np.add(t, x, out=ws.take(name + ".t", x.shape))
    t = np.multiply(t, TANH_C, out=ws.take(name + ".t", x.shape))
    t = np.tanh(t, out=ws.take(name + ".t", x.shape))
    t = np.add(t, 1.0, out=ws.take(name + ".t", x.shape))
    t = np.multiply(t, x, out=ws.take(name + ".t", x.shape))
    return np.multiply(t, 0.5, out=ws.take(name, x.shape))


def gelu_fast(x, ws: Workspace, name: str):
    """x * sigmoid(1.702 x) = x / (1 + exp(-1.702 x)): error bound FAST_GELU_MAX_ABS_ERROR."""
    t = np.multiply(x, -FAST_GELU_K, out=ws.take(name + ".t", x.shape))
    t = np.exp(t, out=ws.take(name + ".t", x.shape))
    t = np.add(t, 1.0, out=ws.take(name + ".t", x.shape))
    return np.divide(x, t, out=ws.take(name, x.shape))


GELUS = {"gelu": gelu_exact, "gelu_new": gelu_tanh, "fast": gelu_fast}


def softmax_lastaxis(s, ws: Workspace, name: str):
    stat_shape = s.shape[:-1] + (1,)
    m = np.max(s, axis=-1, keepdims=True, out=ws.take(name + ".stat", stat_shape))
    e = np.subtract(s, m, out=ws.take(name, s.shape))
    e = np.exp(e, out=ws.take(name, s.shape))
    total = np.sum(e, axis=-1, keepdims=True, out=ws.take(name + ".stat", stat_shape))
    return np.divide(e, total, out=ws.take(name, s.shape))


def causal_mask(n_new: int, n_total: int, start: int) -> np.ndarray:
    """Additive mask: query i (absolute position start+i) may not see keys after it."""
    return np.triu(np.full((n_new, n_total), -np.inf, np.float32), k=start + 1)
