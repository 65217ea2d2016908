"""The process conditions timings are taken under, fixed so runs are comparable.

- BLAS threads (threadpoolctl): the engine's matrices are small; on a 2-core machine a
  second BLAS thread mostly waits, and when another process holds a core every threaded
  call can stall for milliseconds. Workloads pin it (default 1).
- glibc's mmap threshold (mallopt): left dynamic, it rises after large frees, so the
  naive path's big temporaries are mmap'd (page faults on every op) in a fresh process
  and heap-allocated later; the same code then runs ~20% faster on its second run.
  A fixed threshold makes every run allocate the same way.
"""
from __future__ import annotations

import contextlib
import ctypes

DEFAULT_MMAP_THRESHOLD = 32 * 1024 * 1024


def pin_malloc(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap (and trim) threshold for this process; False where there is no glibc mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(mallopt(m_trim_threshold, 2 * mmap_threshold))


@contextlib.contextmanager
def measurement_environment(blas_threads: int | None, mmap_threshold: int = DEFAULT_MMAP_THRESHOLD):
    """Yield a dict describing the conditions (stored in run records)."""
    from threadpoolctl import threadpool_limits

    facts = {"blas_threads": blas_threads, "malloc_mmap_threshold": mmap_threshold,
             "malloc_pinned": pin_malloc(mmap_threshold)}
    limits = threadpool_limits(limits=blas_threads, user_api="blas") if blas_threads else contextlib.nullcontext()
    with limits:
        yield facts
