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
backtracking (Armijo) line search on standardised constraint columns
(each centred at its target and divided by its standard deviation among the
controls, ddof=0); the gradient of the dual is exactly the vector of moment
gaps in those units, so ``tol`` bounds the largest gap in standard deviations
(reported as ``max_std_gap``; ``max_gap`` is the same gap in the covariates'
own units). When Newton stops short of ``tol``, a linear program tells the
two causes apart: target moments outside the interior of the controls'
convex hull (``InfeasibleBalanceError``) or too few iterations
(``BalanceConvergenceError``). Control weights are then scaled to sum to the
number of treated-group rows, and the TWFE model is fitted by weighted least
squares (``feols(..., weights=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl
from scipy import optimize, special

from ...errors import (
    ArgumentError,
    ArgumentTypeError,
    BalanceConvergenceError,
    CollinearityError,
    InfeasibleBalanceError,
    TreatmentError,
)
from ...panels.panel import fresh_name
from ..did.staggered_data import COHORT, prepare
from ..regression.feols import Feols, feols
from ..regression.formula import Formula, quote
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
    max_std_gap : float
        Largest absolute gap divided by its column's standard deviation among
        the rows (ddof=0): the quantity bounded by ``tol``.
    converged : bool
    """

    weights: np.ndarray
    lam: np.ndarray
    n_iter: int
    max_gap: float
    max_std_gap: float
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

    Stops when every moment gap, divided by its column's standard deviation
    among the rows (ddof=0), is at most ``tol``: the allowed gap of a column
    is ``tol * sd`` in its own units (smaller than ``tol`` when sd < 1). A
    column constant among the rows and equal to its target has no gap.

    Raises
    ------
    InfeasibleBalanceError
        If a target lies outside the range of its column (checked first), the
        targets lie outside the interior of the rows' convex hull (checked
        when Newton stops short of ``tol``), or a weight underflows to 0.
    BalanceConvergenceError
        If Newton stops short of ``tol`` (``maxiter`` reached, or no descent
        step left) although the targets are attainable.
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
    stalled = False
    converged = np.max(np.abs(g), initial=0.0) <= tol
    while not converged and it < maxiter:
        it += 1
        H = (Z * w[:, None]).T @ Z - np.outer(g, g)
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            stalled = True
            break
        t = 1.0
        slope = float(g @ step)
        while True:
            f_new, w_new = dual(lam + t * step)
            if f_new <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12:
            stalled = True
            break
        lam = lam + t * step
        f, w = f_new, w_new
        g = Z.T @ w
        converged = np.max(np.abs(g)) <= tol
    gap = np.abs(C.T @ w - target)
    std_gap = float(np.max(np.abs(g), initial=0.0))
    if not converged:
        if not interior_feasible(Z):
            raise InfeasibleBalanceError(
                f"infeasible balancing constraints: no positive weights reproduce the treated moments of "
                f"{names} together (each lies inside its column's range, but not inside the convex hull of the "
                f"controls' values); drop or transform covariates, or use moments=1 (Newton stopped after {it} "
                f"iteration(s), largest gap {std_gap:.3g} sd)"
            )
        why = (f"stalled after {it} Newton iteration(s) (no descent step left)" if stalled
               else f"reached maxiter={maxiter} Newton iteration(s)")
        raise BalanceConvergenceError(
            f"entropy balancing did not converge: it {why} with the largest moment gap at {std_gap:.3g} sd "
            f"({gap.max():.3g} in the covariates' units), above tol={tol:g} sd. The treated moments are attainable "
            "(inside the controls' convex hull): raise maxiter or tol"
        )
    if not (w > 0).all():
        raise InfeasibleBalanceError(
            f"{int((w <= 0).sum())} control row(s) get a balancing weight that underflows to 0: the treated "
            "moments sit at the edge of what the controls can reproduce (extreme covariate values); drop or "
            "transform covariates, or trim outlying controls"
        )
    return BalanceSolution(w, lam, it, float(gap.max(initial=0.0)), std_gap, True)


def interior_feasible(Z: np.ndarray) -> bool:
    """Whether weights all above ``1e-10 / n`` and summing to 1 give ``Z'w = 0`` (a linear program).

    Entropy-balancing weights are positive, so they exist exactly when 0 lies
    in the interior of the convex hull of the rows of ``Z`` (n x r); the
    program maximises the smallest weight ``t`` with ``w = v + t``, ``v >= 0``.
    """
    n, r = Z.shape
    A = np.vstack([np.hstack([Z.T, Z.sum(axis=0)[:, None]]), np.append(np.ones(n), n)[None, :]])
    b = np.append(np.zeros(r), 1.0)
    c = np.zeros(n + 1)
    c[-1] = -1.0
    res = optimize.linprog(c, A_eq=A, b_eq=b, bounds=[(0, None)] * n + [(0, 1.0 / n)], method="highs")
    return res.status == 0 and -res.fun * n > 1e-10


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
        return self.sample[self.fit.design.weights_name].to_numpy()

    @property
    def n_iter(self) -> int:
        """Newton iterations of the dual."""
        return self.solution.n_iter

    @property
    def max_gap(self) -> float:
        """Largest absolute moment gap after balancing, in the covariates' own units."""
        return self.solution.max_gap

    @property
    def max_std_gap(self) -> float:
        """Largest moment gap in standard deviations of its column among controls (bounded by ``tol``)."""
        return self.solution.max_std_gap

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
            f"largest moment gap {self.max_std_gap:.2e} sd ({self.max_gap:.2e} in the covariates' units)",
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
        Largest moment gap allowed, in standard deviations (ddof=0) of the
        balanced column (covariate or square) among the controls; reported
        as ``max_std_gap``, and in the covariates' units as ``max_gap``.
    maxiter : int
        Newton iterations; stopping at ``maxiter`` short of ``tol`` raises
        ``BalanceConvergenceError``.

    Returns
    -------
    EntropyBalanceResult

    Raises
    ------
    InfeasibleBalanceError
        A treated moment outside the controls' range, or jointly infeasible
        constraints.
    BalanceConvergenceError
        Newton stopped short of ``tol`` although the moments are attainable.

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
    # the caller's names (unit/time may come from a Panel); sd_.frame may rename some
    y, unit, time, cluster = (sd_.caller(c) for c in (sd_.y, sd_.unit, sd_.time, sd_.cluster))
    frame = sd_.frame.with_columns((pl.col(COHORT) > 0).cast(pl.Int8).alias(GROUP))
    group = frame[GROUP].to_numpy().astype(bool)
    if group.all():
        raise TreatmentError("every unit is eventually treated: there are no never-treated controls to reweight")
    X = frame.select(pl.col(sd_.name(c)).cast(pl.Float64) for c in covariates).to_numpy()
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
    sample = sd_.as_caller(frame)
    weight = fresh_name(WEIGHT, sample.columns)
    sample = sample.with_columns(pl.Series(weight, w_all))
    bal = balance_table(X[group], X[~group], covariates, w_t_after=np.ones(n_t), w_c_after=sol.weights)
    fit = feols(Formula.of(y, [treat, *controls], [unit, time]), sample,
                vcov={"CRV1": quote(cluster)}, weights=weight)
    return EntropyBalanceResult(
        fit=fit, treat=treat, sample=sample, solution=sol, balance_frame=bal, constraints=names,
        moments=moments, n_treated=n_t, n_control=int((~group).sum()),
    )
