"""LP-DiD, stacked DiD and extended TWFE: speed against pyfixest's ``lpdid`` at
the study's size, and a Monte Carlo of every staggered estimator.

1. Speed (medians of ``--reps`` runs, same process, warmed first) on
   ``sl.simulate.paper_panel(seed=0)`` (15,530 rows), outcome ``NQPF``,
   window (-4, 4): staggerlab's ``event_study(method="lpdid")`` plus its pooled
   estimate (``aggregate("simple")``) against pyfixest's ``lpdid`` with
   ``att=False`` plus ``att=True`` (same regressions; the estimates are checked
   equal). Stacked DiD and ETWFE are timed for reference (no peer).
2. Monte Carlo (``--mc-reps`` replications, ``n_jobs=2``) of every built-in
   staggered estimator on ``dgp("heterogeneous_dynamic")``: bias, SD and
   coverage against the simple ATT.

Run: ``python benchmarks/bench_new_estimators.py [--reps 5] [--mc-reps 500]
[--skip-mc]``. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import polars as pl

import staggerlab as sl
from staggerlab._seed import block_seed
from staggerlab.inference.did.event_study import event_study
from staggerlab.inference.studies.montecarlo import montecarlo
from staggerlab.panels.dgp import dgp

WINDOW = (-4, 4)


def median_time(fn, reps: int) -> tuple[float, object]:
    fn()  # warm-up (numba kernels, imports)
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def speed(reps: int) -> None:
    from pyfixest.did.estimation import lpdid as pf_lpdid

    df = sl.simulate.paper_panel(seed=0)
    pdf = df.select("firm", "year", "first_year", "NQPF").to_pandas()
    kw = dict(y="NQPF", unit="firm", time="year", cohort="first_year", window=WINDOW)

    def ours():
        es = event_study(df, method="lpdid", **kw)
        return es, es.aggregate("simple")

    def peer():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = pf_lpdid(pdf, yname="NQPF", idname="firm", tname="year", gname="first_year", att=False,
                         pre_window=-WINDOW[0], post_window=WINDOW[1]).tidy()
            b = pf_lpdid(pdf, yname="NQPF", idname="firm", tname="year", gname="first_year", att=True,
                         pre_window=-WINDOW[0], post_window=WINDOW[1]).tidy()
        return a, b

    t_ours, (es, pooled) = median_time(ours, reps)
    t_pf, (a, b) = median_time(peer, reps)
    diff = max(np.abs(es.coef - a["Estimate"].to_numpy()).max(), abs(pooled.estimate - b["Estimate"].iloc[0]))
    t_st, _ = median_time(lambda: event_study(df, method="stacked", **kw), reps)
    t_et, _ = median_time(lambda: event_study(df, method="etwfe", **kw), reps)
    print(f"rows {df.height}, load {os.getloadavg()[0]:.1f}, max |staggerlab - pyfixest| = {diff:.1e}\n")
    print("| estimator | staggerlab | pyfixest | speed-up |\n|---|---:|---:|---:|")
    print(f"| LP-DiD, 8 horizons + pooled | {t_ours:.3f} s | {t_pf:.3f} s | {t_pf / t_ours:.1f}x |")
    print(f"| stacked DiD (corrective weights) | {t_st:.3f} s | | |")
    print(f"| extended TWFE | {t_et:.3f} s | | |")


def mc(reps: int) -> None:
    names = ["twfe", "event_study", "sunab", "imputation", "cs", "lpdid", "lpdid_rw", "stacked", "etwfe"]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = montecarlo(dgp("heterogeneous_dynamic"), names, reps=reps, seed=0, n_jobs=2)
    secs = time.perf_counter() - t0
    s = res.summary()
    print(f"\n{reps} replications in {secs:.0f} s (load {os.getloadavg()[0]:.1f})\n")
    print("| estimator | mean | truth | bias | sd | se / sd | coverage | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in s.iter_rows(named=True):
        print(f"| {r['estimator']} | {r['mean']:.3f} | {r['truth']:.3f} | {r['bias']:+.3f} ({r['bias_mcse']:.3f}) | "
              f"{r['sd']:.3f} | {r['se_ratio']:.2f} | {r['coverage']:.3f} | {r['failed']} |")
    # the stacked estimator's own estimand: the trimmed aggregate ATT averaged over
    # event times 0..3 (its window (-2, 3); every cohort fits that window here)
    d = dgp("heterogeneous_dynamic")
    st = res.replications().filter(pl.col("estimator") == "stacked").sort("rep")
    own = []
    for r in st["rep"].to_list():
        _, truth = d.draw(block_seed(0, r))
        et = truth.event_time.filter(pl.col("rel_time").is_between(0, 3))
        own.append(float((et["att"] * et["n"]).sum() / et["n"].sum()))
    own = np.asarray(own)
    est, se = st["estimate"].to_numpy(), st["se"].to_numpy()
    err = est - own
    cov = float(np.mean(np.abs(err) <= 1.959964 * se))
    print(f"| stacked vs its estimand (event times 0..3) | {est.mean():.3f} | {own.mean():.3f} | "
          f"{err.mean():+.3f} ({err.std(ddof=1) / np.sqrt(err.size):.3f}) | {est.std(ddof=1):.3f} | "
          f"{se.mean() / est.std(ddof=1):.2f} | {cov:.3f} | 0 |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mc-reps", type=int, default=500)
    ap.add_argument("--skip-mc", action="store_true")
    a = ap.parse_args()
    pl.Config.set_tbl_rows(30)
    speed(a.reps)
    if not a.skip_mc:
        mc(a.mc_reps)


if __name__ == "__main__":
    main()
