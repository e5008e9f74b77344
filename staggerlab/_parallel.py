"""Block-parallel execution with joblib: results in block order, whatever the
number of workers or the backend, so seeded work is reproducible."""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any, Callable, Sequence

from joblib import Parallel, delayed, parallel_config

from ._progress import progress

__all__ = ["run_blocks", "SERIAL_BLAS"]


class _SerialBlas:
    """Process-wide "BLAS on one thread" while any enclosed code runs.

    The package's BLAS products are skinny (k columns, k of order 10) and
    sit between numba chunk kernels. OpenBLAS's threads spin for a while
    after each call, taking the cores those kernels (and, on a shared
    machine, other processes) need: feols at 170k rows measured 3.5x slower
    with two BLAS threads than with one while the machine was busy.
    Reference-counted: with the threading backend several blocks run at
    once, and the first to finish must not restore multi-threaded BLAS
    under the others.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._ctx: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._ctx = _blas_controller().limit(limits=1, user_api="blas")
            self._depth += 1

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._ctx.restore_original_limits()
                self._ctx = None


@functools.cache
def _blas_controller() -> Any:
    # found once: discovering the loaded libraries reads /proc (~2 ms a call)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


#: ``with SERIAL_BLAS:`` runs the enclosed code with BLAS on one thread
SERIAL_BLAS = _SerialBlas()


#: work (element operations of a whole call) below which ``run_blocks`` stays
#: in-process whatever ``n_jobs``: starting or feeding workers costs more
IN_PROCESS_WORK = 2e8


def run_blocks(
    func: Callable[..., Any],
    blocks: Sequence[Any],
    *,
    shared: Any = None,
    n_jobs: int | None = 1,
    backend: str | None = None,
    desc: str | None = None,
    show_progress: bool | None = None,
    work: float | None = None,
) -> list[Any]:
    """Apply ``func(block)`` to every block; return results in block order.

    Parameters
    ----------
    func : callable
        Pure function of one block description (e.g. ``(index, size)``); it must
        derive any randomness from the block index, never from the worker.
    blocks : sequence
        Block descriptions.
    shared : object, optional
        Data every block needs (a panel's precomputed arrays). If given, each
        call is ``func(shared, block)`` and ``shared`` travels to the workers
        once: dask scatters it to the cluster (``parallel_config(scatter=...)``),
        loky memory-maps its large arrays, threads share it.
    n_jobs : int
        joblib ``n_jobs`` (1 runs in-process; -1 uses all cores).
    backend : str, optional
        Any joblib backend: ``"loky"`` (default for n_jobs != 1),
        ``"threading"``, ``"dask"`` (needs a ``dask.distributed.Client``),
        ``"ray"`` (after ``ray.util.joblib.register_ray()``).
    desc : str, optional
        Progress bar label; a bar is shown only on an interactive terminal.
    work : float, optional
        Element operations of the whole call; below ``IN_PROCESS_WORK`` (and
        without an explicit ``backend``) the blocks run in-process, one
        after the other, whatever ``n_jobs`` (the same results).

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, with a message saying how many blocks had finished.
    """
    show = sys.stderr.isatty() if show_progress is None else show_progress
    args = (lambda b: (b,)) if shared is None else (lambda b: (shared, b))
    done: list[Any] = []
    try:
        small = work is not None and work < IN_PROCESS_WORK
        if (n_jobs is None or n_jobs == 1 or small) and backend is None:
            done.extend(func(*args(b)) for b in progress(blocks, desc=desc, enabled=show))
        elif backend is None:
            _run(func, blocks, args, n_jobs, desc, show, done)
        else:
            # external backends (dask, ray) are registered through parallel_config
            extra = {"scatter": [shared]} if backend == "dask" and shared is not None else {}
            with parallel_config(backend=backend, n_jobs=n_jobs, **extra):
                _run(func, blocks, args, None, desc, show, done)
    except KeyboardInterrupt:
        # callers add what they saved; the bare interrupt would only show a traceback
        raise KeyboardInterrupt(
            f"{desc or 'run'} interrupted after {len(done)} of {len(blocks)} block(s); nothing was kept: run it "
            "again (the same seed gives the same numbers)"
        ) from None
    return done


def _run(func: Callable[..., Any], blocks: Sequence[Any], args: Callable[[Any], tuple], n_jobs: int | None,
         desc: str | None, show: bool, done: list[Any]) -> None:
    kw = {} if n_jobs is None else {"n_jobs": n_jobs}
    try:
        # results stream back in order, so a progress bar can follow them
        gen = Parallel(return_as="generator", **kw)(delayed(func)(*args(b)) for b in blocks)
    except ValueError:  # backends without generator support (ray) return a list
        done.extend(Parallel(return_as="list", **kw)(delayed(func)(*args(b)) for b in blocks))
        return
    done.extend(progress(gen, total=len(blocks), desc=desc, enabled=show))
