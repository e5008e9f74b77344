"""Benchmark: the wild cluster bootstrap of staggerlab vs the ``wildboottest`` package.

Run from the repository root::

    python benchmarks/bench_wildboot.py               # everything, Markdown table at the end
    python benchmarks/bench_wildboot.py --reps 7 --skip-large
    python benchmarks/bench_wildboot.py --wbt-draws 999   # quicker peer run, scaled to 9,999
    python benchmarks/bench_wildboot.py --skip-large --skip-wbt --busy --pool   # busy machine, first n_jobs=2 call

Cases
-----
1. ``sl.simulate.paper_panel(0)``: ``NQPF ~ IM + 8 controls | firm + year``,
   CRV1 by firm (~15.3k rows, 1,420 clusters), WCR with Rademacher weights,
   9,999 draws, without and with the test-inversion CI. JIT warmed first;
   medians of ``--reps`` (>= 5) repetitions; each call includes the O(N k)
   pass over the data (nothing is cached between calls).
2. ``wildboottest`` (0.3.2, ``WildboottestCL``, bootstrap type 11) in the same
   run on the FWL-demeaned data of the same fit (``fit.design.Xw``, ``fit.yw``).
   It is run once (it takes 15-60 s): its cost is mostly independent of the
   draws (a Python double loop over the G^2 cluster pairs, and a numba compile
   on every call), so timing fewer draws and scaling would mislead; with
   ``--wbt-draws`` < 9,999 the time is scaled linearly anyway (an
   overstatement, labelled as such). The demeaned-data bootstrap is not the
   same bootstrap when a fixed effect (year) is not nested in the clusters;
   it is a speed reference only.
3. 1.7M rows (85,000 units x 20 periods, unit + period FE, units nested in
   50 states of unequal size), CRV1 by state, 99,999 draws (medians of 3).
4. ``--busy``: case 1 again while one CPU-bound competitor process
   (``while True: pass``, started and killed by this script) runs; quiet and
   busy medians from the same run, and the BLAS thread count the bootstrap
   runs with.
5. ``--pool``: a fresh interpreter (numba cache warm) fits the paper panel,
   runs ``n_jobs=1`` once, then times its first and second ``n_jobs=2``
   calls (default backend, and ``backend="loky"``): the first-call overhead
   of the worker pool.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable

import numpy as np
import polars as pl
from _common import competitor  # benchmarks/, the script's folder, is on sys.path

import staggerlab as sl
from staggerlab.inference.resampling.wildboot import wildboot

FML = "NQPF ~ IM + Size + Lev + Roa + Cash + Age + Mb + Top1 + Dual | firm + year"


def timeit(f: Callable[[], object], reps: int) -> tuple[float, object]:
    ts, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


POOL_CODE = """
import time, warnings
import staggerlab as sl
from staggerlab.inference.resampling.wildboot import wildboot
warnings.simplefilter("ignore")
fit = sl.feols({fml!r}, sl.simulate.paper_panel(0), vcov={{"CRV1": "firm"}})
kw = dict(param="IM", draws=9999, seed=1)
ref = wildboot(fit, n_jobs=1, **kw)
t = []
for backend in (None, None, "loky", "loky"):
    t0 = time.perf_counter()
    r = wildboot(fit, n_jobs=2, backend=backend, **kw)
    t.append(time.perf_counter() - t0)
    assert (r.statistics == ref.statistics).all() and r.confint == ref.confint
t0 = time.perf_counter(); wildboot(fit, n_jobs=1, **kw); t1 = time.perf_counter() - t0
print(t1, *t)
"""


def pool_times() -> list[float]:
    """n_jobs=1 time, then first/second n_jobs=2 (default backend), first/second loky, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", POOL_CODE.format(fml=FML)], check=True, capture_output=True,
                         text=True).stdout.split()
    return [float(x) for x in out]


def run_wildboottest(fit, B: int) -> tuple[float, float]:
    from wildboottest.wildboottest import WildboottestCL

    d = fit.design
    R = np.zeros(d.Xw.shape[1])
    R[d.regressors.index("IM")] = 1.0
    t0 = time.perf_counter()
    wb = WildboottestCL(X=d.Xw, Y=fit.yw, cluster=d.clusters["firm"], R=R, B=B, seed=1, parallel=True)
    wb.get_scores(bootstrap_type="11", impose_null=True)
    wb.get_weights(weights_type="rademacher")
    wb.get_numer()
    wb.get_denom()
    wb.get_tboot()
    wb.get_vcov()
    wb.get_tstat()
    wb.get_pvalue(pval_type="two-tailed")
    return time.perf_counter() - t0, float(wb.pvalue)


def large_panel(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_units, T, S = 85_000, 20, 50
    share = np.exp(np.linspace(0, 3, S))  # unequal state sizes (largest ~20x smallest)
    state_of_unit = rng.choice(S, n_units, p=share / share.sum())
    unit = np.repeat(np.arange(n_units), T)
    time_ = np.tile(np.arange(T), n_units)
    state = state_of_unit[unit]
    treated_states = rng.choice(S, 10, replace=False)
    treat = (np.isin(state, treated_states) & (time_ >= 10)).astype(float)
    x1 = rng.normal(size=unit.size)
    shock = rng.normal(scale=0.3, size=(S, T))[state, time_]
    y = rng.normal(size=n_units)[unit] + 0.1 * time_ + shock + 0.5 * x1 + rng.normal(size=unit.size)
    return pl.DataFrame({"unit": unit, "time": time_, "state": state, "treat": treat, "x1": x1, "y": y})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--busy", action="store_true", help="also time case 1 with a CPU-bound competitor process")
    ap.add_argument("--pool", action="store_true", help="first-call overhead of n_jobs=2 in a fresh process")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--skip-wbt", action="store_true")
    ap.add_argument("--wbt-draws", type=int, default=9999,
                    help="draws for wildboottest (fewer: time scaled linearly to 9,999, an overstatement)")
    args = ap.parse_args()
    reps = max(5, args.reps)
    rows: list[tuple[str, str, str, str, str]] = []

    df = sl.simulate.paper_panel(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sl.feols(FML, df, vcov={"CRV1": "firm"})
    print(f"paper panel: {fit.nobs:,} rows, {fit.n_clusters:,} clusters, t(IM) = {fit.tstat()['IM']:.3f}")
    wildboot(fit, param="IM", draws=999)  # JIT warm-up (and cache load)
    t_plain, wb = timeit(lambda: wildboot(fit, param="IM", draws=9999, confint=False), reps)
    t_ci, wbc = timeit(lambda: wildboot(fit, param="IM", draws=9999, confint=True), reps)
    print(f"  staggerlab 9,999 draws: {t_plain:.3f} s (p = {wb.pvalue:.4f}); with CI {t_ci:.3f} s, "
          f"CI = [{wbc.confint[0]:.5f}, {wbc.confint[1]:.5f}] (load {os.getloadavg()[0]:.1f})")
    c0 = time.process_time()
    for _ in range(reps):
        wildboot(fit, param="IM", draws=9999, confint=True)
    print(f"  process CPU per call with CI (all threads; the work whatever the load): "
          f"{(time.process_time() - c0) / reps:.3f} s")
    busy_rows: list[str] = []
    if args.busy:
        from threadpoolctl import threadpool_info

        from staggerlab._parallel import SERIAL_BLAS

        q_plain, q_ci = t_plain, t_ci
        load_q = os.getloadavg()[0]
        with competitor():
            b_plain, _ = timeit(lambda: wildboot(fit, param="IM", draws=9999, confint=False), reps)
            b_ci, _ = timeit(lambda: wildboot(fit, param="IM", draws=9999, confint=True), reps)
            load_b = os.getloadavg()[0]
        with SERIAL_BLAS:  # what the bootstrap's products run with (it enters the same limiter)
            blas = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=0)
        busy_rows = [f"| 9,999 draws, no CI | {q_plain:.3f} (load {load_q:.1f}) | {b_plain:.3f} (load {load_b:.1f}) "
                     f"| {b_plain / q_plain:.2f}x |",
                     f"| 9,999 draws, with CI | {q_ci:.3f} | {b_ci:.3f} | {b_ci / q_ci:.2f}x |",
                     f"| BLAS threads inside wildboot: {blas} | | | |"]
    pool_rows: list[str] = []
    if args.pool:
        t1, first, second, lfirst, lsecond = pool_times()
        pool_rows = [f"| n_jobs=1 (warm, same process) | {t1:.3f} | |",
                     f"| first n_jobs=2 call (no backend: this process's chunk threads, no worker) | {first:.3f} "
                     f"| {first - t1:+.3f} |",
                     f"| second n_jobs=2 call | {second:.3f} | {second - t1:+.3f} |",
                     f"| first n_jobs=2, backend='loky' (worker processes start) | {lfirst:.3f} | {lfirst - t1:+.3f} |",
                     f"| second n_jobs=2, backend='loky' (pool reused) | {lsecond:.3f} | {lsecond - t1:+.3f} |"]

    wbt_cell, ratio_cell = "not run", ""
    if not args.skip_wbt:
        t_wbt, p_wbt = run_wildboottest(fit, args.wbt_draws)
        if args.wbt_draws == 9999:
            wbt_cell = f"{t_wbt:.1f} (one run)"
        else:  # linear scaling overstates: part of its cost does not depend on the draws
            wbt_cell = f"{t_wbt * 9999 / args.wbt_draws:.1f} (scaled from {t_wbt:.1f} s at {args.wbt_draws} draws)"
            t_wbt *= 9999 / args.wbt_draws
        print(f"  wildboottest: {wbt_cell} (p = {p_wbt:.4f})")
        ratio_cell = f"{t_wbt / t_plain:,.0f}x"
    rows.append((f"paper panel {fit.nobs:,} rows, G={fit.n_clusters:,}, 9,999 draws, no CI", f"{t_plain:.3f}",
                 "<= 0.2", wbt_cell, ratio_cell))
    rows.append(("paper panel, 9,999 draws, with test-inversion CI", f"{t_ci:.3f}", "<= 0.1 (issue #20)", "", ""))

    if not args.skip_large:
        big = large_panel()
        t0 = time.perf_counter()
        fbig = sl.feols("y ~ treat + x1 | unit + time", big, vcov={"CRV1": "state"})
        t_fit = time.perf_counter() - t0
        print(f"large panel: {fbig.nobs:,} rows, {fbig.n_clusters} clusters (feols {t_fit:.2f} s, not in the timings)")
        t_big, wbb = timeit(lambda: wildboot(fbig, param="treat", draws=99_999, confint=False), 3)
        t_bigci, wbbc = timeit(lambda: wildboot(fbig, param="treat", draws=99_999, confint=True), 3)
        print(f"  99,999 draws: {t_big:.2f} s (p = {wbb.pvalue:.4f}); with CI {t_bigci:.2f} s")
        rows.append(("1.7M rows, G=50, 99,999 draws, no CI", f"{t_big:.2f}", "< 10", "", ""))
        rows.append(("1.7M rows, G=50, 99,999 draws, with CI", f"{t_bigci:.2f}", "", "", ""))

    print()
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"medians of {reps} runs (3 for the 1.7M rows)")
    print()
    print("| case | staggerlab (s) | target (s) | wildboottest (s) | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if busy_rows:
        print("\nBusy machine (paper panel; one CPU-bound competitor process started and killed by this script; "
              f"medians of {reps}, quiet and busy in the same run):\n")
        print("| case | quiet (s) | with competitor (s) | busy / quiet |")
        print("|---|---|---|---|")
        print("\n".join(busy_rows))
    if pool_rows:
        print("\nFirst n_jobs=2 call in a fresh process (paper panel, 9,999 draws with CI; results identical to "
              "n_jobs=1, checked):\n")
        print("| call | seconds | over n_jobs=1 |")
        print("|---|---|---|")
        print("\n".join(pool_rows))
    print(f"\n(load average at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
