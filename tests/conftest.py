"""Shared fixtures for the engine tests.

Models are loaded once per session and shared; a test that needs state of its own
(a probe, fresh KV statistics, a cache) derives a copy with `Model.with_flags`,
which shares the weights but builds a new GPT (cache, workspace, probe, stats).
Never mutate a shared model's weights.

Engine test modules run with BLAS limited to one thread (when threadpoolctl is
available). The engine's matrices are tiny, so threads buy nothing, and on a busy
2-core machine OpenBLAS worker threads spin against other processes and make the
suite ~10x slower. Results do not depend on it: every comparison is between paths
of the same process, or against HF with a float32 tolerance.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import engine

FIXTURES = Path(__file__).parent / "fixtures"
HF_TINY = FIXTURES / "hf_tiny"


def random_prompt(vocab_size: int, n: int, seed: int) -> list[int]:
    """A fixed pseudo-random prompt over the whole vocabulary, not just text characters."""
    return np.random.default_rng(seed).integers(0, vocab_size, n).tolist()


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas(request):
    if not request.module.__name__.startswith("test_engine_"):
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def make_prompt():
    """`make_prompt(vocab_size, n, seed)` -> a fixed pseudo-random list of token ids."""
    return random_prompt


@pytest.fixture(scope="session")
def seed_model() -> engine.Model:
    """The `seed` preset (random weights, seed 0), naive flags."""
    return engine.load("seed", flags="", seed=0)


@pytest.fixture(scope="session")
def small_model() -> engine.Model:
    """The `small` preset (random weights, seed 0), naive flags."""
    return engine.load("small", flags="", seed=0)


@pytest.fixture(scope="session")
def hf_dir() -> Path:
    return HF_TINY


@pytest.fixture(scope="session")
def hf_expected() -> dict:
    """What Hugging Face transformers computed for tests/fixtures/hf_tiny (see its README)."""
    return json.loads((HF_TINY / "expected.json").read_text())


@pytest.fixture(scope="session")
def hf_model() -> engine.Model:
    return engine.load(HF_TINY, flags="")
