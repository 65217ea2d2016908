"""The math in engine/ops.py and engine/fused.py against float64 references."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine import fused, ops
from engine.workspace import Workspace

F32_MAX = float(np.finfo(np.float32).max)


def _grid() -> np.ndarray:
    """Dense float32 grid over [-20, 20], every float32 in +-[2.0, 2.6] (where the fast-GELU
    error peaks), and extremes."""
    dense = np.linspace(-20, 20, 800_001, dtype=np.float32)
    lo, hi = np.array([2.0, 2.6], np.float32).view(np.int32)
    around_peak = np.arange(lo, hi + 1, dtype=np.int32).view(np.float32)
    extremes = np.array([0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4, 3e38, -3e38, F32_MAX, -F32_MAX,
                         np.finfo(np.float32).tiny, -np.finfo(np.float32).tiny], np.float32)
    return np.concatenate([dense, around_peak, -around_peak, extremes])


GRID = _grid()


def gelu_tanh_reference(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def _numba_gelu(x: np.ndarray, mode: int) -> np.ndarray:
    f = x.reshape(1, -1).copy()
    fused.bias_gelu(f, np.zeros(f.shape[1], np.float32), mode)
    return f[0]


# ---- fast GELU error bound ----------------------------------------------------------------

def _fast_gelu_errors():
    ref = ops.gelu_exact_reference(GRID)
    with np.errstate(over="ignore"):  # exp(1.702 * 1e4) overflows to inf: x / inf = -0, correct
        numpy_fast = ops.gelu_fast(GRID, Workspace(False), "g")
    numba_fast = _numba_gelu(GRID, fused.GELU_FAST)
    return (np.abs(numpy_fast.astype(np.float64) - ref), np.abs(numba_fast.astype(np.float64) - ref))


def test_fast_gelu_max_error_is_a_true_and_tight_bound():
    bound = ops.FAST_GELU_MAX_ABS_ERROR
    for name, err in zip(("numpy", "numba"), _fast_gelu_errors()):
        assert np.isfinite(err).all(), name
        worst = float(err.max())
        assert worst <= bound, f"{name}: {worst} > FAST_GELU_MAX_ABS_ERROR={bound}"
        assert worst > 0.9 * bound, f"{name}: bound {bound} is loose (max error {worst})"
        # the peak is where the comment in ops.py says, near |x| ~ 2.3
        assert 2.0 < abs(float(GRID[err.argmax()])) < 2.6


def test_fast_gelu_extremes_are_exact():
    with np.errstate(over="ignore"):
        y = ops.gelu_fast(GRID[-12:], Workspace(False), "g")
    x = GRID[-12:].astype(np.float64)
    want = np.where(x > 0, x, 0.0)
    big = np.abs(x) >= 1e4
    np.testing.assert_array_equal(y[big], want[big])
    assert np.isfinite(y).all()


def test_fast_gelu_pooled_matches_unpooled():
    x = np.linspace(-8, 8, 1001, dtype=np.float32).reshape(7, 143)
    ws = Workspace(True)
    a = ops.gelu_fast(x, ws, "g").copy()
    b = ops.gelu_fast(x, ws, "g")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ops.gelu_fast(x, Workspace(False), "g"))


# ---- exact and tanh forms ---------------------------------------------------------------------

X10 = np.linspace(-10, 10, 200_001, dtype=np.float32)


@pytest.mark.parametrize("pooled", [False, True])
def test_exact_gelu_matches_float64_reference(pooled):
    y = ops.gelu_exact(X10, Workspace(pooled), "g")
    assert y.dtype == np.float32
    assert np.abs(y - ops.gelu_exact_reference(X10)).max() <= 1e-6


@pytest.mark.parametrize("pooled", [False, True])
def test_tanh_gelu_matches_float64_reference(pooled):
    y = ops.gelu_tanh(X10, Workspace(pooled), "g")
    assert y.dtype == np.float32
    assert np.abs(y - gelu_tanh_reference(X10)).max() <= 1e-6
    # and it is the tanh form, not the erf form (they differ by up to ~5e-4)
    assert np.abs(y - ops.gelu_exact_reference(X10)).max() > 1e-4


def test_reference_is_the_erf_gelu():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    want = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    np.testing.assert_allclose(ops.gelu_exact_reference(x), want, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("mode, ref", [(fused.GELU_EXACT, ops.gelu_exact_reference),
                                       (fused.GELU_TANH, gelu_tanh_reference)], ids=["exact", "tanh"])
def test_numba_gelu_forms_match_reference(mode, ref):
    assert np.abs(_numba_gelu(X10, mode) - ref(X10)).max() <= 1e-6


def test_numba_bias_gelu_adds_bias_per_column():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((5, 12)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    out = f.copy()
    fused.bias_gelu(out, bias, fused.GELU_EXACT)
    np.testing.assert_allclose(out, ops.gelu_exact_reference(f + bias), atol=1e-6, rtol=0)


def test_gelu_modes_cover_the_activations():
    assert set(fused.GELU_MODES) == set(ops.GELUS) == {"gelu", "gelu_new", "fast"}


# ---- the other ops ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 48)) * 3 + 1).astype(np.float32)
    g = (1 + 0.1 * rng.standard_normal(48)).astype(np.float32)
    b = (0.1 * rng.standard_normal(48)).astype(np.float32)
    return x, g, b


def _ln_reference(x, g, b, eps=1e-5):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


@pytest.mark.parametrize("pooled", [False, True])
def test_layer_norm(rows, pooled):
    x, g, b = rows
    y = ops.layer_norm(x, g, b, 1e-5, Workspace(pooled), "ln")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _ln_reference(x, g, b), atol=2e-6, rtol=0)


def test_fused_layer_norms(rows):
    x, g, b = rows
    out = np.empty_like(x)
    fused.layer_norm(x, g, b, 1e-5, out)
    np.testing.assert_allclose(out, _ln_reference(x, g, b), atol=2e-6, rtol=0)
    resid, a = x.copy(), np.ones_like(x)
    bias = np.full(x.shape[1], 0.5, np.float32)
    fused.residual_layer_norm(resid, a, bias, g, b, 1e-5, out)
    np.testing.assert_allclose(resid, x + 1.5, atol=1e-6, rtol=0)  # residual updated in place
    np.testing.assert_allclose(out, _ln_reference(x + 1.5, g, b), atol=2e-6, rtol=0)


@pytest.mark.parametrize("pooled", [False, True])
def test_softmax(pooled):
    s = np.random.default_rng(2).standard_normal((3, 4, 9)).astype(np.float32) * 20
    s[0, 0, 3:] = -np.inf  # masked entries get probability 0
    p = ops.softmax_lastaxis(s, Workspace(pooled), "p")
    e = np.exp(s.astype(np.float64) - s.max(-1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(-1, keepdims=True), atol=1e-6, rtol=0)
    assert (p[0, 0, 3:] == 0).all()


def test_linear(rows):
    x, _, _ = rows
    w = np.random.default_rng(3).standard_normal((48, 20)).astype(np.float32)
    bias = np.arange(20, dtype=np.float32)
    y = ops.linear(x, w, bias, Workspace(True), "lin")
    np.testing.assert_allclose(y, x.astype(np.float64) @ w + bias, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("n_new, n_total, start", [(4, 4, 0), (3, 10, 7), (1, 10, 9)])
def test_causal_mask(n_new, n_total, start):
    m = ops.causal_mask(n_new, n_total, start)
    assert m.shape == (n_new, n_total) and m.dtype == np.float32
    for i in range(n_new):
        for j in range(n_total):
            assert m[i, j] == (0.0 if j <= start + i else -np.inf)


def test_fused_attend_matches_reference():
    """attend(): causal attention of the new queries over the store, heads merged."""
    rng = np.random.default_rng(4)
    H, hd, ctx, start, T = 3, 8, 12, 5, 4
    q = rng.standard_normal((H, T, hd)).astype(np.float32)
    kt = rng.standard_normal((H, hd, ctx)).astype(np.float32)
    v = rng.standard_normal((H, ctx, hd)).astype(np.float32)
    out = np.empty((T, H * hd), np.float32)
    fused.attend(q, kt, v, start, np.empty(start + T, np.float32), out)
    for i in range(T):
        n = start + i + 1
        for h in range(H):
            s = q[h, i].astype(np.float64) @ kt[h, :, :n]
            p = np.exp(s - s.max())
            p /= p.sum()
            np.testing.assert_allclose(out[i, h * hd:(h + 1) * hd], p @ v[h, :n], atol=1e-5, rtol=0)


def test_fused_split_heads():
    rng = np.random.default_rng(5)
    H, hd, T, ctx, start = 2, 4, 3, 8, 2
    c = H * hd
    qkv = rng.standard_normal((T, 3 * c)).astype(np.float32)
    bias = rng.standard_normal(3 * c).astype(np.float32)
    q = np.empty((H, T, hd), np.float32)
    kt, v = np.zeros((H, hd, ctx), np.float32), np.zeros((H, ctx, hd), np.float32)
    fused.split_heads(qkv, bias, np.float32(0.5), q, kt, v, start)
    full = qkv + bias
    np.testing.assert_allclose(q, 0.5 * full[:, :c].reshape(T, H, hd).transpose(1, 0, 2), atol=1e-6)
    np.testing.assert_allclose(kt[:, :, start:start + T], full[:, c:2 * c].reshape(T, H, hd).transpose(1, 2, 0))
    np.testing.assert_allclose(v[:, start:start + T], full[:, 2 * c:].reshape(T, H, hd).transpose(1, 0, 2))
    assert not kt[:, :, :start].any() and not v[:, start + T:].any()  # nothing else written
