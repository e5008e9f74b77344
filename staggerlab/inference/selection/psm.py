"""PSM-DID: propensity-score matching, then TWFE on the matched sample.

What is matched to what (the usual PSM-DID practice in this literature):

* the **treated group** is every row of a unit that is ever treated, its
  pre- and post-adoption years alike (the logit's outcome is this group
  indicator, not the time-varying treatment: matching only post-adoption rows
  would leave the treatment constant within each treated firm, and the firm
  FE would absorb it);
* the **pool** is every row of a never-treated unit;
* each treated-group row gets its ``k`` nearest pool rows on the logit of the
  propensity score (the linear predictor), within the same year when
  ``by_year=True``; at equal distance the pool row with the lower score, then
  the earlier one, comes first;
* the **matched sample** keeps the matched firm-years (``keep="rows"``, the
  default: treated-group rows with at least one match, plus every pool row
  used at least once, each once) or the full histories of the units that have
  a matched row (``keep="units"``). The TWFE regression on it is unweighted,
  as in the usual two-step practice.

The logit is fitted here by Newton's method with step halving (equal to
statsmodels' ``Logit`` in the tests); separation raises ``SeparationError``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl
from scipy import special

from ...errors import (
    ArgumentError,
    ArgumentTypeError,
    CollinearityError,
    ConvergenceError,
    EmptyPanelError,
    MatchingWarning,
    NoCommonSupportError,
    SeparationError,
    TreatmentError,
    VcovError,
)
from ...kernels.logit import logit_newton
from ..did.staggered_data import COHORT, prepare
from ..regression.feols import Feols, feols
from ..regression.formula import Formula, quote
from ..regression.rank import is_full_rank
from ..results import Result
from .matching import nn_noreplace, nn_replace

__all__ = [
    "psm_did",
    "PsmDidResult",
    "fit_logit",
    "LogitFit",
    "SeparationError",
    "NoCommonSupportError",
    "balance_table",
    "GROUP",
]

#: name of the derived treated-group indicator (1 = unit ever treated)
GROUP = "_group"
#: a fitted probability this close to 0 or 1 marks (quasi-)separation
SEPARATION_EPS = 1e-9

# -------------------------------------------------------------------- logit
@dataclass(eq=False)
class LogitFit:
    """A logit fitted by Newton's method.

    Attributes
    ----------
    params, bse : ndarray
        Coefficients (first the intercept) and their model-based standard errors.
    llf : float
        Log-likelihood at the solution.
    n_iter : int
    names : list of str
    """

    params: np.ndarray
    bse: np.ndarray
    llf: float
    n_iter: int
    names: list[str]

    def linear_predictor(self, X: np.ndarray) -> np.ndarray:
        """``b0 + X b`` for covariates ``X`` (without the constant column)."""
        return self.params[0] + X @ self.params[1:]


def _llf(eta: np.ndarray, d: np.ndarray, w: np.ndarray | None = None) -> float:
    # log(1 + e^eta) without overflow; several times faster than np.logaddexp
    terms = d * eta - (np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta))))
    return float(terms.sum() if w is None else w @ terms)


def fit_logit(
    X: np.ndarray, d: np.ndarray, *, names: Sequence[str] | None = None, tol: float = 1e-10, maxiter: int = 100,
    weights: np.ndarray | None = None, start: np.ndarray | None = None,
) -> LogitFit:
    """Maximum-likelihood logit of 0/1 ``d`` on ``X`` plus an intercept.

    Newton-Raphson (= IRLS) with step halving on the log-likelihood; stops when
    the largest step is below ``tol * (1 + max |b|)``. With ``weights`` (non-negative),
    the weighted log-likelihood ``sum w_i l_i`` (R ``glm`` prior weights); ``bse`` is
    then ``sqrt(diag((Z' diag(w p (1 - p)) Z)^-1))``. ``start`` (intercept first, the
    covariates' scale) is where Newton's method starts (zeros by default): a
    nearby solution of a related fit saves iterations, not precision.

    Raises
    ------
    SeparationError
        If fitted probabilities reach 0 or 1 (perfect or quasi-perfect
        separation: the MLE does not exist).
    CollinearityError
        If the covariates (with the intercept) are collinear.
    ConvergenceError
        If Newton's method does not converge for another reason.
    """
    X = np.asarray(X, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    n, m = X.shape
    names = list(names) if names is not None else [f"x{j}" for j in range(m)]
    if d.min() == d.max():
        raise TreatmentError("the logit's outcome does not vary (all rows treated or all control)")
    Z = np.column_stack([np.ones(n), X])
    # affine rescaling leaves Newton's iterates equivalent but keeps H well conditioned
    sd = Z[:, 1:].std(axis=0)
    if np.any(sd == 0):
        bad = [names[j] for j in np.flatnonzero(sd == 0)]
        raise CollinearityError(f"covariate(s) {bad} are constant in the logit sample (collinear with the intercept)")
    mu = Z[:, 1:].mean(axis=0)
    Zs = np.column_stack([np.ones(n), (X - mu) / sd])
    if not is_full_rank(Zs.T @ Zs):  # the package's rank rule, on the standardised columns
        raise CollinearityError(f"the logit covariates {names} are collinear; drop one of them")
    b = np.zeros(m + 1)
    if start is not None:  # to the standardised coordinates
        b[1:] = np.asarray(start[1:], dtype=np.float64) * sd
        b[0] = start[0] + mu @ start[1:]
    # the Newton iterations run in one kernel (a pass over the rows per step)
    b, p, it, converged = logit_newton(np.ascontiguousarray(Zs), np.ascontiguousarray(d),
                                       np.ones(n) if w is None else np.ascontiguousarray(w), b, tol, maxiter)
    extreme = (p < SEPARATION_EPS) | (p > 1.0 - SEPARATION_EPS)
    if w is not None:  # a row without weight does not enter the likelihood
        extreme &= w > 0
    if extreme.any():
        j = int(np.argmax(np.abs(b[1:]))) if m else 0
        raise SeparationError(
            f"perfect or quasi-perfect separation in the propensity-score logit: {int(extreme.sum())} row(s) get a "
            f"fitted probability of 0 or 1 (largest standardised coefficient: {names[j]!r}); the MLE does not exist. "
            "Drop or coarsen the separating covariate(s), or pool years (by_year=False)"
        )
    if not converged:
        raise ConvergenceError(f"the propensity-score logit did not converge in {maxiter} Newton iterations")
    # back to the original covariate scale
    params = np.empty(m + 1)
    params[1:] = b[1:] / sd
    params[0] = b[0] - mu @ params[1:]
    W = p * (1.0 - p) if w is None else w * p * (1.0 - p)
    H = Z.T @ (Z * W[:, None])
    bse = np.sqrt(np.diag(np.linalg.inv(H)))
    return LogitFit(params, bse, _llf(Z @ params, d, w), it, ["Intercept", *names])


# ------------------------------------------------------------------ balance
def balance_lines(balance: pl.DataFrame, after_fmt: str) -> list[str]:
    """Printable rows of a balance table (header first)."""
    lines = [f"{'covariate':<14}{'mean T':>10}{'mean C':>10}{'SMD before':>12}{'mean C adj':>12}{'SMD after':>11}"]
    for r in balance.iter_rows(named=True):
        lines.append(
            f"{r['covariate'][:14]:<14}{r['mean_treated_before']:>10.4f}{r['mean_control_before']:>10.4f}"
            f"{r['smd_before']:>12.4f}{r['mean_control_after']:>12.4f}" + after_fmt.format(r["smd_after"])
        )
    return lines


def balance_table(
    X_t: np.ndarray,
    X_c: np.ndarray,
    names: Sequence[str],
    *,
    w_t_after: np.ndarray,
    w_c_after: np.ndarray,
) -> pl.DataFrame:
    """Means and standardised mean differences before and after.

    SMD = (mean_treated - mean_control) / sqrt((var_treated + var_control) / 2)
    with the variances (ddof=1) of the unadjusted groups in the denominator
    both before and after, so the change shows the change in means only.
    "After" means are weighted by ``w_t_after`` / ``w_c_after`` (match counts
    or balancing weights).
    """
    mt, mc = X_t.mean(axis=0), X_c.mean(axis=0)
    denom = np.sqrt((X_t.var(axis=0, ddof=1) + X_c.var(axis=0, ddof=1)) / 2.0)
    denom = np.where(denom > 0, denom, np.nan)
    mta = (w_t_after @ X_t) / w_t_after.sum()
    mca = (w_c_after @ X_c) / w_c_after.sum()
    return pl.DataFrame(
        {
            "covariate": list(names),
            "mean_treated_before": mt,
            "mean_control_before": mc,
            "smd_before": (mt - mc) / denom,
            "mean_treated_after": mta,
            "mean_control_after": mca,
            "smd_after": (mta - mca) / denom,
        }
    )


# --------------------------------------------------------------- the method
@dataclass(eq=False, repr=False)
class PsmDidResult(Result):
    """PSM-DID result.

    Attributes
    ----------
    fit : Feols
        TWFE (unit + time FE, CRV1) on the matched sample.
    sample : polars.DataFrame
        The matched sample the TWFE was fitted on.
    matches : polars.DataFrame
        One row per (treated row, match): unit/time of both, and the distance
        on the logit score.
    pscore : polars.DataFrame
        unit, time, ``_group``, ``pscore`` and ``logit_score`` of every row
        used in the logit.
    logits : dict
        The logit fit(s) (key ``"pooled"`` or the year).
    n_treated, n_treated_matched, n_pool : int
    caliper_abs : float or None
        Caliper on the logit-score scale (``caliper * sd``).
    n_used_up : int
        Treated-group rows without a match because matching without
        replacement used up the pool (the other unmatched rows are off support).
    """

    fit: Feols
    treat: str
    sample: pl.DataFrame
    matches: pl.DataFrame
    pscore: pl.DataFrame
    logits: dict[Any, LogitFit]
    balance_frame: pl.DataFrame
    n_treated: int
    n_treated_matched: int
    n_pool: int
    k: int
    replace: bool
    by_year: bool
    keep: str
    caliper_abs: float | None = None
    n_used_up: int = 0

    def balance(self) -> pl.DataFrame:
        """Covariate balance before and after matching (see :func:`balance_table`)."""
        return self.balance_frame

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """The TWFE fit's coefficient table on the matched sample."""
        return self.fit.tidy(level)

    def summary(self) -> str:
        """Matching report, balance table and the TWFE estimate."""
        cal = "none" if self.caliper_abs is None else f"{self.caliper_abs:.4g} (logit-score units)"
        lines = [
            f"PSM-DID: 1:{self.k} nearest neighbour on the logit score, "
            f"{'with' if self.replace else 'without'} replacement, {'by year' if self.by_year else 'pooled'}; "
            f"caliper {cal}",
            f"treated-group rows: {self.n_treated:,} ({self.n_treated_matched:,} matched, "
            f"{self.n_treated - self.n_treated_matched - self.n_used_up:,} off support"
            + (f", {self.n_used_up:,} unmatched as the pool was used up" if self.n_used_up else "")
            + f"); pool rows: {self.n_pool:,}; "
            f"matched sample ({'firm-years' if self.keep == 'rows' else 'full unit histories'}): "
            f"{self.sample.height:,} rows",
            "",
            *balance_lines(self.balance_frame, "{:>11.4f}"),
        ]
        lines += ["", self.fit.summary()]
        return "\n".join(lines)


def psm_did(
    data: Any,
    *,
    y: str,
    treat: str,
    unit: str,
    time: str,
    covariates: Sequence[str],
    controls: Sequence[str] | None = None,
    k: int = 4,
    caliper: float | None = None,
    replace: bool = True,
    by_year: bool = False,
    keep: Literal["rows", "units"] = "rows",
    cluster: str | None = None,
) -> PsmDidResult:
    """Propensity-score matching difference-in-differences.

    Parameters
    ----------
    data : polars or pandas DataFrame, or Panel
    y, treat, unit, time : str
        Outcome, 0/1 absorbing treatment, unit and period columns.
    covariates : sequence of str
        Regressors of the propensity-score logit.
    controls : sequence of str, optional
        Controls of the TWFE regression on the matched sample.
    k : int
        Number of neighbours per treated-group row (1:k matching).
    caliper : float, optional
        Maximum distance, in standard deviations of the logit score (the
        linear predictor, sd over all rows of the logit sample); e.g. 0.2
        (Austin 2011). Neighbours beyond it are not used; a treated row with
        none left is off support and dropped (reported).
    replace : bool
        Match with replacement (a pool row may serve several treated rows,
        and is kept once in the sample). Without replacement the matching is
        greedy, highest score first (equal scores: the earlier row first).
        Either way, pool rows at equal distance from a treated row are taken
        lower score first, then in the order of the panel's rows (sorted by
        unit, then time).
    by_year : bool
        Fit the logit and match within each period (else one pooled logit,
        neighbours from any period).
    keep : {"rows", "units"}
        Matched sample: the matched firm-years (default) or every row of the
        units that have a matched row.
    cluster : str, optional
        Cluster column of the CRV1 standard errors (default: ``unit``).

    Returns
    -------
    PsmDidResult
        ``.fit``, ``.tidy()``, ``.summary()``, ``.balance()``, ``.matches``.

    Raises
    ------
    SeparationError
        Perfect or quasi-perfect separation in the logit.
    NoCommonSupportError
        No treated-group row has a pool row within the caliper.

    Warns
    -----
    MatchingWarning
        Before the TWFE fit, when treated-group rows get no match (matching
        without replacement used up the pool, or off support) or fewer than
        ``k`` (pool used up, or a pool smaller than ``k``).

    Examples
    --------
    >>> import staggerlab as sl
    >>> df = sl.simulate.staggered(300, 8, never_share=0.7, n_controls=2, seed=3)
    >>> res = psm_did(df, y="y", treat="treat", unit="unit", time="time", covariates=["x1", "x2"], k=2)
    >>> res.n_treated_matched == res.n_treated
    True
    """
    covariates = list(covariates)
    controls = list(controls or [])
    if not covariates:
        raise ArgumentTypeError("give at least one covariate for the propensity score")
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ArgumentError(f"k must be a positive integer, got {k!r}")
    if caliper is not None and not caliper > 0:
        raise ArgumentError(f"caliper must be > 0 (in sd of the logit score), got {caliper}")
    if keep not in ("rows", "units"):
        raise ArgumentError(f"keep must be 'rows' or 'units', got {keep!r}")
    sd_ = prepare(
        data, y=y, unit=unit, time=time, treat=treat,
        controls=list(dict.fromkeys([*covariates, *controls])), cluster=cluster,
    )
    # the caller's names (unit/time may come from a Panel); sd_.frame may rename some
    y, unit, time, cluster = (sd_.caller(c) for c in (sd_.y, sd_.unit, sd_.time, sd_.cluster))
    frame = sd_.frame.with_columns((pl.col(COHORT) > 0).cast(pl.Int8).alias(GROUP))
    cov_cols = [sd_.name(c) for c in covariates]
    group = frame[GROUP].to_numpy().astype(bool)
    if group.all():
        raise TreatmentError("every unit is eventually treated: there is no never-treated pool to match to")
    X = frame.select(pl.col(c).cast(pl.Float64) for c in cov_cols).to_numpy()
    tvals = frame[sd_.time].to_numpy()
    strata = np.unique(tvals) if by_year else [None]
    score = np.full(frame.height, np.nan)
    logits: dict[Any, LogitFit] = {}
    for s in strata:
        sel = np.ones(frame.height, dtype=bool) if s is None else tvals == s
        if s is not None and (group[sel].all() or not group[sel].any()):
            continue  # nothing to match in this period
        try:
            lf = fit_logit(X[sel], group[sel], names=covariates)
        except (SeparationError, CollinearityError) as err:
            where = "" if s is None else f" (period {s})"
            raise type(err)(f"{err}{where}") from None
        logits["pooled" if s is None else s] = lf
        score[sel] = lf.linear_predictor(X[sel])
    fitted = np.isfinite(score)
    cal_abs = None if caliper is None else float(caliper * np.std(score[fitted], ddof=1))
    t_idx_all, c_idx_all, dist_all = [], [], []
    ran_out_all = []  # treated rows left short because matching without replacement used up the pool
    small_pools = {}  # stratum -> pool size, where the pool has fewer than k rows
    for s in strata:
        sel = fitted if s is None else fitted & (tvals == s)
        it = np.flatnonzero(sel & group)
        ic = np.flatnonzero(sel & ~group)
        if it.size == 0 or ic.size == 0:
            continue
        if replace:
            isel, dsel = nn_replace(score[it], score[ic], int(k))
            if cal_abs is not None:
                isel = np.where(dsel <= cal_abs, isel, -1)
            if ic.size < k:
                small_pools[s] = ic.size
        else:
            isel, dsel, ran_out = nn_noreplace(score[it], score[ic], int(k), np.inf if cal_abs is None else cal_abs)
            ran_out_all.append(it[ran_out])
        ok = isel >= 0
        rows_t = np.repeat(it, k).reshape(-1, k)
        t_idx_all.append(rows_t[ok])
        c_idx_all.append(ic[isel[ok]])
        dist_all.append(dsel[ok])
    t_idx = np.concatenate(t_idx_all) if t_idx_all else np.empty(0, dtype=np.int64)
    c_idx = np.concatenate(c_idx_all) if c_idx_all else np.empty(0, dtype=np.int64)
    dist = np.concatenate(dist_all) if dist_all else np.empty(0)
    n_treated = int(group.sum())
    n_m = np.bincount(t_idx, minlength=frame.height)  # matches per treated row
    short = np.concatenate(ran_out_all) if ran_out_all else np.empty(0, dtype=np.int64)
    n_used_up = int((n_m[short] == 0).sum())
    if t_idx.size == 0:
        raise NoCommonSupportError(
            f"no common support: none of the {n_treated} treated-group row(s) has a never-treated row "
            + ("in the same period " if by_year else "")
            + ("within the caliper" if cal_abs is not None else "")
            + "; widen the caliper, pool the periods, or check the covariates"
        )
    _warn_short_matches(
        n_treated=n_treated, n_matched=int((n_m > 0).sum()), n_used_up=n_used_up,
        n_partial=int(short.size) - n_used_up, small_pools=small_pools, k=int(k),
        by_year=by_year, caliper=cal_abs is not None,
    )
    matched_t = np.unique(t_idx)
    # each treated row spreads weight 1 over its matches: the weights of the "after" balance
    w_c = np.bincount(c_idx, weights=1.0 / n_m[t_idx], minlength=frame.height)
    it_all = np.flatnonzero(group)
    ic_all = np.flatnonzero(~group)
    bal = balance_table(
        X[it_all], X[ic_all], covariates,
        w_t_after=(n_m[it_all] > 0).astype(float), w_c_after=w_c[ic_all],
    )
    keep_rows = np.zeros(frame.height, dtype=bool)
    keep_rows[matched_t] = True
    keep_rows[c_idx] = True
    if keep == "units":
        units_kept = frame.filter(pl.Series(keep_rows))[sd_.unit].unique()
        keep_rows = frame[sd_.unit].is_in(units_kept.implode()).to_numpy()
    sample = sd_.as_caller(frame.filter(pl.Series(keep_rows)))
    if sample[treat].n_unique() < 2:
        raise NoCommonSupportError("the matched sample has no variation in the treatment; nothing to estimate")
    try:
        fit = feols(Formula.of(y, [treat, *controls], [unit, time]), sample, vcov={"CRV1": quote(cluster)})
    except (CollinearityError, EmptyPanelError, VcovError) as err:
        # what a small matched sample does to the fit: say so with the matching counts
        raise type(err)(
            f"{err} (TWFE on the matched sample of {sample.height} row(s), with {matched_t.size} of {n_treated} "
            "treated-group row(s) matched)"
        ) from None
    ids = frame.select(sd_.unit, sd_.time)
    u_ids, t_ids = ids[sd_.unit].to_numpy(), ids[sd_.time].to_numpy()
    matches = pl.DataFrame(
        {
            f"{unit}": u_ids[t_idx],
            f"{time}": t_ids[t_idx],
            f"match_{unit}": u_ids[c_idx],
            f"match_{time}": t_ids[c_idx],
            "distance": dist,
        }
    )
    pscore = frame.select(pl.col(sd_.unit).alias(unit), pl.col(sd_.time).alias(time), GROUP).with_columns(
        pl.Series("logit_score", score), pl.Series("pscore", special.expit(score))
    )
    return PsmDidResult(
        fit=fit, treat=treat, sample=sample, matches=matches, pscore=pscore, logits=logits,
        balance_frame=bal, n_treated=n_treated, n_treated_matched=int(matched_t.size),
        n_pool=int((~group).sum()), k=int(k), replace=replace, by_year=by_year, keep=keep,
        caliper_abs=cal_abs, n_used_up=n_used_up,
    )


def _warn_short_matches(*, n_treated: int, n_matched: int, n_used_up: int, n_partial: int,
                        small_pools: dict[Any, int], k: int, by_year: bool, caliper: bool) -> None:
    """Say, before any fit, which treated-group rows got fewer than ``k`` matches and why."""
    if n_used_up:
        warnings.warn(
            f"{n_used_up} of {n_treated} treated-group row(s) have no match: matching without replacement used up "
            f"the never-treated pool{' of their period' if by_year else ''} ({k} per treated row, highest score "
            "first); they are not in the matched sample. Match with replacement, lower k, or add control units",
            MatchingWarning, stacklevel=3,
        )
    if n_partial:
        warnings.warn(
            f"{n_partial} treated-group row(s) got fewer than k={k} matches: matching without replacement used up "
            f"the never-treated pool{' of their period' if by_year else ''}",
            MatchingWarning, stacklevel=3,
        )
    n_off = n_treated - n_matched - n_used_up
    if n_off:
        where = " or ".join((["within the caliper"] if caliper else []) + (["in their period"] if by_year else []))
        warnings.warn(
            f"{n_off} of {n_treated} treated-group row(s) have no never-treated row {where} (off common support) "
            "and are not in the matched sample",
            MatchingWarning, stacklevel=3,
        )
    if small_pools:
        smallest = min(small_pools.values())
        where = f" in {len(small_pools)} period(s), down to {smallest} row(s)" if by_year else f" ({smallest} row(s))"
        warnings.warn(
            f"fewer than k={k} matches exist: the never-treated pool has fewer than {k} rows{where}, so treated "
            "rows get every pool row and fewer than k matches",
            MatchingWarning, stacklevel=3,
        )
