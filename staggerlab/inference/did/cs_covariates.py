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
``dr``) or whole design (``ipw``, ``dr``) is rank deficient by the package's
rank rule raises :class:`~staggerlab.errors.SingularCovariatesError`; a
logit with (quasi-)separation or a fitted propensity score of at least 0.999
(R ``did``'s overlap check) raises :class:`~staggerlab.errors.OverlapError`.
Both name the cohort, the period and the covariates.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import scipy.linalg as sla

from ...errors import OverlapError, SeparationError, SingularCovariatesError
from ..regression.rank import independent_columns
from ..selection.psm import fit_logit

__all__ = ["EstMethod", "EST_METHODS", "covariate_att", "PS_CAP", "PS_TRIM", "PS_OVERLAP"]

EstMethod = Literal["dr", "ipw", "reg"]
EST_METHODS = ("dr", "ipw", "reg")
#: fitted propensity scores are capped here (DRDID) so ``p / (1 - p)`` stays finite
PS_CAP = 1 - 1e-6
#: comparison units with a propensity score at least this get no weight (DRDID's ``trim.level``)
PS_TRIM = 0.995
#: a propensity score at least this in a 2x2 is an overlap failure (R did's check)
PS_OVERLAP = 0.999


def _check_rank(Z: np.ndarray, v: np.ndarray, names: Sequence[str], where: str, which: str) -> None:
    """Refuse a weighted design ``Z`` (intercept first) that is rank deficient."""
    gram = Z.T @ (Z * v[:, None])
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


def _outcome_regression(dy, Z, v, d, names, where):
    """WLS of ``dy`` on ``Z`` over the comparison units: ``(beta, linear rep.)``
    with the linear representation ``v (1-d) e Z (Z'V_0 Z / n1)^-1`` (n1 x k)."""
    v0 = v * (1.0 - d)
    _check_rank(Z, v0, names, where, "comparison units' outcome regression")
    gram = Z.T @ (Z * v0[:, None])
    cho = sla.cho_factor(gram)
    beta = sla.cho_solve(cho, Z.T @ (v0 * dy))
    resid = dy - Z @ beta
    inv = sla.cho_solve(cho, np.eye(Z.shape[1])) * dy.size
    return beta, (Z * (v0 * resid)[:, None]) @ inv


def _propensity(Z, v, d, names, where):
    """Weighted logit of ``d`` on ``Z``: ``(p capped, linear rep.)`` with the
    linear representation ``v (d - p) Z (Z' diag(v p (1-p)) Z / n1)^-1``."""
    _check_rank(Z, v, names, where, "propensity score")
    try:
        fit = fit_logit(Z[:, 1:], d, names=list(names), weights=v)
    except SeparationError:
        raise OverlapError(
            f"Callaway-Sant'Anna {where}: the propensity score of the covariates {list(names)} separates the "
            "treated cohort from the comparison units (fitted scores of 0 or 1): the overlap condition fails; "
            "use fewer or coarser covariates, or drop this cohort"
        ) from None
    p = 1.0 / (1.0 + np.exp(-(fit.params[0] + Z[:, 1:] @ fit.params[1:])))
    if p.max() >= PS_OVERLAP:
        raise OverlapError(
            f"Callaway-Sant'Anna {where}: a propensity score reaches {p.max():.6f} >= {PS_OVERLAP} with the "
            f"covariates {list(names)}: the overlap condition fails (as R did's check); use fewer or coarser "
            "covariates, or drop this cohort"
        )
    p = np.minimum(p, PS_CAP)
    info = Z.T @ (Z * (v * p * (1.0 - p))[:, None])
    inv = np.linalg.inv(info) * d.size
    return p, (Z * (v * (d - p))[:, None]) @ inv


def covariate_att(
    dy: np.ndarray,
    X: np.ndarray,
    d: np.ndarray,
    w: np.ndarray,
    method: EstMethod,
    names: Sequence[str],
    where: str,
) -> tuple[float, np.ndarray]:
    """ATT and influence function of one 2x2 with covariates.

    Parameters
    ----------
    dy : ndarray, shape (n1,)
        Outcome changes of the 2x2's units (treated cohort and comparison units).
    X : ndarray, shape (n1, p)
        Their covariates (without the intercept).
    d : ndarray, shape (n1,)
        1.0 for the treated cohort, 0.0 for the comparison units.
    w : ndarray, shape (n1,)
        Unit weights (non-negative, positive mean).
    method : {"dr", "ipw", "reg"}
    names : sequence of str
        Covariate names (for error messages).
    where : str
        The cell, e.g. ``"ATT(2006, 2004)"`` (for error messages).

    Returns
    -------
    att : float
    inf : ndarray, shape (n1,)
        DRDID's influence function on the 2x2 (``se = sqrt(mean(inf^2) / n1)``);
        the caller rescales it by ``n / n1``.
    """
    n1 = dy.size
    v = w / w.mean()
    Z = np.column_stack([np.ones(n1), X])
    w1 = v * d
    m1 = w1.mean()
    if method == "reg":
        beta, lin_or = _outcome_regression(dy, Z, v, d, names, where)
        fitted = Z @ beta
        eta1 = (w1 @ dy) / n1 / m1
        eta0 = (w1 @ fitted) / n1 / m1
        inf1 = w1 * (dy - eta1) / m1
        inf0 = (w1 * (fitted - eta0) + lin_or @ (Z.T @ w1 / n1)) / m1
        return float(eta1 - eta0), inf1 - inf0
    p, lin_ps = _propensity(Z, v, d, names, where)
    keep = np.where(d == 1.0, 1.0, (p < PS_TRIM).astype(float))
    w1 = keep * w1
    m1 = w1.mean()
    w0 = keep * v * p * (1.0 - d) / (1.0 - p)
    m0 = w0.mean()
    if method == "ipw":
        eta1 = (w1 @ dy) / n1 / m1
        eta0 = (w0 @ dy) / n1 / m0
        inf1 = w1 * (dy - eta1) / m1
        M2 = Z.T @ (w0 * (dy - eta0)) / n1
        inf0 = (w0 * (dy - eta0) + lin_ps @ M2) / m0
        return float(eta1 - eta0), inf1 - inf0
    beta, lin_or = _outcome_regression(dy, Z, v, d, names, where)
    e = dy - Z @ beta
    eta1 = (w1 @ e) / n1 / m1
    eta0 = (w0 @ e) / n1 / m0
    inf1 = (w1 * (e - eta1) - lin_or @ (Z.T @ w1 / n1)) / m1
    M2 = Z.T @ (w0 * (e - eta0)) / n1
    M3 = Z.T @ w0 / n1
    inf0 = (w0 * (e - eta0) + lin_ps @ M2 - lin_or @ M3) / m0
    return float(eta1 - eta0), inf1 - inf0
