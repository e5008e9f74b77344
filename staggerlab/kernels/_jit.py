"""The one JIT policy of the package.

All kernels are compiled with ``cache=True`` (so a warm on-disk cache makes the
first call in a new process cheap) and numpy's error model (division by zero
gives inf/nan like numpy instead of raising). ``fastmath`` is off by default;
the placebo and event-study kernels turn on only ``reassoc`` and ``contract``
for their short dot products (SIMD; rounding changes at ~1e-16, the same in
every run) and keep NaN/inf semantics, which mark collinear draws.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numba as nb
from numba.np.ufunc import parallel as _nb_parallel


def _start_threads_passive() -> None:
    """Start numba's thread pool with OpenMP workers that sleep between regions.

    numba's OpenMP layer spin-waits between parallel regions by default; on a
    shared machine that turned each small parallel call from ~0.5 ms into
    ~100 ms. Our parallel regions are all large (>= 50k rows), so sleeping
    workers cost nothing measurable. libgomp reads ``OMP_WAIT_POLICY`` once,
    when it loads, so the variable is set only around that load and the
    user's environment is left as it was (a policy the user set wins).
    """
    if "OMP_WAIT_POLICY" in os.environ:
        _nb_parallel._launch_threads()
        return
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        _nb_parallel._launch_threads()
    finally:
        del os.environ["OMP_WAIT_POLICY"]


_start_threads_passive()

__all__ = ["jit", "pjit", "prange", "threads_for", "readonly", "run_chunks", "n_threads"]

prange = nb.prange


def jit(*args, **kwargs):
    """``numba.njit`` with the package policy (serial)."""
    kwargs.setdefault("cache", True)
    kwargs.setdefault("error_model", "numpy")
    kwargs.setdefault("nogil", True)
    return nb.njit(*args, **kwargs)


def pjit(*args, **kwargs):
    """``numba.njit`` with the package policy and ``parallel=True``."""
    kwargs.setdefault("parallel", True)
    return jit(*args, **kwargs)


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


@contextlib.contextmanager
def threads_for(work: float, threshold: float = 1e6):
    """Run the enclosed parallel kernels on one thread when ``work`` (in
    element operations per call) is below ``threshold``.

    Waking the worker threads costs more than a small kernel; on a busy
    machine a parallel region also waits for a descheduled worker (measured:
    a 1,000-draw placebo at 15k rows took 77 ms with two threads and 20 ms
    with one while another process used a core). Kernels whose chunking does
    not depend on the thread count give identical results either way.
    """
    if work >= threshold:
        yield
        return
    before = nb.get_num_threads()
    nb.set_num_threads(1)
    try:
        yield
    finally:
        nb.set_num_threads(before)


#: work (element operations per call) below which a chunked kernel runs on
#: the calling thread alone: waking a second thread costs ~50 us
_PARALLEL_WORK = 1e6
_POOL: ThreadPoolExecutor | None = None


def _cores() -> int:
    """Cores this process may use: its CPU affinity, capped by
    ``STAGGERLAB_NUM_THREADS`` or, inside a joblib/loky worker (which sets
    it to its share of the machine), ``OMP_NUM_THREADS``."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
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
