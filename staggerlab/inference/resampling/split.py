"""Heterogeneity by a unit-level grouping: split-sample coefficients, the
permutation ("empirical p-value") test of their difference, and the pooled
interaction model.

The permutation test reshuffles the group labels across units and refits
both subsamples each draw, exactly, from per-unit sufficient statistics
computed once (the per-unit rows of the shared unit + period within
solver, :class:`~staggerlab.inference.regression.within.UnitPeriodWithin`): a draw costs one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from ..._parallel import run_blocks
from ..._seed import SeedLike, block_generator, resolve_entropy
from ...errors import PanelError, TreatmentError
from ...panels.panel import check_columns, factorize_column, finite_mask, fresh_name, to_polars
from ..regression.feols import Feols, feols
from ..regression.formula import Formula, quote
from ..regression.rank import psd_pinv
from ..regression.within import UnitPeriodWithin
from ..results import Result

__all__ = ["split_difference", "SplitDifferenceResult"]

_BLOCK = 100


@dataclass(eq=False)
class SplitDifferenceResult(Result):
    """Group coefficients, their difference and two tests of it."""

    group: str
    param: str
    levels: tuple[Any, Any]
    fits: dict[Any, Feols]
    difference: float
    statistics: np.ndarray
    pvalue: float
    interaction: Feols

    @property
    def interaction_term(self) -> str:
        """Name of the interaction coefficient in the pooled model."""
        return f"{self.param}_x_{self.group}"

    def tidy(self) -> pl.DataFrame:
        """Rows: each group's coefficient, the difference (permutation p) and the interaction."""
        rows = []
        for lev, f in self.fits.items():
            t = f.tidy().filter(pl.col("term") == self.param).row(0, named=True)
            rows.append({"row": f"{self.group}={lev}", "estimate": t["estimate"], "se": t["se"],
                         "pvalue": t["pvalue"], "nobs": f.nobs})
        rows.append({"row": "difference (permutation)", "estimate": self.difference, "se": float(np.std(self.statistics, ddof=1)),
                     "pvalue": self.pvalue, "nobs": sum(f.nobs for f in self.fits.values())})
        it = self.interaction.tidy().filter(pl.col("term") == self.interaction_term).row(0, named=True)
        rows.append({"row": "interaction (pooled, CRV1)", "estimate": it["estimate"], "se": it["se"],
                     "pvalue": it["pvalue"], "nobs": self.interaction.nobs})
        return pl.DataFrame(rows)

    def summary(self) -> str:
        """Printable table."""
        lines = [f"Heterogeneity of {self.param} by {self.group} ({self.statistics.size} permutations)"]
        for r in self.tidy().iter_rows(named=True):
            lines.append(f"  {r['row']:<28}{r['estimate']:>10.4f}  ({r['se']:.4f})  p={r['pvalue']:.4f}  N={r['nobs']}")
        return "\n".join(lines)


def _coef_from_sums(sums: np.ndarray, n_periods: int, M: int) -> np.ndarray:
    """Slope of the first control for each row of summed per-unit moments.

    ``sums`` rows are ``[F'yu, packed F'F]`` of
    :meth:`~staggerlab.inference.regression.within.UnitPeriodWithin.unit_rows`
    summed over a subsample's units. With unit FE nested in a unit-level
    split, a subsample's unit demeaning is the full sample's, so these are the
    subsample's normal equations. The period block is partialled out with
    :func:`~staggerlab.inference.regression.rank.psd_pinv`: a subsample need not
    observe every period.
    """
    n = sums.shape[0]
    C = np.zeros((n, M, M))
    iu = np.triu_indices(M)
    C[:, iu[0], iu[1]] = sums[:, M:]
    C[:, iu[1], iu[0]] = sums[:, M:]
    Fy = sums[:, :M]
    p = n_periods - 1
    H, S = C[:, :p, :p], C[:, :p, p:]
    Hp = psd_pinv(H)
    XX = C[:, p:, p:] - np.transpose(S, (0, 2, 1)) @ Hp @ S
    Xy = Fy[:, p:, None] - np.transpose(S, (0, 2, 1)) @ Hp @ Fy[:, :p, None]
    return np.linalg.solve(XX, Xy)[:, 0, 0]


def split_difference(
    data: Any,
    *,
    y: str,
    param: str,
    controls: Sequence[str] = (),
    group: str,
    unit: str,
    time: str,
    cluster: str | None = None,
    draws: int = 1000,
    seed: SeedLike = 0,
    n_jobs: int = 1,
    backend: str | None = None,
) -> SplitDifferenceResult:
    """Compare the effect of ``param`` between the two levels of ``group``.

    Parameters
    ----------
    data : frame or Panel
    y, param : str
        Outcome and the coefficient of interest (e.g. the treatment).
    controls : sequence of str
    group : str
        A unit-level binary grouping (constant within unit).
    unit, time : str
        Panel ids; the models have unit and time fixed effects.
    cluster : str, optional
        Cluster for the CRV1 standard errors (default: unit).
    draws : int
        Permutations of the group labels across units.
    seed, n_jobs, backend
        Reproducible block-parallel draws (identical for any ``n_jobs``).

    Returns
    -------
    SplitDifferenceResult
    """
    frame = to_polars(data)
    cluster = cluster or unit
    cols = [y, param, *controls, group, unit, time, cluster]
    check_columns(frame, cols)
    frame = frame.filter(pl.Series(finite_mask(frame, cols)))
    per_unit = frame.group_by(unit).agg(pl.col(group).n_unique().alias("n"))
    if (per_unit["n"] > 1).any():
        raise PanelError(f"split variable {group!r} varies within {unit}; it must be a unit-level grouping")
    levels = sorted(frame[group].unique().to_list())
    if len(levels) != 2:
        raise PanelError(f"split variable {group!r} must have exactly 2 levels, found {len(levels)}: {levels[:5]}")
    vcov = {"CRV1": quote(cluster)}
    fits = {}
    for lev in levels:
        sub = frame.filter(pl.col(group) == lev)
        if sub[param].n_unique() < 2:
            raise TreatmentError(f"{param!r} never varies in the {group}={lev} subsample")
        fits[lev] = feols(Formula.of(y, [param, *controls], [unit, time]), sub, vcov=vcov)
    diff = fits[levels[1]].coef()[param] - fits[levels[0]].coef()[param]
    inter = fresh_name(f"{param}_x_{group}", frame.columns)
    pooled = frame.with_columns((pl.col(param) * (pl.col(group) == levels[1]).cast(pl.Float64)).alias(inter))
    interaction = feols(Formula.of(y, [param, inter, *controls], [unit, time]), pooled, vcov=vcov)

    ucodes = factorize_column(frame[unit])
    tcodes = factorize_column(frame[time])
    n_units = int(ucodes.max()) + 1
    T = int(tcodes.max()) + 1
    g_unit = np.zeros(n_units, dtype=bool)
    g_unit[ucodes] = (frame[group] == levels[1]).to_numpy()
    X = np.column_stack([frame[c].cast(pl.Float64).to_numpy() for c in [param, *controls]])
    # the narrow period codes the placebo engine passes: one compiled kernel
    per_N = tcodes.astype(np.min_scalar_type(-T))
    wi = UnitPeriodWithin(ucodes, n_units, per_N, T, X, frame[y].cast(pl.Float64).to_numpy())
    P = wi.unit_rows()
    total = P.sum(axis=0)
    ss = resolve_entropy(seed)
    n_blocks = -(-draws // _BLOCK)

    def run(b: int) -> np.ndarray:
        rng = block_generator(ss, b)
        size = min(_BLOCK, draws - b * _BLOCK)
        # a row sum per draw, not a BLAS product: its summation order, and so
        # the last bit, would depend on the BLAS threads of the worker
        s1 = np.stack([P[rng.permutation(g_unit)].sum(axis=0) for _ in range(size)])
        return _coef_from_sums(s1, T, wi.M) - _coef_from_sums(total - s1, T, wi.M)

    stats = np.concatenate(run_blocks(run, range(n_blocks), n_jobs=n_jobs, backend=backend, desc="split permutations"))
    p = (1 + np.sum(np.abs(stats) >= abs(diff))) / (1 + draws)
    return SplitDifferenceResult(group, param, (levels[0], levels[1]), fits, float(diff), stats, float(p), interaction)
