"""Design-based power (``sl.power``) on the built-in panel: speed, and the ratio to
a hand-written loop around pyfixest.

Run:  python benchmarks/bench_power.py [--reps 5] [--robust-reps 1] [--loop-draws 5]

1. The TWFE power curve (CRV1 t test), 1,000 draws x 20 effect sizes (exact, no
   refits): median of ``--reps`` warm runs.
2. TWFE + imputation + Sun-Abraham + Callaway-Sant'Anna curves, 500 draws x 10 effect
   sizes: median of ``--robust-reps`` warm runs (after one small warm-up call). Each with
   its power default test (Sun-Abraham: CRV3 standard error).
3. A hand-written loop around pyfixest for the TWFE curve (re-assign with the same
   draws, add the effect, ``pf.feols``, read the t statistic): ``--loop-draws`` draws
   at all 20 sizes are timed and the per-fit time is extrapolated to 1,000 x 20
   fits (said so in the output).

The machine's load average is printed with the results (the 2-core machine is shared).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

import staggerlab as sl

SIZES_20 = np.linspace(0.0, 0.06, 20)
SIZES_10 = np.linspace(0.0, 0.06, 10)
ROBUST = ["twfe", "imputation", "sunab", "cs"]
KW = dict(y="NQPF", unit="firm", time="year", treat="IM", seed=0)


def timed(fn, reps):
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def pyfixest_loop(df, pw, n_draws):
    """Re-assign (the power run's own draws), add the effect, refit with pyfixest."""
    import pyfixest as pf

    pdf = df.to_pandas()
    firm_pos = {f: i for i, f in enumerate(pw.units.tolist())}
    cols = pdf["firm"].map(firm_pos).to_numpy()
    year = pdf["year"].to_numpy()
    A = pw.assignments
    y0 = pdf["NQPF"].to_numpy()
    t0 = time.perf_counter()
    n_fit, tstats = 0, []
    for b in range(n_draws):
        g = A[b][cols]
        D = ((g > 0) & (year >= g)).astype(float)
        pdf["_D"] = D
        for delta in SIZES_20:
            pdf["_y"] = y0 + delta * D
            fit = pf.feols("_y ~ _D | firm + year", data=pdf, vcov={"CRV1": "firm"})
            tstats.append(float(fit.tstat()["_D"]))
            n_fit += 1
    return (time.perf_counter() - t0) / n_fit, np.array(tstats).reshape(n_draws, -1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--robust-reps", type=int, default=1)
    ap.add_argument("--loop-draws", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    df = sl.simulate.paper_panel(seed=0)
    load0 = os.getloadavg()
    # warm-up: JIT caches and imports
    sl.power(df, **KW, draws=50, sizes=SIZES_20)
    sl.power(df, **KW, draws=25, sizes=SIZES_10, estimators=ROBUST)

    t_twfe, pw = timed(lambda: sl.power(df, **KW, draws=1000, sizes=SIZES_20), args.reps)
    t_rob, rob = timed(lambda: sl.power(df, **KW, draws=500, sizes=SIZES_10, estimators=ROBUST), args.robust_reps)
    per_fit, t_pf = pyfixest_loop(df, pw, args.loop_draws)
    t_loop = per_fit * 1000 * SIZES_20.size
    diff = float(np.max(np.abs(t_pf - pw.tstats["twfe"][: args.loop_draws])))
    load1 = os.getloadavg()

    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (1 min); {os.cpu_count()} cores\n")
    print("| run | draws x sizes | median time |")
    print("|---|---:|---:|")
    print(f"| TWFE power curve, exact (`sl.power`) | 1,000 x 20 | {t_twfe:.3f} s |")
    print(f"| TWFE + imputation + Sun-Abraham + CS (`sl.power`) | 500 x 10 | {t_rob:.1f} s |")
    print(f"| hand-written loop around pyfixest, TWFE curve (extrapolated from {args.loop_draws} draws x 20 sizes, "
          f"{per_fit * 1e3:.1f} ms per fit) | 1,000 x 20 | {t_loop:.0f} s |")
    print(f"\nratio pyfixest loop / sl.power TWFE curve: {t_loop / t_twfe:,.0f}x; "
          f"largest |t| difference on the looped draws: {diff:.1e}")
    modes = dict(zip(rob.tidy()["estimator"].to_list(), rob.tidy()["method"].to_list()))
    print("\nhow each curve was computed:", modes)
    print("\nsize at zero effect and MDE at 80% power:")
    for name in rob.estimators:
        s, se = rob.size(name)
        try:
            m = rob.mde(name)
            mde = f"{m.estimate:.4f} [{m.low:.4f}, {m.high:.4f}]"
        except sl.errors.PowerError as err:
            mde = str(err)
        print(f"  {name:<12} size {s:.3f} (MC s.e. {se:.3f}); MDE {mde}")


if __name__ == "__main__":
    main()
