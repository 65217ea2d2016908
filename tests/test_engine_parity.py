"""Every flag combination against the naive path, on the `seed` and `small` presets.

Exact flag sets (pool, kv, fused in any combination) must reproduce the naive logits
within float32 tolerance and the same greedy tokens. Sets with `fastgelu` change the
math on purpose: their logits must stay within a measured bound of the naive ones,
and among themselves they are again exact (each is "fastgelu" plus exact flags).
"""
from __future__ import annotations

import numpy as np
import pytest

import engine

PRESETS = ("seed", "small")
PROMPT_LEN = 16
N_NEW = 150
EXACT_LOGIT_TOL = 1e-4  # float32 reassociation (fused kernels, BLAS on 1 vs T rows)

# Max |logit(fastgelu) - logit(naive)| on the 16-token test prompt. Measured (this prompt,
# seed 0 weights): seed 0.037, small 0.078 (fused alone: 4.5e-6 / 1.2e-5). Over other
# prompts the worst seen was 0.037 (seed) and 0.11 (small) on 16-token prompts, 0.057 and
# 0.28 at deep positions of 166-token windows. The bound is ~2.6x the value observed on the
# tested prompt: loose enough for BLAS/CPU differences, tight enough to catch a wrong
# approximation (sigmoid(x) instead of sigmoid(1.702x) moves these logits by 0.29 / 0.67).
FASTGELU_LOGIT_BOUND = {"seed": 0.1, "small": 0.2}

ALL_SETS = engine.all_flag_sets()
EXACT_SETS = [f for f in ALL_SETS if f.is_exact]
FASTGELU_SETS = [f for f in ALL_SETS if not f.is_exact]
FASTGELU = engine.OptFlags(fastgelu=True)


class Results:
    """Lazily computed logits / greedy tokens per flag set, shared by the tests of one preset."""

    def __init__(self, name: str, base: engine.Model, prompt: list[int]):
        self.name = name
        self.base = base
        self.prompt = prompt
        self._logits: dict[engine.OptFlags, np.ndarray] = {}
        self._greedy: dict[engine.OptFlags, list[int]] = {}

    def model(self, flags) -> engine.Model:
        return self.base.with_flags(flags)

    def logits(self, flags) -> np.ndarray:
        flags = engine.OptFlags.parse(flags)
        if flags not in self._logits:
            self._logits[flags] = self.model(flags).logits(self.prompt)
        return self._logits[flags]

    def greedy(self, flags) -> list[int]:
        flags = engine.OptFlags.parse(flags)
        if flags not in self._greedy:
            self._greedy[flags] = self.model(flags).generate(self.prompt, N_NEW)
        return self._greedy[flags]


@pytest.fixture(scope="module", params=PRESETS)
def res(request, make_prompt) -> Results:
    base = request.getfixturevalue(f"{request.param}_model")
    return Results(request.param, base, make_prompt(base.config.vocab_size, PROMPT_LEN, seed=1))


def _first_mismatch(a: list[int], b: list[int]):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


# ---- the references themselves are meaningful -------------------------------------------------

def test_naive_reference_is_sane(res):
    logits = res.logits("")
    v = res.base.config.vocab_size
    assert logits.shape == (PROMPT_LEN, v) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    # rows differ per position and are not flat: the model really depends on its input
    assert logits.std(axis=-1).min() > 0.1
    assert np.abs(np.diff(logits, axis=0)).max() > 0.1
    tokens = res.greedy("")
    assert len(tokens) == N_NEW and all(0 <= t < v for t in tokens)
    # Not degenerate, or token parity would be blind to cache/position bugs.
    assert len(set(tokens)) >= 10
    run = longest = 1
    for a, b in zip(tokens, tokens[1:]):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    assert longest < 20  # no long stretch of one repeated token


def test_greedy_is_argmax_of_full_recompute(res):
    """Independent oracle: each greedy token is the argmax of a fresh naive forward."""
    naive, tokens = res.base, res.greedy("")
    steps = range(N_NEW) if res.name == "seed" else (0, 1, 2, 17, 63, 100, N_NEW - 1)
    for i in steps:
        logits = naive.logits(res.prompt + tokens[:i])
        assert logits.shape[0] == PROMPT_LEN + i
        assert int(logits[-1].argmax()) == tokens[i], f"step {i}"


def test_logits_are_causal(res):
    """Changing a later token leaves earlier positions' logits untouched (mask works)."""
    prompt = list(res.prompt)
    prompt[10] = (prompt[10] + 1) % res.base.config.vocab_size
    for flags in ("", "pool,kv,fused"):
        a, b = res.logits(flags), res.model(flags).logits(prompt)
        np.testing.assert_array_equal(a[:10], b[:10])
        assert np.abs(a[10:] - b[10:]).max() > 1e-3


# ---- exact flag sets --------------------------------------------------------------------

@pytest.mark.parametrize("flags", EXACT_SETS, ids=str)
def test_exact_logits_match_naive(res, flags):
    diff = np.abs(res.logits(flags) - res.logits("")).max()
    assert diff <= EXACT_LOGIT_TOL, f"{res.name} {flags}: max abs logit diff {diff:.3g}"


@pytest.mark.parametrize("flags", EXACT_SETS, ids=str)
def test_exact_greedy_tokens_match_naive(res, flags):
    got, want = res.greedy(flags), res.greedy("")
    assert got == want, f"{res.name} {flags}: first mismatch at step {_first_mismatch(got, want)}"


# ---- approximate: fastgelu ----------------------------------------------------------------

@pytest.mark.parametrize("flags", FASTGELU_SETS, ids=str)
def test_fastgelu_logits_within_bound(res, flags, record_property):
    diff = float(np.abs(res.logits(flags) - res.logits("")).max())
    record_property(f"fastgelu_logit_max_diff_{res.name}", diff)
    assert diff <= FASTGELU_LOGIT_BOUND[res.name], f"{res.name} {flags}: {diff:.4g}"
    # ... and it really is a different GELU (the flag is not silently ignored)
    assert diff > 1e-3


@pytest.mark.parametrize("flags", FASTGELU_SETS, ids=str)
def test_fastgelu_sets_are_exact_among_themselves(res, flags):
    """`fastgelu` + exact flags == `fastgelu` alone, within float32 tolerance and token for token."""
    diff = np.abs(res.logits(flags) - res.logits(FASTGELU)).max()
    assert diff <= EXACT_LOGIT_TOL
    got, want = res.greedy(flags), res.greedy(FASTGELU)
    assert got == want, f"first mismatch at step {_first_mismatch(got, want)}"


def test_fastgelu_greedy_vs_naive_report(res, record_property):
    """Informational: how long fastgelu's greedy continuation agrees with the exact one.

    Not asserted to match (an approximation may flip a near-tie and then diverge), only
    that it agrees at the first step, where the logit error is within the bound.
    """
    got, want = res.greedy(FASTGELU), res.greedy("")
    mismatch = _first_mismatch(got, want)
    record_property(f"fastgelu_greedy_first_mismatch_{res.name}", mismatch)
    print(f"{res.name}: fastgelu greedy first differs from naive at step {mismatch} of {N_NEW}")
    assert got[0] == want[0]
    assert len(set(got)) >= 10


# ---- Model mechanics the parity tests rely on -------------------------------------------------

def test_with_flags_shares_weights(res):
    m = res.model("pool,kv,fused,fastgelu")
    assert m.weights is res.base.weights
    assert str(m.flags) == "pool,kv,fused,fastgelu" and str(res.base.flags) == "none"


def test_logits_returns_a_copy_not_a_pool_buffer(res):
    m = res.model("pool,kv,fused")
    first = m.logits(res.prompt)
    kept = first.copy()
    m.logits(res.prompt[::-1])
    m.generate(res.prompt, 3)
    np.testing.assert_array_equal(first, kept)


def test_kv_model_is_reset_between_calls(res):
    """After a generation the cache holds other tokens; logits() must start from position 0."""
    m = res.model("pool,kv")
    m.generate(res.prompt[::-1], 5)
    np.testing.assert_allclose(m.logits(res.prompt), res.logits(""), rtol=0, atol=EXACT_LOGIT_TOL)
    assert m.generate(res.prompt, 20) == res.greedy("")[:20]
    assert m.generate(res.prompt, 20) == res.greedy("")[:20]
