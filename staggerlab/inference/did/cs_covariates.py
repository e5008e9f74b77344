"""Callaway-Sant'Anna 2x2 estimators with covariates (conditional parallel trends).

One ATT(g,t) is a 2x2 DID on a panel: the units of cohort ``g`` (``d = 1``)
and the comparison units (``d = 0``), with the outcome change
``dy = y_t - y_b`` and covariates ``x`` taken in the earlier of the two
periods (R ``did``: ``panel2cs2`` keeps the first period's row; for a
post-adoption or a varying-base pre-adoption cell that is the base period).
``Z = [1, x]`` and ``v`` the unit weights divided by their mean over the
2x2's units (n1 of them). These are the panel estimators R ``did`` calls
(``DRDID::reg_did_panel``, ``std_ipw_did_panel``, ``drdid_panel``); every
mean below is over the n1 units of the 2x2.

``reg`` (Heckman, Ichimura and Todd 1997): ``beta`` from the weighted least
squares of ``dy`` on ``Z`` over the comparison units; ``ATT = mean_treated(dy
- Z beta)``.

``ipw`` (Abadie 2005 with normalised, Hajek, weights): the propensity score
``p`` is a weighted maximum-likelihood logit of ``d`` on ``Z`` over the 2x2,
capped at ``1 - 1e-6``; treated weights ``v d``, comparison weights
``v p (1 - d) / (1 - p)`` (zero for comparison units with ``p >= 0.995``,
DRDID's trimming); ``ATT`` is the difference of the two weighted means of
``dy``.

``dr`` (Sant'Anna and Zhao 2020, the locally efficient panel estimator with
the logit propensity score and the least-squares outcome regression that R
``did`` uses by default): the ``ipw`` weights applied to ``dy - Z beta``.

Influence functions are DRDID's (with the estimation effect of ``beta`` and
of the logit's coefficients), scaled by ``n / n1`` (n: all units) to did's
convention ``se = sqrt(sum inf^2) / n``.

Refusals instead of R's NA cells: a 2x2 whose comparison-unit design (``reg``,
``dr``; checked first) or whole design (``ipw``) is rank deficient by the package's
rank rule raises :class:`~staggerlab.errors.SingularCovariatesError`; a
logit with (quasi-)separation or a fitted propensity score of at least 0.999
(R ``did``'s overlap check) raises :class:`~staggerlab.errors.OverlapError`.
Both name the cohort, the period and the covariates.

Cost: the outcome-free part of a 2x2 (:class:`Design2x2`: the logit, the
comparison units' normal equations) is computed once for the cells that share
units and covariate period, each cell then costs O(n1 k). Unlike the
unconditional estimator, whose influence functions are recomputed from the
outcomes when needed, these are kept: units x cells floats (the covariates
themselves take units x periods x covariates).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from ...errors import OverlapError, SeparationError, SingularCovariatesError
from ..regression.rank import independent_columns, is_full_rank
from ..selection.psm import fit_logit

__all__ = ["EstMethod", "EST_METHODS", "Design2x2", "PS_CAP", "PS_TRIM", "PS_OVERLAP"]

EstMethod = Literal["dr", "ipw", "reg"]
EST_METHODS = ("dr", "ipw", "reg")
#: fitted propensity scores are capped here (DRDID) so ``p / (1 - p)`` stays finite
PS_CAP = 1 - 1e-6
#: comparison units with a propensity score at least this get no weight (DRDID's ``trim.level``)
PS_TRIM = 0.995
#: a propensity score at least this in a 2x2 is an overlap failure (R did's check)
PS_OVERLAP = 0.999


def _check_rank(Z: np.ndarray, v: np.ndarray, names: Sequence[str], where: str, which: str) -> np.ndarray:
    """Refuse a weighted design ``Z`` (intercept first) that is rank deficient;
    returns its Gram matrix ``Z' diag(v) Z``."""
    gram = Z.T @ (Z * v[:, None])
    if is_full_rank(gram):
        return gram
    keep = independent_columns(gram)
    if len(keep) < Z.shape[1]:
        labels = ["(intercept)", *names]
        dropped = [labels[j] for j in range(Z.shape[1]) if j not in keep]
        raise SingularCovariatesError(
            f"Callaway-Sant'Anna {where}: the covariates of the {which} are collinear or constant "
            f"({', '.join(map(repr, dropped))} is a combination of the intercept"
            f"{' and ' + ', '.join(map(repr, [labels[j] for j in keep[1:]])) if len(keep) > 1 else ''}); "
            "drop or recode them"
        )
    return gram


class Design2x2:
    """The part of a 2x2 that does not depend on the outcomes: its units'
    covariates, treatment and weights, the propensity score (``ipw``, ``dr``)
    and the comparison units' normal equations (``reg``, ``dr``). Cells with the
    same units and covariate period share one (the post-adoption cells of a
    cohort with never-treated controls); :meth:`att` then costs O(n1 k).

    Parameters
    ----------
    X : ndarray, shape (n1, p)
        Covariates of the 2x2's units (without the intercept).
    d : ndarray, shape (n1,)
        1.0 for the treated cohort, 0.0 for the comparison units.
    w : ndarray, shape (n1,)
        Unit weights (non-negative, positive mean).
    method : {"dr", "ipw", "reg"}
    names : sequence of str
        Covariate names (for error messages).
    where : str
        The first cell using it, e.g. ``"ATT(2006, 2004) (cohort 2006, period 2004, ...)"``.
    start : ndarray, optional
        Starting coefficients of the logit (a related fit's).
    """

    def __init__(self, X: np.ndarray, d: np.ndarray, w: np.ndarray, method: EstMethod, names: Sequence[str],
                 where: str, start: np.ndarray | None = None):
        n1 = d.size
        self.method = method
        self.d = d
        self.v = v = w / w.mean()
        self.Z = Z = np.column_stack([np.ones(n1), X])
        self.ps_params = None
        if method in ("reg", "dr"):
            self.v0 = v0 = v * (1.0 - d)
            # k x k, of full rank by the rank rule: its inverse is reused by every cell
            self.inv_or = np.linalg.inv(_check_rank(Z, v0, names, where, "comparison units' outcome regression"))
        if method in ("ipw", "dr"):
            # with the comparison units' design of full rank, so is the whole 2x2's
            self._propensity(names, where, start, checked=method == "dr")

    def _propensity(self, names, where, start, checked):
        """Weighted logit of ``d`` on ``Z``; keeps the capped scores ``p``, the
        treated / comparison weights and ``(Z' diag(v p (1-p)) Z / n1)^-1``."""
        Z, v, d = self.Z, self.v, self.d
        if not checked:
            _check_rank(Z, v, names, where, "propensity score")
        try:
            fit = fit_logit(Z[:, 1:], d, names=list(names), weights=v, start=start)
        except SeparationError:
            raise OverlapError(
                f"Callaway-Sant'Anna {where}: the propensity score of the covariates {list(names)} separates the "
                "treated cohort from the comparison units (fitted scores of 0 or 1): the overlap condition fails; "
                "use fewer or coarser covariates, or drop this cohort"
            ) from None
        self.ps_params = fit.params
        p = 1.0 / (1.0 + np.exp(-(Z @ fit.params)))
        if p.max() >= PS_OVERLAP:
            raise OverlapError(
                f"Callaway-Sant'Anna {where}: a propensity score reaches {p.max():.6f} >= {PS_OVERLAP} with the "
                f"covariates {list(names)}: the overlap condition fails (as R did's check); use fewer or coarser "
                "covariates, or drop this cohort"
            )
        p = np.minimum(p, PS_CAP)
        keep = np.where(d == 1.0, 1.0, (p < PS_TRIM).astype(float))
        self.w1 = keep * v * d
        self.w0 = keep * v * p * (1.0 - d) / (1.0 - p)
        self.score_ps = v * (d - p)  # the logit's score is score_ps * Z
        self.inv_ps = np.linalg.inv(Z.T @ (Z * (v * p * (1.0 - p))[:, None])) * d.size

    def _lin_or(self, resid: np.ndarray, M: np.ndarray) -> np.ndarray:
        """``lin_or @ M`` for the outcome regression's linear representation
        ``v0 e Z (Z' V0 Z / n1)^-1`` (never formed: n1 x k)."""
        return (self.v0 * resid) * (self.Z @ (self.inv_or @ M * self.d.size))

    def att(self, dy: np.ndarray) -> tuple[float, np.ndarray]:
        """ATT and DRDID's influence function (n1; ``se = sqrt(mean(inf^2) / n1)``)
        of the outcome changes ``dy`` of the 2x2's units; the caller rescales it by
        ``n / n1``."""
        Z, n1 = self.Z, self.d.size
        if self.method == "reg":
            w1 = self.v * self.d
            m1 = w1.mean()
            beta = self.inv_or @ (Z.T @ (self.v0 * dy))
            fitted = Z @ beta
            eta1 = (w1 @ dy) / n1 / m1
            eta0 = (w1 @ fitted) / n1 / m1
            inf1 = w1 * (dy - eta1) / m1
            inf0 = (w1 * (fitted - eta0) + self._lin_or(dy - fitted, Z.T @ w1 / n1)) / m1
            return float(eta1 - eta0), inf1 - inf0
        w1, w0 = self.w1, self.w0
        m1, m0 = w1.mean(), w0.mean()
        if self.method == "ipw":
            e = dy
        else:
            e = dy - Z @ (self.inv_or @ (Z.T @ (self.v0 * dy)))
        eta1 = (w1 @ e) / n1 / m1
        eta0 = (w0 @ e) / n1 / m0
        lin_ps_M2 = self.score_ps * (Z @ (self.inv_ps @ (Z.T @ (w0 * (e - eta0)) / n1)))
        inf1 = w1 * (e - eta1)
        inf0 = w0 * (e - eta0) + lin_ps_M2
        if self.method == "dr":
            inf1 -= self._lin_or(e, Z.T @ w1 / n1)
            inf0 -= self._lin_or(e, Z.T @ w0 / n1)
        return float(eta1 - eta0), inf1 / m1 - inf0 / m0
