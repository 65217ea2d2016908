"""Steady-state NumPy allocation per generated token.

How bytes are counted (and why not with tracemalloc alone)
----------------------------------------------------------
NumPy reports every array data buffer it allocates to tracemalloc, in its own domain
(`np.lib.tracemalloc_domain`). But tracemalloc keeps only *live* traces and one global
current/peak figure (all domains mixed). Neither gives cumulative bytes: a naive step
allocates and frees hundreds of temporaries, and a snapshot, or the peak between two
probe edges, sees at most the largest live subset. That is a lower bound, fine for
"naive allocates a lot" but unsound for "pool allocates almost nothing".

Every one of those buffers is obtained through NumPy's data memory handler (NEP 49):
`PyDataMem_UserNEW` calls the handler's malloc/calloc/realloc and then reports the
pointer to tracemalloc's NumPy domain. `CountingHandler` below installs a handler
(ctypes callbacks delegating to libc) that adds up sizes and calls. It therefore sees
exactly the allocations the tracemalloc NumPy domain sees, but cumulatively: an exact
count, not a bound. `test_counter_agrees_with_tracemalloc_numpy_domain` checks that on
arrays kept alive (where tracemalloc's live view *is* complete): same bytes, same count.

A probe reads the counter at `step_begin`/`step_end`, so only decode steps are measured
(forward + sampling). The first step of a generation (the prompt prefill, which also
converts the id list to an array) is excluded, and the measured generation follows a
warmup generation of the same length so pooled buffers already have their final sizes.
Steady state = bytes in steps 2..N / (N - 1).
"""
from __future__ import annotations

import ctypes
import tracemalloc

import numpy as np
import pytest

import engine

PROMPT_LEN = 16
N_NEW = 64
STEADY_BOUND = 1024  # bytes of NumPy buffers per generated token for kv,pool,fused


# ---- the counting NumPy data-memory handler --------------------------------------------------

_MALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_CALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_REALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _Allocator(ctypes.Structure):  # PyDataMemAllocator (numpy/ndarraytypes.h)
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", _MALLOC), ("calloc", _CALLOC),
                ("realloc", _REALLOC), ("free", _FREE)]


class _Handler(ctypes.Structure):  # PyDataMem_Handler, version 1
    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", _Allocator)]


class CountingHandler:
    """Cumulative bytes/calls of NumPy data-buffer allocations while active (`with counter:`).

    One instance lives for the whole process: arrays remember the handler that allocated
    them and call its `free` later, so the callbacks must never be collected.
    """

    NAME = b"engine_tests_counting_allocator"
    SET_HANDLER_SLOT, GET_HANDLER_SLOT = 304, 305  # PyArray_API indices (numpy >= 1.22)

    def __init__(self):
        libc = ctypes.CDLL(None)
        self._libc_calls = (libc.malloc, libc.calloc, libc.realloc, libc.free)
        libc.malloc.restype = libc.calloc.restype = libc.realloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free.restype = None
        self.bytes = 0
        self.calls = 0
        self.sizes: list[int] = []

        def malloc(ctx, size):
            self._add(size)
            return libc.malloc(size or 1)

        def calloc(ctx, nelem, elsize):
            self._add(nelem * elsize)
            return libc.calloc(nelem or 1, elsize or 1)

        def realloc(ctx, ptr, size):
            self._add(size)
            return libc.realloc(ptr, size or 1)

        def free(ctx, ptr, size):
            libc.free(ptr)

        self._callbacks = (_MALLOC(malloc), _CALLOC(calloc), _REALLOC(realloc), _FREE(free))
        self._handler = _Handler(self.NAME, 1, _Allocator(None, *self._callbacks))
        api = ctypes.pythonapi
        api.PyCapsule_New.restype = ctypes.py_object
        api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        api.PyCapsule_GetPointer.restype = ctypes.c_void_p
        api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        self._capsule = api.PyCapsule_New(ctypes.addressof(self._handler), b"mem_handler", None)
        from numpy._core import _multiarray_umath

        table = ctypes.cast(api.PyCapsule_GetPointer(_multiarray_umath._ARRAY_API, None),
                            ctypes.POINTER(ctypes.c_void_p))
        self._set = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(table[self.SET_HANDLER_SLOT])
        self._previous = None

    def _add(self, size: int) -> None:
        self.bytes += size
        self.calls += 1
        self.sizes.append(size)

    def reset(self) -> None:
        self.bytes = self.calls = 0
        self.sizes.clear()

    def __enter__(self) -> "CountingHandler":
        self._previous = self._set(self._capsule)
        if np._core.multiarray.get_handler_name() != self.NAME.decode():
            self._set(self._previous)
            raise RuntimeError("NumPy did not accept the counting data-memory handler")
        return self

    def __exit__(self, *exc) -> None:
        self._set(self._previous)


@pytest.fixture(scope="module")
def counter():
    if not np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        pytest.skip("the counting handler uses the NumPy 2 C-API table layout")
    handler = globals().get("_COUNTER") or CountingHandler()
    globals()["_COUNTER"] = handler  # keep alive for the process (see CountingHandler)
    with handler:  # smoke test: installs, counts, restores
        handler.reset()
        np.empty(1000, np.float32)
        assert handler.bytes == 4000 and handler.calls == 1
    assert np._core.multiarray.get_handler_name() == "default_allocator"
    return handler


class StepAllocProbe:
    """Reads the counter at the edges of each decode step."""

    def __init__(self, counter: CountingHandler):
        self.counter = counter
        self.steps: list[tuple[int, int, int, list[int]]] = []  # (n_new, bytes, calls, sizes)

    def step_begin(self, n_new, n_total):
        self._n_new, self._b, self._c = n_new, self.counter.bytes, self.counter.calls

    def stage_end(self, stage, layer):
        pass

    def step_end(self):
        c = self.counter
        self.steps.append((self._n_new, c.bytes - self._b, c.calls - self._c, c.sizes[self._c:c.calls]))

    def steady(self):
        decode = self.steps[1:]
        return (sum(s[1] for s in decode) / len(decode), sum(s[2] for s in decode) / len(decode),
                max((max(s[3], default=0) for s in decode), default=0))


def measure(base: engine.Model, flags: str, counter: CountingHandler, prompt):
    """(bytes/token, calls/token, largest single allocation) in steady-state decoding."""
    model = base.with_flags(flags)
    warm = model.generate(prompt, N_NEW)
    ws_bytes = model.workspace_bytes
    model.probe = probe = StepAllocProbe(counter)
    counter.reset()
    with counter:
        tokens = model.generate(prompt, N_NEW)
    assert tokens == warm
    assert len(probe.steps) == N_NEW
    assert model.workspace_bytes == ws_bytes  # the pool did not grow after the warmup
    return probe.steady()


@pytest.fixture(scope="module")
def per_token(seed_model, counter, make_prompt):
    prompt = make_prompt(65, PROMPT_LEN, seed=4)
    flag_sets = ["", "pool", "kv", "pool,kv", "kv,fused", "kv,pool,fused", "kv,pool,fused,fastgelu"]
    out = {f: measure(seed_model, f, counter, prompt) for f in flag_sets}
    for f, (b, c, biggest) in out.items():
        print(f"seed {f or 'none':24s} {b:12.1f} B/token {c:8.2f} allocs/token, largest {biggest} B")
    return out


# ---- the instrument ----------------------------------------------------------------------

def test_counter_agrees_with_tracemalloc_numpy_domain(counter):
    """On arrays kept alive, tracemalloc's NumPy domain and the handler see the same allocations."""
    src = np.arange(1000, dtype=np.float32)
    domain = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(domain)
        keep = []
        counter.reset()
        with counter:
            keep.append(np.empty(1000, np.float32))
            keep.append(np.zeros((7, 9)))                                # calloc
            keep.append(src + src)                                       # ufunc output
            keep.append(src.astype(np.float64))
            keep.append(np.concatenate([src, src]))
            keep.append(src.reshape(10, 100) @ src.reshape(100, 10))   # matmul output
        after = tracemalloc.take_snapshot().filter_traces(domain)
    finally:
        if not was_tracing:
            tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    assert counter.bytes == sum(s.size_diff for s in stats) == sum(a.nbytes for a in keep)
    assert counter.calls == sum(s.count_diff for s in stats) == len(keep)


def test_counter_is_cumulative(counter):
    counter.reset()
    with counter:
        for _ in range(10):
            np.empty(100, np.float64)  # allocated and freed at once: tracemalloc would show 0 live
    assert counter.bytes == 8000 and counter.calls == 10


def test_probe_step_brackets(seed_model, counter, make_prompt):
    """The probe sees one step per token; kv decode steps have n_new == 1."""
    model = seed_model.with_flags("kv,pool")
    model.probe = probe = StepAllocProbe(counter)
    model.generate(make_prompt(65, PROMPT_LEN, seed=4), 5)
    assert [s[0] for s in probe.steps] == [PROMPT_LEN, 1, 1, 1, 1]


# ---- the engine ------------------------------------------------------------------------------

def test_naive_allocates_per_token(per_token):
    naive_bytes, naive_calls, biggest = per_token[""]
    # at least the logits of every window position, every step: (16..80) x 65 floats
    assert naive_bytes > PROMPT_LEN * 65 * 4 * 10
    assert naive_calls > 50 and biggest > 10_000


@pytest.mark.parametrize("flags", ["pool,kv", "kv,pool,fused"])
def test_naive_allocates_over_100x_more_than_pooled_kv(per_token, flags):
    naive = per_token[""][0]
    pooled = per_token[flags][0]
    assert naive > 100 * max(pooled, 1.0), f"naive {naive:.0f} B/token vs {flags} {pooled:.0f} B/token"


def test_each_flag_reduces_allocation(per_token):
    assert per_token["pool"][0] < per_token[""][0] / 100
    assert per_token["kv"][0] < per_token[""][0] / 10
    assert per_token["kv,pool,fused"][0] <= per_token["pool,kv"][0]
    assert per_token["kv,pool,fused"][0] < per_token["kv,fused"][0]


@pytest.mark.parametrize("flags", ["kv,pool,fused", "kv,pool,fused,fastgelu"])
def test_fused_pool_kv_steady_state_bound(per_token, flags):
    per_tok, calls, biggest = per_token[flags]
    assert per_tok <= STEADY_BOUND, f"{flags}: {per_tok:.0f} B/token"
    assert calls <= 4


@pytest.mark.parametrize("flags", ["pool,kv", "kv,pool,fused"])
def test_pool_allocates_no_buffers(per_token, flags):
    """With `pool`, whatever is still allocated is scalar-sized, never an activation buffer."""
    assert per_token[flags][2] <= 64


def test_pool_without_kv_allocates_only_the_id_array(per_token):
    """Re-embedding the window converts the id list to an int64 array each step; nothing bigger."""
    assert per_token["pool"][2] <= 8 * (PROMPT_LEN + N_NEW)
