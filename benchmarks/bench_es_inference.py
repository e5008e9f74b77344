"""Benchmark: event-study inference (wild bootstrap with sup-t band, randomization
inference) speed, and the coverage of the bootstrap intervals and band.

Run from the repository root::

    python benchmarks/bench_es_inference.py                 # speed + coverage (500 reps)
    python benchmarks/bench_es_inference.py --skip-coverage # speed only
    python benchmarks/bench_es_inference.py --reps 7 --mc-reps 200

Speed (same run; JIT warmed first; medians of ``--reps`` repetitions, wall and
CPU seconds): ``sl.simulate.paper_panel(seed=0)``, dynamic TWFE event study of
``NQPF`` with window (-5, 5) (10 coefficients, unit and year FE, CRV1 by firm,
G = 1,780, year FE not nested in the clusters so it enters the bootstrap as
dummies); ``sl.wildboot(es, draws=9999)``: WCR p-values and test-inversion
intervals of the 10 coefficients and the 2 aggregates, sup-t band and bootstrap
pre-trend test from the same draws; ``sl.placebo(es, draws=1000)``; and the
same for the Sun-Abraham event study.

Coverage (Monte Carlo, ``--mc-reps`` panels): ``sl.simulate.dgp("heterogeneous_dynamic",
n_units=50, never_share=0.3, ar1=0.5, effect_sd=--effect-sd)`` (50 units = 50 clusters,
cohorts 3/5/7 of 10 periods, effects growing with exposure and differing by
cohort, AR(1) errors). Sun-Abraham and imputation event studies with every
relative period estimated (window (-6, 7), no binning); the truth is the
realized sample estimands (``Truth.att``, ``Truth.event_time``), which the
simple aggregates and the Sun-Abraham event-time coefficients estimate without
bias. Reported: coverage of the simple ATT by the analytic t(G-1) intervals and
by the bootstrap intervals (999 Rademacher draws; WCR test inversion for
Sun-Abraham, WCU percentile-t for imputation), and coverage of the whole
post-period path by the Sun-Abraham 95% sup-t band (and, for contrast, by the
pointwise CRV1 intervals), with Monte Carlo standard errors.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

import numpy as np

import staggerlab as sl


def timeit(f: Callable[[], object], reps: int) -> tuple[float, float, object]:
    wall, cpu, out = [], [], None
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = f()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def speed(reps: int) -> list[str]:
    df = sl.simulate.paper_panel(seed=0)
    es = sl.event_study(df, y="NQPF", unit="firm", time="year", cohort="first_year", window=(-5, 5))
    assert es.rel_time.size == 10
    sl.wildboot(es, draws=999, seed=1)  # warm
    rows = []
    w, c, r = timeit(lambda: sl.wildboot(es, draws=9999, seed=1), reps)
    rows.append(f"| wildboot, 10-coefficient TWFE event study, 9,999 draws, intervals + band + aggregates "
                f"(G = {r.n_bootclusters:,}) | {w:.3f} s | {c:.3f} s | <= 0.5 s |")
    w, c, r = timeit(lambda: sl.wildboot(es, draws=9999, seed=1, confint=False), reps)
    rows.append(f"| same, no intervals (p-values, band, pre-trend test) | {w:.3f} s | {c:.3f} s | |")
    sl.placebo(es, draws=50, seed=1)  # warm
    w, c, r = timeit(lambda: sl.placebo(es, draws=1000, seed=1), reps)
    rows.append(f"| placebo (randomization inference), same event study, 1,000 draws | {w:.3f} s | {c:.3f} s "
                "| <= 0.5 s |")
    sa = sl.event_study(df, y="NQPF", unit="firm", time="year", cohort="first_year", window=(-5, 5),
                        method="sunab")
    sl.placebo(sa, draws=50, seed=1)
    w, c, r = timeit(lambda: sl.placebo(sa, draws=1000, seed=1), reps)
    rows.append(f"| placebo, Sun-Abraham event study (40 cohort x event-time cells), 1,000 draws | {w:.3f} s | {c:.3f} s "
                "| |")
    return rows


def coverage(n_reps: int, draws: int, effect_sd: float) -> list[str]:
    d = sl.simulate.dgp("heterogeneous_dynamic", n_units=50, never_share=0.3, ar1=0.5, effect_sd=effect_sd)
    hits = {"crv1": [], "boot": [], "imp_crv1": [], "imp_boot": [], "band": [], "pointwise": [], "width_ratio": []}
    t0 = time.perf_counter()
    for rep in range(n_reps):
        frame, truth = d.draw(seed=rep)
        es = sl.event_study(frame, y="y", unit="unit", time="time", cohort="cohort", window=(-6, 7),
                            method="sunab")
        r = sl.wildboot(es, draws=draws, seed=rep)
        agg = es.aggregate("simple")
        lo, hi = agg.tidy()["ci_low"][0], agg.tidy()["ci_high"][0]
        hits["crv1"].append(lo <= truth.att <= hi)
        blo, bhi = r.aggregate("simple").confint
        hits["boot"].append(blo <= truth.att <= bhi)
        hits["width_ratio"].append((bhi - blo) / (hi - lo))
        ei = sl.event_study(frame, y="y", unit="unit", time="time", cohort="cohort", window=(-6, 7),
                            method="imputation")
        ri = sl.wildboot(ei, draws=draws, seed=rep)
        it = ei.aggregate("simple").tidy()
        hits["imp_crv1"].append(it["ci_low"][0] <= truth.att <= it["ci_high"][0])
        ilo, ihi = ri.aggregate("simple").confint
        hits["imp_boot"].append(ilo <= truth.att <= ihi)
        et = dict(zip(truth.event_time["rel_time"].to_list(), truth.event_time["att"].to_list()))
        post = es.rel_time >= 0
        true_path = np.array([et[int(t)] for t in es.rel_time[post]])
        hits["band"].append(bool(np.all((r.band_low[post] <= true_path) & (true_path <= r.band_high[post]))))
        tab = es.tidy()
        hits["pointwise"].append(bool(np.all((tab["ci_low"].to_numpy()[post] <= true_path)
                                             & (true_path <= tab["ci_high"].to_numpy()[post]))))
    secs = time.perf_counter() - t0
    rows = []
    labels = {"crv1": "Sun-Abraham simple ATT, CRV1 t(G-1) interval",
              "boot": "Sun-Abraham simple ATT, WCR bootstrap interval",
              "imp_crv1": "imputation simple ATT, GMM t(G-1) interval",
              "imp_boot": "imputation simple ATT, WCU bootstrap interval (percentile-t)",
              "band": "whole post path, 95% sup-t band", "pointwise": "whole post path, pointwise CRV1 intervals"}
    for key, label in labels.items():
        p = float(np.mean(hits[key]))
        rows.append(f"| {label} | {p:.3f} | {np.sqrt(p * (1 - p) / n_reps):.3f} |")
    rows.append(f"| (bootstrap / CRV1 interval width, median) | {np.median(hits['width_ratio']):.3f} | |")
    rows.append(f"\n{n_reps} panels, {draws} draws each, {secs:.0f} s.")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mc-reps", type=int, default=500)
    ap.add_argument("--mc-draws", type=int, default=999)
    ap.add_argument("--effect-sd", type=float, default=0.3, help="sd of the unit-level effects")
    ap.add_argument("--skip-coverage", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    a = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    if not a.skip_speed:
        print("\n| case | wall (median) | CPU (median) | target |\n|---|---:|---:|---:|")
        print("\n".join(speed(a.reps)))
    if not a.skip_coverage:
        print(f"\n| 95% coverage (50 clusters, effect_sd {a.effect_sd:g}) | coverage | MC s.e. |"
              "\n|---|---:|---:|")
        print("\n".join(coverage(a.mc_reps, a.mc_draws, a.effect_sd)))
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
