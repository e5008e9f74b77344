"""Size study of the wild cluster bootstrap with few (treated) clusters.

Run from the repository root::

    python benchmarks/size_wildboot.py                  # 1,000 panels per design, 399 draws
    python benchmarks/size_wildboot.py --reps 200 --n-jobs 2

DGP (H0 true: no treatment effect). G = 20 clusters ("states") of unequal
size: the number of units per state grows geometrically from 4 to ~50
(300 units in all), 8 periods, so 2,400 rows. Outcome = unit effect + period
effect + state x period shock (sd 0.5) + unit AR(1) noise (rho 0.5, sd 1).
Treated states are drawn at random in each replication; ``treat = 1`` from
period 4 on in treated states. Model ``y ~ treat | unit + time``, CRV1 by
state (units nested in states, periods are not: the exact bootstrap keeps the
period dummies).

Designs: (a) 10 of 20 states treated; (b) 2 of 20 treated. Tests at 5%: the
CRV1 t-test (t with G-1 df), WCR and WCU (Rademacher, symmetric two-sided,
``--draws`` per panel, 399 by default to keep the run to a few minutes).
Monte Carlo standard errors are ``sqrt(r (1 - r) / reps)``. MacKinnon & Webb
(2017) find that with few treated clusters WCR under-rejects and WCU
over-rejects; the script says whether design (b) reproduces that.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import polars as pl

import staggerlab as sl
from staggerlab._parallel import run_blocks
from staggerlab._seed import block_generator, block_seed
from staggerlab.inference.resampling.wildboot import wildboot

G, T, T0, ALPHA = 20, 8, 4, 0.05
UNITS_PER_STATE = np.round(4 * (50 / 4) ** (np.arange(G) / (G - 1))).astype(int)


def panel(rng: np.random.Generator, n_treated: int) -> pl.DataFrame:
    state_of_unit = np.repeat(np.arange(G), UNITS_PER_STATE)
    n_units = state_of_unit.size
    unit = np.repeat(np.arange(n_units), T)
    t = np.tile(np.arange(T), n_units)
    state = state_of_unit[unit]
    treated = rng.choice(G, n_treated, replace=False)
    treat = (np.isin(state, treated) & (t >= T0)).astype(float)
    e = np.empty((n_units, T))
    e[:, 0] = rng.normal(size=n_units) / math.sqrt(1 - 0.25)
    for s in range(1, T):
        e[:, s] = 0.5 * e[:, s - 1] + rng.normal(size=n_units)
    y = rng.normal(size=n_units)[unit] + 0.2 * t + rng.normal(scale=0.5, size=(G, T))[state, t] + e.ravel()
    return pl.DataFrame({"unit": unit, "time": t, "state": state, "treat": treat, "y": y})


def one_design(n_treated: int, reps: int, draws: int, seed: int, n_jobs: int) -> dict[str, float]:
    def rep(r: int) -> tuple[bool, bool, bool]:
        df = panel(block_generator(seed, r), n_treated)
        fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "state"})
        bseed = block_seed(seed + 1, r)
        wcr = wildboot(fit, param="treat", draws=draws, impose_null=True, confint=False, seed=bseed)
        wcu = wildboot(fit, param="treat", draws=draws, impose_null=False, confint=False, seed=bseed)
        return fit.pvalue()["treat"] < ALPHA, wcr.pvalue < ALPHA, wcu.pvalue < ALPHA

    out = np.array(run_blocks(rep, range(reps), n_jobs=n_jobs, desc=f"{n_treated} treated"))
    return {name: float(out[:, j].mean()) for j, name in enumerate(["CRV1 t", "WCR", "WCU"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=399)
    ap.add_argument("--seed", type=int, default=2017)
    ap.add_argument("--n-jobs", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = {
        "(a) G=20, 10 treated": one_design(10, args.reps, args.draws, args.seed, args.n_jobs),
        "(b) G=20, 2 treated": one_design(2, args.reps, args.draws, args.seed + 10, args.n_jobs),
    }
    mcse = lambda r: math.sqrt(r * (1 - r) / args.reps)  # noqa: E731
    print(f"\n{args.reps} panels per design, {args.draws} bootstrap draws per panel, "
          f"{time.perf_counter() - t0:.0f} s; rejection rate at 5% (MC standard error)\n")
    print("| design | CRV1 t | WCR | WCU |")
    print("|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f} ({mcse(r[k]):.3f})" for k in ("CRV1 t", "WCR", "WCU")) + " |")
    a, b = res["(a) G=20, 10 treated"], res["(b) G=20, 2 treated"]
    within = abs(a["WCR"] - ALPHA) <= 2 * math.sqrt(ALPHA * (1 - ALPHA) / args.reps)
    print(f"\n(a) WCR within 2 MC standard errors of 0.05: {'yes' if within else 'no'}")
    under = b["WCR"] < ALPHA - 2 * math.sqrt(ALPHA * (1 - ALPHA) / args.reps)
    over = b["WCU"] > ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / args.reps)
    print(f"(b) WCR under-rejects: {'yes' if under else 'no'}; WCU over-rejects: {'yes' if over else 'no'} "
          f"-> MacKinnon & Webb (2017) {'reproduced' if under and over else 'not reproduced'}")


if __name__ == "__main__":
    main()
