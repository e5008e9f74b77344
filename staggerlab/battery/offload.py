"""Run some of the battery's sections in a second process, beside the others.

The sections are independent given the validated frame and the options, and
most of their time is Python, scikit-learn and short kernels that one core
runs. On a machine with a second idle core the battery therefore starts one
child process (joblib's loky executor: no fork of a process holding
threads, and unlike multiprocessing's ``spawn`` it never re-runs the
caller's ``__main__``, so a script without an ``if __name__ ==
"__main__"`` guard is safe) that runs
the sections in ``OFFLOADED`` (the event study and design power, about half
of a warm battery) on its own copy of the frame, while this process runs the
others; each process's kernels keep to one thread meanwhile
(:func:`~staggerlab.kernels._jit.limit_threads`), so the two never ask for
more threads than there are cores. The child's sections come back as
``Section`` objects (text, tables, numbers; figures are already written to
the shared output folder) and take their place in the report in order.
Numbers never depend on which process computed them: every section is a
function of the frame, the options and the seed.

Not used when ``STAGGERLAB_BATTERY_PROCESSES=1``, with one core, when no core
is idle, for frames above ``MAX_ROWS`` (the child holds its own copy), when
the draws go to workers (a ``backend``, or ``n_jobs`` with more than 10,000
draws: see ``spec.jobs_for``), or when starting the child fails (the
sections then run here as usual).
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import polars as pl

from .spec import BatterySpec, Section

__all__ = ["Offload", "start", "OFFLOADED", "MAX_ROWS"]

#: the sections the child runs
OFFLOADED = ("event_study", "power")
#: above this many rows the sections run in this process only (no second copy of the frame)
MAX_ROWS = 2_000_000


class Offload:
    """The running child and its sections' futures, by section key."""

    def __init__(self, pool: Any, futures: dict[str, Future]) -> None:
        self.pool = pool
        self.futures = futures

    def result(self, key: str) -> Section:
        """The child's section ``key`` (waits for it; a section that raised comes back as its failure)."""
        return self.futures.pop(key).result()

    def finished(self) -> list[Section]:
        """The child's sections that are done (taken out of ``futures``); failed ones are left out."""
        done = [k for k, f in self.futures.items() if f.done() and not f.cancelled() and f.exception() is None]
        return [self.futures.pop(k).result() for k in done]

    def stop(self) -> None:
        """Cancel what has not run and end the child."""
        for f in self.futures.values():
            f.cancel()
        self.pool.shutdown(wait=False, kill_workers=True)


def start(frame: pl.DataFrame, spec: BatterySpec, treat: str, out: Path, cohort: str,
          sections: list[Callable[..., Section]]) -> Offload | None:
    """Start the child on the sections of ``sections`` named in ``OFFLOADED``
    when it can help (see the module docstring); ``None`` otherwise."""
    from ..kernels._jit import n_threads
    from .spec import jobs_for
    from .warmup import idle_core

    cores = n_threads(float("inf"))
    if (os.environ.get("STAGGERLAB_BATTERY_PROCESSES", "") == "1" or cores < 2 or frame.height > MAX_ROWS
            or jobs_for(spec) != 1 or not idle_core(cores)):
        return None
    fns = [fn for fn in sections if fn.__name__.removeprefix("section_") in OFFLOADED]
    if not fns:
        return None
    try:
        # loky (joblib's) rather than multiprocessing's spawn: its worker never re-runs the caller's
        # __main__, so a script calling battery() without an ``if __name__ == "__main__"`` guard is safe
        from joblib.externals.loky import ProcessPoolExecutor

        pool = ProcessPoolExecutor(1)
        futures = {fn.__name__.removeprefix("section_"): pool.submit(_run, fn, frame, spec, treat, str(out), cohort)
                   for fn in fns}
        return Offload(pool, futures)
    except Exception:  # an optimisation only: the sections then run in this process
        return None


def _run(fn: Callable[..., Section], frame: pl.DataFrame, spec: BatterySpec, treat: str, out: str,
         cohort: str) -> Section:
    """One section in the child (one kernel thread: the parent runs beside it)."""
    from ..kernels._jit import limit_threads
    from . import SharedFits, run_one
    from .timing import compile_clock

    with limit_threads(1), compile_clock() as clock:
        sec = run_one(fn, frame, spec, treat, Path(out), SharedFits(frame, spec, treat, cohort), clock)
    sec.process = "second"
    return sec
