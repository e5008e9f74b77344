"""Callaway-Sant'Anna with 8 covariates (doubly robust): staggerlab vs csdid (0.4.3).

Run:  python benchmarks/bench_cs_covariates.py [--reps 5] [--copies 20]

Data: ``sl.simulate.paper_panel(seed=0)`` (the study's shape), outcome NQPF, the
battery's 8 controls (Size, Lev, Roa, Cash, Age, Mb, Top1, Dual). Callaway-Sant'Anna
with covariates needs a balanced panel (R did and csdid drop the other units by
default), so both get the 705 firms observed in all 12 years (8,460 rows); the large
panel stacks ``--copies`` copies of those firms under new ids (20 copies: 169,200
rows). Both compute ATT(g,t) with ``est_method="dr"``, never-treated controls,
analytic influence-function SEs, then the four aggregations. Imports and JIT are
warmed first; medians of ``--reps`` repetitions (fewer for csdid runs over 10 s).
staggerlab runs its covariate 2x2s on one BLAS thread; csdid is timed as installed
(OpenBLAS's default threads) and with one BLAS thread (``threadpoolctl``), since on a
busy 2-core machine a second BLAS thread can make small products many times slower.
Prints a Markdown table and the largest difference of the overall ATTs and SEs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
import warnings

import numpy as np
import polars as pl

import staggerlab as sl
from staggerlab.inference.did.cs import cs
from staggerlab.panels.simulate import PAPER_CONTROLS

KINDS = ("simple", "dynamic", "group", "calendar")


def balanced_study_panel() -> pl.DataFrame:
    df = sl.simulate.paper_panel(seed=0)
    n_years = df["year"].n_unique()
    full = df.group_by("firm").len().filter(pl.col("len") == n_years)["firm"]
    return df.filter(pl.col("firm").is_in(full.implode())).select(
        "firm", "year", "first_year", "NQPF", *PAPER_CONTROLS).sort("firm", "year")


def replicate(df: pl.DataFrame, copies: int) -> pl.DataFrame:
    # integer firm ids, offset per copy
    step = int(df["firm"].max()) + 1
    return pl.concat([df.with_columns(pl.col("firm") + k * step) for k in range(copies)])


def run_staggerlab(df):
    res = cs(df, y="NQPF", unit="firm", time="year", cohort="first_year", controls=PAPER_CONTROLS,
             est_method="dr", window=(-1000, 1000))  # all event times, as csdid
    return [(res.aggregate(k).estimate, res.aggregate(k).se) for k in KINDS]


def run_csdid(pdf, blas_threads=None):
    from csdid.att_gt import ATTgt
    from threadpoolctl import threadpool_limits

    with (warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()),
          threadpool_limits(blas_threads, user_api="blas")):
        warnings.simplefilter("ignore")
        a = ATTgt(yname="NQPF", gname="first_year", idname="firm_id", tname="year", data=pdf,
                  control_group="nevertreated", xformla="NQPF~" + "+".join(PAPER_CONTROLS))
        r = a.fit(est_method="dr", base_period="varying", bstrap=False)
        out = []
        for k in KINDS:
            atte = r.aggte(typec=k, bstrap=False).atte
            out.append((atte["overall_att"], atte["overall_se"]))
    return out


def timed(fn, reps, slow_after=10.0):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > slow_after and len(times) >= 3:
            break
    return statistics.median(times), len(times), out


def for_csdid(df: pl.DataFrame):
    # csdid needs a numeric unit id
    return df.with_columns(pl.col("firm").rank("dense").cast(pl.Int64).alias("firm_id")).to_pandas()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--copies", type=int, default=20)
    args = ap.parse_args()
    study = balanced_study_panel()
    run_staggerlab(study)  # warm imports / JIT
    run_csdid(for_csdid(study))
    rows = []
    for label, df in (("study (balanced firms)", study), (f"{args.copies} copies", replicate(study, args.copies))):
        pdf = for_csdid(df)
        t_sl, r_sl, mine = timed(lambda: run_staggerlab(df), args.reps)
        t_cs, r_cs, ref = timed(lambda: run_csdid(pdf), args.reps)
        t_c1, r_c1, _ = timed(lambda: run_csdid(pdf, 1), args.reps)
        diff = float(np.max(np.abs(np.asarray(mine) - np.asarray(ref))))
        rows.append((label, df.height, t_sl, r_sl, t_cs, r_cs, t_c1, r_c1, diff))
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    print("| panel | rows | staggerlab cs dr (s) | csdid 0.4.3 dr (s) | speed-up | csdid, 1 BLAS thread (s) | speed-up "
          "| max abs diff (overall ATTs, SEs) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, n, a, ra, b, rb, c, rc, d in rows:
        print(f"| {label} | {n:,} | {a:.3f} (n={ra}) | {b:.2f} (n={rb}) | {b / a:.1f}x | {c:.2f} (n={rc}) | "
              f"{c / a:.1f}x | {d:.1e} |")


if __name__ == "__main__":
    main()
