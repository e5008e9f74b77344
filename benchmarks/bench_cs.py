"""Callaway-Sant'Anna: staggerlab vs csdid (0.4.3) on simulated staggered panels.

Run:  python benchmarks/bench_cs.py [--reps 5] [--sizes 15000,170000]

Both compute ATT(g,t) with never-treated controls, no covariates, analytic
influence-function SEs, then the four aggregations. JIT/imports are warmed
first; medians of ``--reps`` repetitions (fewer for csdid runs over 10 s).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import staggerlab as sl
from staggerlab.inference.did.cs import cs

N_PERIODS = 12


def run_staggerlab(df):
    res = cs(df, y="y", unit="unit", time="time", cohort="cohort", window=(-1000, 1000))  # all event times, as csdid
    for kind in ("simple", "dynamic", "group", "calendar"):
        res.aggregate(kind)
    return res


def run_csdid(pdf):
    from csdid.att_gt import ATTgt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ATTgt(yname="y", gname="cohort", idname="unit", tname="time", data=pdf, control_group="nevertreated")
        r = a.fit(est_method="reg", base_period="varying", bstrap=False)
        out = [r.aggte(typec=k, bstrap=False).atte["overall_att"] for k in ("simple", "dynamic", "group", "calendar")]
    return r, out


def timed(fn, reps, slow_after=10.0):
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > slow_after and i >= 0:
            break
    return statistics.median(times), len(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", default="15000,170000")
    args = ap.parse_args()
    rows = []
    warm = sl.simulate.staggered(100, N_PERIODS, seed=0)
    run_staggerlab(warm)
    run_csdid(warm.to_pandas())
    for n_rows in (int(s) for s in args.sizes.split(",")):
        df = sl.simulate.staggered(n_rows // N_PERIODS, N_PERIODS, seed=1)
        pdf = df.to_pandas()
        t_sl, r_sl, res = timed(lambda: run_staggerlab(df), args.reps)
        t_cs, r_cs, (ref, overall) = timed(lambda: run_csdid(pdf), args.reps)
        mine = [res.aggregate(k).estimate for k in ("simple", "dynamic", "group", "calendar")]
        diff = float(np.max(np.abs(np.asarray(mine) - np.asarray(overall))))
        rows.append((df.height, t_sl, r_sl, t_cs, r_cs, t_cs / t_sl, diff))
    print("| rows | staggerlab cs (s) | csdid 0.4.3 (s) | speed-up | max abs diff (overall ATTs) |")
    print("|---:|---:|---:|---:|---:|")
    for n, a, ra, b, rb, ratio, d in rows:
        print(f"| {n:,} | {a:.3f} (n={ra}) | {b:.2f} (n={rb}) | {ratio:.0f}x | {d:.1e} |")


if __name__ == "__main__":
    main()
