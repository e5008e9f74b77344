"""Size of the placebo test under the sharp null.

500 simulated staggered panels with no treatment effect (``effect=0``,
``sl.simulate.staggered(200, 10, n_controls=2)``, unbalanced with 10% of rows
dropped, adoption times from the ``cohort`` column); on each, ``placebo(..., scheme="units+timing", stat="t")`` with 199
draws (199 keeps (1 + count) / (1 + draws) on a grid where 0.05 is exact:
p <= 0.05 iff count <= 9). Under the sharp null the true assignment is
exchangeable with the placebo ones when the actual adoption pattern is itself
drawn like the scheme draws (units at random, adoption times i.i.d. from the
cohort distribution), so the rejection rate at 5% must be 0.05 up to Monte
Carlo error: the script prints it with its binomial standard error and an
exact Clopper-Pearson 95% interval, the rejection rates at 1% and 10%, and,
as a control for the luck of the panel set, the analytic CRV1 t-test's
rejection rate on the same panels (``--seed-offset`` picks another set).

Usage: ``python benchmarks/validate_placebo_size.py [--panels 500] [--draws 199]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import staggerlab as sl
from staggerlab.inference.resampling.placebo import clopper_pearson, placebo


def one_panel(seed: int, draws: int, scheme: str, drop: float, cohort: str | None) -> tuple[float, float]:
    """Placebo p-value and, as a control on the same panel, the analytic CRV1 p-value."""
    df = sl.simulate.staggered(200, 10, n_controls=2, effect=0.0, drop_share=drop, seed=seed)
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})
    ri = placebo(fit, draws=draws, scheme=scheme, cohort=cohort, seed=10_000_000 + seed)
    return ri.pvalue, fit.pvalue()["treat"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--panels", type=int, default=500)
    ap.add_argument("--draws", type=int, default=199)
    ap.add_argument("--scheme", default="units+timing")
    ap.add_argument("--seed-offset", type=int, default=0, help="panel seeds are offset + 0..panels-1")
    ap.add_argument("--drop", type=float, default=0.1, help="share of rows dropped (unbalanced panels)")
    ap.add_argument("--infer-cohort", action="store_true",
                    help="infer adoption from the observed treatment rows instead of the 'cohort' column")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cohort = None if args.infer_cohort else "cohort"
    both = np.array([one_panel(args.seed_offset + s, args.draws, args.scheme, args.drop, cohort)
                     for s in range(args.panels)])
    p, p_an = both[:, 0], both[:, 1]
    dt = time.perf_counter() - t0
    rej = int((p <= 0.05).sum())
    rate = rej / p.size
    se = np.sqrt(0.05 * 0.95 / p.size)
    lo, hi = clopper_pearson(rej, p.size)
    print(f"{args.panels} panels x {args.draws} draws, scheme {args.scheme!r}, drop_share {args.drop}, "
          f"adoption from {'treatment rows' if args.infer_cohort else 'cohort column'}, {dt:.1f} s")
    print("\n| nominal | placebo rejection | MC s.e. | 95% CP interval | within 2 s.e. | analytic CRV1 t-test (same panels) |")
    print("|---:|---:|---:|---:|:---:|---:|")
    print(f"| 0.05 | {rate:.3f} ({rej}/{p.size}) | {se:.4f} | [{lo:.3f}, {hi:.3f}] | "
          f"{'yes' if abs(rate - 0.05) <= 2 * se else 'NO'} | {(p_an <= 0.05).mean():.3f} |")
    for a in (0.01, 0.10):
        r = float((p <= a).mean())
        print(f"| {a:.2f} | {r:.3f} | {np.sqrt(a * (1 - a) / p.size):.4f} | | | {(p_an <= a).mean():.3f} |")


if __name__ == "__main__":
    main()
