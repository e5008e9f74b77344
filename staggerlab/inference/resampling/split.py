"""Heterogeneity by a unit-level grouping: split-sample coefficients, the
permutation ("empirical p-value") test of their difference, and the pooled
interaction model.

The permutation test reshuffles the group labels across units and refits
both subsamples each draw, exactly, from per-unit sufficient statistics
computed once (see ``_unit_moments``): a draw costs one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from ..._parallel import run_blocks
from ..._seed import SeedLike, block_generator, resolve_entropy
from ...errors import PanelError, TreatmentError
from ...panels.panel import check_columns, factorize_column, finite_mask, to_polars
from ..regression.feols import Feols, feols
from ..regression.rank import psd_pinv
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


def _unit_moments(ucodes: np.ndarray, tcodes: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Per-unit sufficient statistics of the two-way within regression.

    With unit FE nested in a unit-level split, a subsample's unit demeaning is
    the full sample's, so for ``r = M_unit Z`` the subsample's two-way
    cross-products are ``sum_i r_i'r_i - S' H^+ S`` with ``S = sum_i B_i'r_i``
    and ``H = sum_i B_i'M_i B_i`` (B: period dummies). Returns, per unit, the
    flattened ``[H_i, S_i, R_i]`` so any subsample's sums are one matrix product.
    """
    n_units = int(ucodes.max()) + 1
    T = int(tcodes.max()) + 1
    p = Z.shape[1]
    # bincount on flat keys throughout: np.add.at is an order of magnitude slower
    counts = np.bincount(ucodes, minlength=n_units).astype(float)
    den = np.maximum(counts, 1)
    means = np.column_stack([np.bincount(ucodes, Z[:, j], minlength=n_units) for j in range(p)]) / den[:, None]
    r = Z - means[ucodes]
    ut = ucodes * T + tcodes
    B = np.bincount(ut, minlength=n_units * T).astype(float).reshape(n_units, T)
    H = np.zeros((n_units, T, T))
    H[:, np.arange(T), np.arange(T)] = B
    H -= B[:, :, None] * B[:, None, :] / den[:, None, None]
    S = np.stack([np.bincount(ut, r[:, j], minlength=n_units * T) for j in range(p)], axis=1).reshape(n_units, T, p)
    R = np.stack(
        [np.bincount(ucodes, r[:, a] * r[:, b], minlength=n_units) for a in range(p) for b in range(p)], axis=1
    ).reshape(n_units, p, p)
    return np.concatenate([H.reshape(n_units, -1), S.reshape(n_units, -1), R.reshape(n_units, -1)], axis=1)


def _coef_from_sums(sums: np.ndarray, T: int, p: int) -> np.ndarray:
    """First slope of the within regression for each row of summed moments."""
    n = sums.shape[0]
    H = sums[:, : T * T].reshape(n, T, T)
    S = sums[:, T * T : T * T + T * p].reshape(n, T, p)
    R = sums[:, T * T + T * p :].reshape(n, p, p)
    ZZ = R - np.transpose(S, (0, 2, 1)) @ psd_pinv(H) @ S
    # Z = [y, X]: beta = XX^-1 Xy
    return np.linalg.solve(ZZ[:, 1:, 1:], ZZ[:, 1:, 0:1])[:, 0, 0]


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
    rhs = " + ".join([param, *controls])
    vcov = {"CRV1": cluster}
    fits = {}
    for lev in levels:
        sub = frame.filter(pl.col(group) == lev)
        if sub[param].n_unique() < 2:
            raise TreatmentError(f"{param!r} never varies in the {group}={lev} subsample")
        fits[lev] = feols(f"{y} ~ {rhs} | {unit} + {time}", sub, vcov=vcov)
    diff = fits[levels[1]].coef()[param] - fits[levels[0]].coef()[param]
    inter = f"{param}_x_{group}"
    pooled = frame.with_columns((pl.col(param) * (pl.col(group) == levels[1]).cast(pl.Float64)).alias(inter))
    interaction = feols(f"{y} ~ {param} + {inter}{' + ' if controls else ''}{' + '.join(controls)} | {unit} + {time}",
                        pooled, vcov=vcov)

    ucodes = factorize_column(frame[unit])
    tcodes = factorize_column(frame[time])
    n_units = int(ucodes.max()) + 1
    T = int(tcodes.max()) + 1
    g_unit = np.zeros(n_units, dtype=bool)
    g_unit[ucodes] = (frame[group] == levels[1]).to_numpy()
    Z = np.column_stack([frame[c].cast(pl.Float64).to_numpy() for c in [y, param, *controls]])
    P = _unit_moments(ucodes, tcodes, Z)
    total = P.sum(axis=0)
    ss = resolve_entropy(seed)
    n_blocks = -(-draws // _BLOCK)

    def run(b: int) -> np.ndarray:
        rng = block_generator(ss, b)
        size = min(_BLOCK, draws - b * _BLOCK)
        L = np.stack([rng.permutation(g_unit) for _ in range(size)]).astype(float)
        s1 = L @ P
        return _coef_from_sums(s1, T, Z.shape[1]) - _coef_from_sums(total - s1, T, Z.shape[1])

    stats = np.concatenate(run_blocks(run, range(n_blocks), n_jobs=n_jobs, backend=backend, desc="split permutations"))
    p = (1 + np.sum(np.abs(stats) >= abs(diff))) / (1 + draws)
    return SplitDifferenceResult(group, param, (levels[0], levels[1]), fits, float(diff), stats, float(p), interaction)
