"""Monte Carlo engine vs the obvious pyfixest loop, on the paper-shaped DGP.

Times (one run each: every run is > 10 s at full size, so no medians; JIT and
worker pools are warmed first):

1. ``montecarlo(dgp("paper_panel"), ["twfe"], reps=1000)`` -- static TWFE with
   the 8 controls and CRV1 by firm (target <= 20 s on 2 cores);
2. the same with ``["twfe", "imputation", "cs"]`` (target <= 90 s);
3. the obvious loop: draw the same panels and call ``pyfixest.feols`` with
   CRV1 on each, timed on ``--pf-reps`` replications and scaled to ``--reps``
   (said so in the table); its estimates are checked against the engine's.

Run: ``python benchmarks/bench_montecarlo.py [--reps 1000] [--pf-reps 100]
[--n-jobs 2] [--skip-robust]``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from staggerlab._seed import block_seed
from staggerlab.inference.studies.montecarlo import montecarlo
from staggerlab.panels.dgp import dgp


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def pyfixest_loop(d, reps: int, seed: int = 0) -> tuple[float, np.ndarray]:
    import pyfixest as pf

    fml = "y ~ " + " + ".join(["treat", *d.covariates]) + " | unit + time"
    est = np.empty(reps)
    t0 = time.perf_counter()
    for r in range(reps):
        frame, _ = d.draw(block_seed(seed, r))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = pf.feols(fml, frame.to_pandas(), vcov={"CRV1": "unit"})
        est[r] = fit.coef()["treat"]
    return time.perf_counter() - t0, est


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--pf-reps", type=int, default=100, help="pyfixest loop replications (scaled to --reps)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--skip-robust", action="store_true", help="skip the TWFE + imputation + CS run")
    a = ap.parse_args()
    d = dgp("paper_panel")
    frame, _ = d.draw(0)
    print(f"paper_panel: {frame.height:,} rows, {d.n_units} units, {len(d.covariates)} controls; "
          f"{a.reps} replications, n_jobs={a.n_jobs}, {os.cpu_count()} cpus")

    # warm numba caches and the worker pool
    montecarlo(d, ["twfe"], reps=4, block_size=2, n_jobs=a.n_jobs, show_progress=False)
    rows = []
    t_twfe, mc = timed(lambda: montecarlo(d, ["twfe"], reps=a.reps, n_jobs=a.n_jobs, show_progress=False))
    rows.append(("staggerlab montecarlo: TWFE + CRV1", a.reps, t_twfe, "measured", "<= 20 s"))
    print(mc.summary().select("estimator", "reps", "mean", "truth", "bias", "se_ratio", "coverage"))

    t_draw, _ = timed(lambda: [d.draw(block_seed(0, r)) for r in range(a.pf_reps)])
    rows.append(("panel draws alone (serial)", a.reps, t_draw * a.reps / a.pf_reps,
                 f"scaled from {a.pf_reps}", ""))

    pyfixest_loop(d, 2)  # warm pyfixest's numba kernels
    t_pf, est_pf = pyfixest_loop(d, a.pf_reps)
    mine = mc.replications()["estimate"].to_numpy()[: a.pf_reps]
    err = float(np.max(np.abs(mine - est_pf)))
    t_pf_full = t_pf * a.reps / a.pf_reps
    rows.append(("obvious loop: draw + pyfixest feols (serial)", a.reps, t_pf_full,
                 f"scaled from {a.pf_reps}", f"max |diff| vs engine {err:.1e}"))

    if not a.skip_robust:
        ests = ["twfe", "imputation", "cs"]
        montecarlo(d, ests, reps=2, block_size=1, n_jobs=a.n_jobs, show_progress=False)
        t_rob, mc2 = timed(lambda: montecarlo(d, ests, reps=a.reps, n_jobs=a.n_jobs, show_progress=False))
        rows.append(("staggerlab montecarlo: TWFE + imputation + CS", a.reps, t_rob, "measured", "<= 90 s"))
        print(mc2.summary().select("estimator", "reps", "mean", "truth", "bias", "se_ratio", "coverage", "failed"))

    print()
    print("| run | reps | seconds | how | note |")
    print("|---|---:|---:|---|---|")
    for name, reps, sec, how, note in rows:
        print(f"| {name} | {reps} | {sec:.1f} | {how} | {note} |")
    print(f"| ratio: pyfixest loop / staggerlab TWFE | | {t_pf_full / t_twfe:.1f}x | | n_jobs={a.n_jobs} vs serial |")


if __name__ == "__main__":
    main()
