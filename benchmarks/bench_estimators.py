"""Event-study estimators: staggerlab vs pyfixest at 15k and 170k rows.

Compares dynamic TWFE (pyfixest ``feols`` with ``i()``), Sun-Abraham
(pyfixest's saturated event study) and the imputation / two-stage estimator
(pyfixest ``did2s``) on simulated staggered panels. JIT is warmed first; each
timing is the median of ``--reps`` runs (one run when a single run takes more
than 10 s). pyfixest's ``did2s`` builds dense dummy matrices (over 20 GB at
170k rows), so at that size it only runs with ``--heavy``.

Run::

    python benchmarks/bench_estimators.py            # prints a Markdown table
    python benchmarks/bench_estimators.py --sizes 15k --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import warnings
from typing import Callable

import numpy as np

import staggerlab as sl
from staggerlab.inference.did.event_study import event_study

SIZES = {"15k": (1500, 10), "170k": (10_000, 17)}
WINDOW = (-5, 5)


def _time(f: Callable[[], object], reps: int) -> float:
    t0 = time.perf_counter()
    f()
    first = time.perf_counter() - t0
    if first > 10 or reps <= 1:
        return first
    runs = [first]
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        f()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def _peak_mb(f: Callable[[], object]) -> float:
    tracemalloc.start()
    f()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--heavy", action="store_true", help="also run pyfixest did2s at 170k rows")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import pyfixest as pf

    # warm the JIT caches and pyfixest's imports
    small = sl.simulate.staggered(200, 8, seed=1)
    for m in ("twfe", "sunab", "imputation"):
        event_study(small, y="y", unit="unit", time="time", cohort="cohort", method=m)
    pf.feols("y ~ treat | unit + time", small.to_pandas())

    rows = []
    for size in args.sizes:
        n_units, n_periods = SIZES[size]
        df = sl.simulate.staggered(n_units, n_periods, seed=0, dynamic=0.2)
        pdf = df.to_pandas()
        lo, hi = WINDOW
        pdf["rel_b"] = np.where(pdf.cohort > 0, np.clip(pdf.time - pdf.cohort, lo, hi), -1)

        def ours(method: str) -> Callable[[], object]:
            return lambda: event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=WINDOW,
                                       method=method)

        cases: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
            ("dynamic TWFE", ours("twfe"),
             lambda: pf.feols("y ~ i(rel_b, ref=-1) | unit + time", pdf, vcov={"CRV1": "unit"})),
            ("Sun-Abraham", ours("sunab"),
             lambda: pf.event_study(pdf, yname="y", idname="unit", tname="time", gname="cohort",
                                    estimator="saturated").aggregate()),
            ("imputation / did2s", lambda: ours("imputation")().aggregate("simple"),
             None if (size == "170k" and not args.heavy) else
             lambda: pf.did2s(pdf, yname="y", first_stage="~ 0 | unit + time",
                              second_stage="~ i(rel_b, ref=-1)", treatment="treat", cluster="unit")),
        ]
        for name, mine, peer in cases:
            t_ours = _time(mine, args.reps)
            mem = _peak_mb(mine)
            t_peer = _time(peer, args.reps) if peer is not None else float("nan")
            rows.append((size, df.height, name, t_ours, mem, t_peer))
            print(f"  {size} {name}: staggerlab {t_ours:.3f}s, pyfixest {t_peer:.3f}s", flush=True)

    print("\n| rows | estimator | staggerlab (s) | staggerlab peak (MB, tracemalloc) | pyfixest (s) | speed-up |")
    print("|---:|---|---:|---:|---:|---:|")
    for size, n, name, t, mem, tp in rows:
        peer = f"{tp:.3f}" if np.isfinite(tp) else "not run (>20 GB; --heavy)"
        ratio = f"{tp / t:.1f}x" if np.isfinite(tp) else "-"
        print(f"| {n:,} | {name} | {t:.3f} | {mem:.0f} | {peer} | {ratio} |")


if __name__ == "__main__":
    main()
