"""Benchmark: event-study inference (wild bootstrap with sup-t band, randomization
inference) speed, and the coverage of the bootstrap intervals and band.

Run from the repository root::

    python benchmarks/bench_es_inference.py                 # speed + coverage (500 reps)
    python benchmarks/bench_es_inference.py --skip-coverage # speed only
    python benchmarks/bench_es_inference.py --reps 7 --mc-reps 200
    python benchmarks/bench_es_inference.py --skip-speed --design heterogeneous

Speed (same run; JIT warmed first; medians of ``--reps`` repetitions, wall and
CPU seconds): ``sl.simulate.paper_panel(seed=0)``, dynamic TWFE event study of
``NQPF`` with window (-5, 5) (10 coefficients, unit and year FE, CRV1 by firm,
G = 1,780, year FE not nested in the clusters so it enters the bootstrap as
dummies); ``sl.wildboot(es, draws=9999)``: WCR p-values and test-inversion
intervals of the 10 coefficients and the 2 aggregates, sup-t band and bootstrap
pre-trend test from the same draws; ``sl.placebo(es, draws=1000)``; and the
same for the Sun-Abraham and imputation event studies (the imputation
bootstrap: WCR and WCU, 10 coefficients and the 4 aggregates with intervals).

Coverage, default design ``--design few-treated`` (Monte Carlo, ``--mc-reps`` panels of
:func:`few_treated_panel`): 50 units = 50 clusters, 10 periods, ``--n-treated`` (10) of
them adopting (half in period 4, half in 7), unit-level heterogeneous effects growing
with exposure, AR(1) errors with skewed innovations three times larger for the treated
units. Few treated clusters with noisier, skewed scores are where CRV1 and the GMM
variance are too small (the t(G-1) reference counts 49 degrees of freedom where the
variance rests on about 10 clusters). Sun-Abraham and imputation event studies with every
relative period (window (-6, 6), no binning); truth: the realized simple ATT and event-
time path. Reported as below.

Coverage, ``--design heterogeneous``: ``sl.simulate.dgp("heterogeneous_dynamic",
n_units=50, never_share=0.3, ar1=0.5, effect_sd=--effect-sd)`` (50 units = 50 clusters,
cohorts 3/5/7 of 10 periods, effects growing with exposure and differing by
cohort, AR(1) errors). Sun-Abraham and imputation event studies with every
relative period estimated (window (-6, 7), no binning); the truth is the
realized sample estimands (``Truth.att``, ``Truth.event_time``), which the
simple aggregates and the Sun-Abraham event-time coefficients estimate without
bias. Reported: coverage of the simple ATT by the analytic t(G-1) intervals and
by the bootstrap intervals (999 Rademacher draws; WCR test inversion for
both, and WCU percentile-t for imputation), and coverage of the whole
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
    im = sl.event_study(df, y="NQPF", unit="firm", time="year", cohort="first_year", window=(-5, 5),
                        method="imputation")
    sl.placebo(im, draws=50, seed=1)
    w, c, r = timeit(lambda: sl.placebo(im, draws=1000, seed=1), reps)
    rows.append(f"| placebo, imputation event study (exact refits), 1,000 draws | {w:.3f} s | {c:.3f} s | |")
    sl.wildboot(im, draws=999, seed=1)
    for null, label in ((True, "WCR"), (False, "WCU")):
        w, c, r = timeit(lambda: sl.wildboot(im, draws=9999, seed=1, impose_null=null), reps)
        rows.append(f"| wildboot, imputation event study, {label}, 9,999 draws, 10 coefficients + 4 aggregates with "
                    f"intervals + band (G = {r.n_bootclusters:,}) | {w:.3f} s | {c:.3f} s | |")
    return rows


def coverage(n_reps: int, draws: int, effect_sd: float) -> list[str]:
    d = sl.simulate.dgp("heterogeneous_dynamic", n_units=50, never_share=0.3, ar1=0.5, effect_sd=effect_sd)
    hits = {"crv1": [], "boot": [], "imp_crv1": [], "imp_boot": [], "imp_wcu": [], "band": [], "pointwise": [],
            "width_ratio": []}
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
        ilo, ihi = sl.wildboot(ei, draws=draws, seed=rep, impose_null=False).aggregate("simple").confint
        hits["imp_wcu"].append(ilo <= truth.att <= ihi)
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
              "imp_boot": "imputation simple ATT, WCR bootstrap interval",
              "imp_wcu": "imputation simple ATT, WCU bootstrap interval (percentile-t)",
              "band": "whole post path, 95% sup-t band", "pointwise": "whole post path, pointwise CRV1 intervals"}
    for key, label in labels.items():
        p = float(np.mean(hits[key]))
        rows.append(f"| {label} | {p:.3f} | {np.sqrt(p * (1 - p) / n_reps):.3f} |")
    rows.append(f"| (bootstrap / CRV1 interval width, median) | {np.median(hits['width_ratio']):.3f} | |")
    rows.append(f"\n{n_reps} panels, {draws} draws each, {secs:.0f} s.")
    return rows


def few_treated_panel(seed: int, n_units: int = 50, n_treated: int = 10, n_periods: int = 10,
                      treated_sd: float = 3.0, ar1: float = 0.5, effect_sd: float = 0.5):
    """Few treated clusters: ``n_treated`` of ``n_units`` units adopt (half in period 4,
    half in 7), effects ``1 + 0.2 (t - g) + eta_i`` (``eta_i ~ N(0, effect_sd)``),
    AR(1) errors with skewed innovations (centred chi-squared(2), unit variance) and
    ``treated_sd`` times the sd for the treated units. Returns the frame, the realized
    simple ATT (mean effect over treated rows) and the realized event-time path."""
    import polars as pl

    rng = np.random.default_rng(seed)
    coh = np.zeros(n_units, dtype=np.int64)
    tr = rng.choice(n_units, n_treated, replace=False)
    coh[tr[: n_treated // 2]], coh[tr[n_treated // 2:]] = 4, 7
    unit = np.repeat(np.arange(n_units), n_periods)
    t = np.tile(np.arange(1, n_periods + 1), n_units)
    g = coh[unit]
    D = (g > 0) & (t >= g)
    innov = (rng.chisquare(2, size=(n_units, n_periods)) - 2.0) / 2.0
    u = np.empty((n_units, n_periods))
    u[:, 0] = innov[:, 0]
    for j in range(1, n_periods):
        u[:, j] = ar1 * u[:, j - 1] + np.sqrt(1.0 - ar1**2) * innov[:, j]
    u *= np.where(coh > 0, treated_sd, 1.0)[:, None]
    eta = rng.normal(0.0, effect_sd, n_units)
    tau = D * (1.0 + 0.2 * np.maximum(t - g, 0) + eta[unit])
    y = rng.normal(size=n_units)[unit] + 0.3 * t + tau + u.ravel()
    e = (t - g)[D]
    path = {int(k): float(tau[D][e == k].mean()) for k in np.unique(e)}
    return pl.DataFrame({"unit": unit, "time": t, "cohort": g, "y": y}), float(tau[D].mean()), path


def coverage_few_treated(n_reps: int, draws: int, n_treated: int) -> list[str]:
    """Coverage of the simple ATT (Sun-Abraham, imputation) by CRV1 / GMM t(G-1)
    intervals and by the bootstrap ones, and of the post path by the sup-t band,
    on :func:`few_treated_panel` (truth: the realized sample estimands)."""
    keys = ("crv1", "boot", "imp_crv1", "imp_boot", "imp_wcu", "band", "pointwise")
    hits: dict[str, list[bool]] = {k: [] for k in keys}
    t0 = time.perf_counter()
    for rep in range(n_reps):
        frame, att, path = few_treated_panel(rep, n_treated=n_treated)
        kw = dict(y="y", unit="unit", time="time", cohort="cohort", window=(-6, 6), bin_endpoints=False)
        es = sl.event_study(frame, method="sunab", **kw)
        a = es.aggregate("simple").tidy()
        hits["crv1"].append(a["ci_low"][0] <= att <= a["ci_high"][0])
        r = sl.wildboot(es, draws=draws, seed=rep)
        lo, hi = r.aggregate("simple").confint
        hits["boot"].append(lo <= att <= hi)
        post = es.rel_time >= 0
        true_path = np.array([path[int(k)] for k in es.rel_time[post]])
        hits["band"].append(bool(np.all((r.band_low[post] <= true_path) & (true_path <= r.band_high[post]))))
        tab = es.tidy()
        hits["pointwise"].append(bool(np.all((tab["ci_low"].to_numpy()[post] <= true_path)
                                             & (true_path <= tab["ci_high"].to_numpy()[post]))))
        ei = sl.event_study(frame, method="imputation", **kw)
        it = ei.aggregate("simple").tidy()
        hits["imp_crv1"].append(it["ci_low"][0] <= att <= it["ci_high"][0])
        lo, hi = sl.wildboot(ei, draws=draws, seed=rep).aggregate("simple").confint
        hits["imp_boot"].append(lo <= att <= hi)
        lo, hi = sl.wildboot(ei, draws=draws, seed=rep, impose_null=False).aggregate("simple").confint
        hits["imp_wcu"].append(lo <= att <= hi)
    secs = time.perf_counter() - t0
    labels = {"crv1": "Sun-Abraham simple ATT, CRV1 t(G-1) interval",
              "boot": "Sun-Abraham simple ATT, WCR bootstrap interval",
              "imp_crv1": "imputation simple ATT, GMM t(G-1) interval",
              "imp_boot": "imputation simple ATT, WCR bootstrap interval",
              "imp_wcu": "imputation simple ATT, WCU bootstrap interval (percentile-t)",
              "band": "whole post path, 95% sup-t band (Sun-Abraham, WCU)",
              "pointwise": "whole post path, pointwise CRV1 intervals"}
    rows = []
    for key, label in labels.items():
        p = float(np.mean(hits[key]))
        rows.append(f"| {label} | {p:.3f} | {np.sqrt(p * (1 - p) / n_reps):.3f} |")
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
    ap.add_argument("--design", choices=("heterogeneous", "few-treated"), default="few-treated",
                    help="coverage DGP: sl.simulate's heterogeneous_dynamic, or few_treated_panel")
    ap.add_argument("--n-treated", type=int, default=10, help="treated units of the few-treated design")
    a = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    if not a.skip_speed:
        print("\n| case | wall (median) | CPU (median) | target |\n|---|---:|---:|---:|")
        print("\n".join(speed(a.reps)))
    if not a.skip_coverage and a.design == "heterogeneous":
        print(f"\n| 95% coverage (50 clusters, effect_sd {a.effect_sd:g}) | coverage | MC s.e. |"
              "\n|---|---:|---:|")
        print("\n".join(coverage(a.mc_reps, a.mc_draws, a.effect_sd)))
    elif not a.skip_coverage:
        print(f"\n| 95% coverage (50 clusters, {a.n_treated} treated, skewed errors 3x larger for the treated) "
              "| coverage | MC s.e. |\n|---|---:|---:|")
        print("\n".join(coverage_few_treated(a.mc_reps, a.mc_draws, a.n_treated)))
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
