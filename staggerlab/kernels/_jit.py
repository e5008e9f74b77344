"""The one JIT policy of the package.

All kernels are serial ``nogil`` functions compiled with ``cache=True`` (so a warm on-disk cache makes the
first call in a new process cheap) and numpy's error model (division by zero
gives inf/nan like numpy instead of raising). ``fastmath`` is off by default;
the placebo and event-study kernels turn on only ``reassoc`` and ``contract``
for their short dot products (SIMD; rounding changes at ~1e-16, the same in
every run) and keep NaN/inf semantics, which mark collinear draws.

Parallel work goes through :func:`run_chunks` (a thread pool pulling fixed
chunks), not numba's ``parallel=True``: parfors compiled two to twenty times
slower (measured per kernel on this package), and a fixed chunking keeps
results bit-identical for any thread count.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numba as nb

__all__ = ["jit", "readonly", "run_chunks", "n_threads", "limit_threads"]


def jit(*args, **kwargs):
    """``numba.njit`` with the package policy (serial)."""
    kwargs.setdefault("cache", True)
    kwargs.setdefault("error_model", "numpy")
    kwargs.setdefault("nogil", True)
    return nb.njit(*args, **kwargs)


def readonly(a):
    """A read-only view of ``a`` (``a`` itself if already read-only).

    numba compiles a kernel once per combination of argument types, and an
    array's writability is part of its type: inputs arrive writable (numpy
    results) or read-only (zero-copy polars buffers). Passing every input a
    kernel only reads through this view compiles it once. No copy.
    """
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


#: work (element operations per call) below which a chunked kernel runs on
#: the calling thread alone: waking a second thread costs ~50 us
_PARALLEL_WORK = 1e6
_POOL: ThreadPoolExecutor | None = None
_CAP: int | None = None


@contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """Cap this process's chunked kernels (and :func:`n_threads`) at ``n``
    threads inside the block: the battery does so while a second process
    runs some of its sections, so the two never ask for more threads than
    there are cores. Results do not depend on the thread count."""
    global _CAP
    old = _CAP
    _CAP = n if old is None else min(old, n)
    try:
        yield
    finally:
        _CAP = old


def _cores() -> int:
    """Cores this process may use: its CPU affinity, capped by
    :func:`limit_threads`, ``STAGGERLAB_NUM_THREADS`` or, inside a
    joblib/loky worker (which sets it to its share of the machine),
    ``OMP_NUM_THREADS``."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    if _CAP is not None:
        n = min(n, _CAP)
    for var in ("STAGGERLAB_NUM_THREADS", "OMP_NUM_THREADS"):
        cap = os.environ.get(var, "")
        if cap.isdigit() and int(cap) > 0:
            return min(n, int(cap))
    return n


def n_threads(work: float, threshold: float = _PARALLEL_WORK) -> int:
    """Threads a chunked kernel of ``work`` element operations gets: 1 below
    ``threshold``, else every core this process may use (see :func:`_cores`)."""
    return 1 if work < threshold else _cores()


def run_chunks(body: Callable[..., Any], n_chunks: int, args: tuple, work: float,
               threshold: float = _PARALLEL_WORK) -> None:
    """Run ``body(ch, ch + 1, *args)`` for every chunk ``ch`` in ``[0, n_chunks)``.

    ``body`` is a serial ``nogil`` kernel that writes chunk ``ch``'s results
    to its own slot (``part[ch]``), so the caller's reduction over chunks in
    index order gives the same bits for any thread count. The calling thread
    and up to ``n_threads(work) - 1`` pool threads pull chunks one at a time
    from a shared counter: a thread the OS deschedules on a busy machine
    holds up one chunk, not a fixed share of the work, and no thread spins
    while it waits. With one thread (small work) it is a single call
    ``body(0, n_chunks, *args)``. Serial kernels compile in a fraction of the
    time of numba's ``parallel=True`` ones, which is why the package
    parallelises this way.
    """
    global _POOL
    nt = min(n_threads(work, threshold), n_chunks)
    if nt <= 1:
        body(0, n_chunks, *args)
        return
    if _POOL is None or _POOL._max_workers < nt - 1:
        _POOL = ThreadPoolExecutor(max_workers=max(nt - 1, _cores() - 1), thread_name_prefix="staggerlab")
    # next() on itertools.count is atomic under the GIL
    counter = itertools.count()

    def pull() -> None:
        for ch in counter:
            if ch >= n_chunks:
                return
            body(ch, ch + 1, *args)

    futures = [_POOL.submit(pull) for _ in range(nt - 1)]
    try:
        pull()
    finally:
        for f in futures:
            f.result()
