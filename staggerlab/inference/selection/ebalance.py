"""Entropy balancing (Hainmueller 2012), then weighted TWFE.

Groups as in PSM-DID (see :mod:`staggerlab.inference.selection.psm`): the treated
group is every row of an ever-treated unit (weight 1), the controls are the
rows of never-treated units. The control weights are the ones closest to
uniform in Kullback-Leibler divergence whose weighted covariate moments equal
the treated group's:

    min_w sum_i w_i log(w_i / q_i)  s.t.  sum_i w_i c_i = m,  sum_i w_i = 1,

with ``c_i`` the covariates (``moments=1``) or the covariates and their squares
(``moments=2``: means and population variances, ddof=0, match). Its convex dual
is ``min_l log sum_i q_i exp(l'(c_i - m))``; the solution is
``w_i ∝ q_i exp(l'(c_i - m))``. It is solved here by Newton's method with
backtracking (Armijo) line search on standardised constraint columns; the
gradient of the dual is exactly the vector of moment gaps, so convergence is
reported as the largest gap. Control weights are then scaled to sum to the
number of treated-group rows, and the TWFE model is fitted by weighted least
squares (``feols(..., weights=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl
from scipy import special

from ...errors import (
    ArgumentError,
    ArgumentTypeError,
    CollinearityError,
    InfeasibleBalanceError,
    TreatmentError,
)
from ..did.staggered_data import COHORT, prepare
from ..regression.feols import Feols, feols
from ..results import Result
from .psm import GROUP, balance_lines, balance_table

__all__ = ["entropy_balance", "EntropyBalanceResult", "ebalance_weights", "InfeasibleBalanceError", "WEIGHT"]

#: name of the weight column in the weighted sample
WEIGHT = "_ebw"


@dataclass(eq=False)
class BalanceSolution:
    """Solution of the entropy-balancing dual.

    Attributes
    ----------
    weights : ndarray
        Control weights summing to 1.
    lam : ndarray
        Dual coefficients (on the standardised constraint columns).
    n_iter : int
    max_gap : float
        Largest absolute weighted-moment gap, in the constraint columns' units.
    converged : bool
    """

    weights: np.ndarray
    lam: np.ndarray
    n_iter: int
    max_gap: float
    converged: bool


def ebalance_weights(
    C: np.ndarray,
    target: np.ndarray,
    *,
    base: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    tol: float = 1e-10,
    maxiter: int = 200,
) -> BalanceSolution:
    """Entropy-balancing weights of the rows of ``C`` (n x r) for moments ``target``.

    Stops when every moment gap is below ``tol`` times the column's sd among
    the rows (at least ``tol`` in absolute terms for columns with sd < 1).

    Raises
    ------
    InfeasibleBalanceError
        If a target lies outside the range of its column (checked first) or
        the dual does not converge (the target outside the convex hull).
    CollinearityError
        If the constraint columns are collinear.
    """
    C = np.asarray(C, dtype=np.float64)
    n, r = C.shape
    names = list(names) if names is not None else [f"c{j}" for j in range(r)]
    q = np.full(n, 1.0 / n) if base is None else np.asarray(base, float) / np.sum(base)
    lo, hi = C.min(axis=0), C.max(axis=0)
    for j in range(r):
        inside = (lo[j] < target[j] < hi[j]) or (lo[j] == hi[j] == target[j])
        if not inside:
            raise InfeasibleBalanceError(
                f"infeasible balancing constraint: the treated moment of {names[j]!r} is {target[j]:.6g}, "
                f"outside the open range of the controls' values [{lo[j]:.6g}, {hi[j]:.6g}]; no positive "
                "weights can match it. Drop or transform that covariate, or trim the treated group"
            )
    sd = C.std(axis=0)
    keep = sd > 0  # a column constant among controls and equal to its target is balanced already
    Z = (C[:, keep] - target[keep]) / sd[keep]
    if Z.shape[1] and np.linalg.matrix_rank(Z - Z.mean(axis=0)) < Z.shape[1]:
        raise CollinearityError(
            f"the balancing constraints {[names[j] for j in np.flatnonzero(keep)]} are collinear among the "
            "controls; drop a redundant covariate (or use moments=1 for binary ones)"
        )
    logq = np.log(q)
    lam = np.zeros(Z.shape[1])

    def dual(lm: np.ndarray) -> tuple[float, np.ndarray]:
        a = logq + Z @ lm
        lse = special.logsumexp(a)
        return float(lse), np.exp(a - lse)

    f, w = dual(lam)
    g = Z.T @ w
    it = 0
    converged = np.max(np.abs(g), initial=0.0) <= tol
    while not converged and it < maxiter:
        it += 1
        H = (Z * w[:, None]).T @ Z - np.outer(g, g)
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        slope = float(g @ step)
        while True:
            f_new, w_new = dual(lam + t * step)
            if f_new <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12:
            break
        lam = lam + t * step
        f, w = f_new, w_new
        g = Z.T @ w
        converged = np.max(np.abs(g)) <= tol
    gap = np.abs(C.T @ w - target)
    if not converged:
        raise InfeasibleBalanceError(
            f"entropy balancing did not converge in {it} Newton iteration(s) (largest moment gap {gap.max():.3g}); "
            "the treated moments are probably outside the convex hull of the controls' covariates "
            "(jointly infeasible): drop or transform covariates, or use moments=1"
        )
    return BalanceSolution(w, lam, it, float(gap.max()), True)


@dataclass(eq=False, repr=False)
class EntropyBalanceResult(Result):
    """Entropy balancing + weighted TWFE.

    Attributes
    ----------
    fit : Feols
        Weighted TWFE (unit + time FE, CRV1).
    sample : polars.DataFrame
        The estimation frame with the weight column ``_ebw`` (1 for treated-group
        rows; the balancing weights, summing to the number of treated-group
        rows, for controls).
    solution : BalanceSolution
        Dual solution and convergence report.
    constraints : list of str
        Names of the balanced moments (``x`` and ``x^2``).
    """

    fit: Feols
    treat: str
    sample: pl.DataFrame
    solution: BalanceSolution
    balance_frame: pl.DataFrame
    constraints: list[str]
    moments: int
    n_treated: int
    n_control: int

    @property
    def weights(self) -> np.ndarray:
        """The weight of every row of :attr:`sample`."""
        return self.sample[WEIGHT].to_numpy()

    @property
    def n_iter(self) -> int:
        """Newton iterations of the dual."""
        return self.solution.n_iter

    @property
    def max_gap(self) -> float:
        """Largest absolute moment gap after balancing."""
        return self.solution.max_gap

    def balance(self) -> pl.DataFrame:
        """Covariate means and SMDs before/after weighting (see ``balance_table``)."""
        return self.balance_frame

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """The weighted TWFE fit's coefficient table."""
        return self.fit.tidy(level)

    def summary(self) -> str:
        """Convergence report, balance table and the weighted TWFE estimate."""
        w = self.solution.weights
        ess = 1.0 / float(np.sum(w**2))
        lines = [
            f"Entropy balancing ({'means' if self.moments == 1 else 'means and variances'}): "
            f"{len(self.constraints)} constraint(s), {self.n_iter} Newton iteration(s), "
            f"largest moment gap {self.max_gap:.2e}",
            f"treated-group rows: {self.n_treated:,}; control rows: {self.n_control:,} "
            f"(effective sample size of the weights {ess:,.1f}, max weight share {w.max():.4f})",
            "",
            *balance_lines(self.balance_frame, "{:>11.2e}"),
        ]
        lines += ["", self.fit.summary()]
        return "\n".join(lines)


def entropy_balance(
    data: Any,
    *,
    y: str,
    treat: str,
    unit: str,
    time: str,
    covariates: Sequence[str],
    moments: int = 1,
    controls: Sequence[str] | None = None,
    cluster: str | None = None,
    tol: float = 1e-10,
    maxiter: int = 200,
) -> EntropyBalanceResult:
    """Entropy-balancing difference-in-differences.

    Parameters
    ----------
    data : polars or pandas DataFrame, or Panel
    y, treat, unit, time : str
        Outcome, 0/1 absorbing treatment, unit and period columns.
    covariates : sequence of str
        Covariates whose moments are balanced.
    moments : {1, 2}
        1 balances means; 2 means and variances (squares of 0/1 covariates
        are skipped: their mean already fixes them).
    controls : sequence of str, optional
        Controls of the weighted TWFE regression.
    cluster : str, optional
        CRV1 cluster column (default ``unit``).
    tol : float
        Largest moment gap allowed, relative to the column's sd among controls.
    maxiter : int
        Newton iterations before declaring the constraints infeasible.

    Returns
    -------
    EntropyBalanceResult

    Raises
    ------
    InfeasibleBalanceError
        A treated moment outside the controls' range, or jointly infeasible
        constraints.

    Examples
    --------
    >>> import staggerlab as sl
    >>> df = sl.simulate.staggered(300, 8, never_share=0.7, n_controls=2, seed=3)
    >>> res = entropy_balance(df, y="y", treat="treat", unit="unit", time="time", covariates=["x1", "x2"])
    >>> res.max_gap < 1e-8
    True
    """
    covariates = list(covariates)
    controls = list(controls or [])
    if not covariates:
        raise ArgumentTypeError("give at least one covariate to balance")
    if moments not in (1, 2):
        raise ArgumentError(f"moments must be 1 (means) or 2 (means and variances), got {moments!r}")
    sd_ = prepare(
        data, y=y, unit=unit, time=time, treat=treat,
        controls=list(dict.fromkeys([*covariates, *controls])), cluster=cluster,
    )
    frame = sd_.frame.with_columns((pl.col(COHORT) > 0).cast(pl.Int8).alias(GROUP))
    group = frame[GROUP].to_numpy().astype(bool)
    if group.all():
        raise TreatmentError("every unit is eventually treated: there are no never-treated controls to reweight")
    X = frame.select(pl.col(c).cast(pl.Float64) for c in covariates).to_numpy()
    cols, names = [X], list(covariates)
    if moments == 2:
        binary = [np.isin(X[:, j], (0.0, 1.0)).all() for j in range(X.shape[1])]
        sq = [j for j in range(X.shape[1]) if not binary[j]]
        cols.append(X[:, sq] ** 2)
        names += [f"{covariates[j]}^2" for j in sq]
    C = np.column_stack(cols)
    target = C[group].mean(axis=0)
    sol = ebalance_weights(C[~group], target, names=names, tol=tol, maxiter=maxiter)
    n_t = int(group.sum())
    w_all = np.ones(frame.height)
    w_all[~group] = sol.weights * n_t
    sample = frame.with_columns(pl.Series(WEIGHT, w_all))
    bal = balance_table(X[group], X[~group], covariates, w_t_after=np.ones(n_t), w_c_after=sol.weights)
    rhs = " + ".join([treat, *controls])
    fit = feols(f"{y} ~ {rhs} | {unit} + {time}", sample, vcov={"CRV1": sd_.cluster}, weights=WEIGHT)
    return EntropyBalanceResult(
        fit=fit, treat=treat, sample=sample, solution=sol, balance_frame=bal, constraints=names,
        moments=moments, n_treated=n_t, n_control=int((~group).sum()),
    )
