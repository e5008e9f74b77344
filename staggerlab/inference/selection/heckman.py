"""Heckman (1979) two-step selection correction, with optional unit/time FE.

Step 1: pooled probit of the 0/1 ``selection`` column on ``selection_vars``
(plus an intercept) over every row with observed selection variables,
whatever its outcome (:func:`probit`, Newton-Raphson with the analytic
Hessian; SEs from the inverse observed information, as statsmodels'
``Probit``). Step 2: on the selected rows with an observed outcome, regress ``y`` on
``outcome_vars`` and the inverse Mills ratio ``imr = phi(w'g) / Phi(w'g)``,
with unit and time FE absorbed by :func:`staggerlab.feols` when given.

Variance of the step-2 coefficients:

* no FE and no ``cluster``: Heckman's textbook two-step correction (Greene,
  *Econometric Analysis*, eq. for ``Est.Asy.Var[b, b_lambda]``; Stata
  ``heckman ..., twostep``):
  ``V = B [s2 X'X - b_l^2 X'D X + b_l^2 X'D W V_g W'D X] B`` with ``B = (X'X)^-1``,
  ``D = diag(d_i)``, ``d_i = imr_i (imr_i + w_i'g)``,
  ``s2 = e'e/n + b_l^2 mean(d)`` and ``V_g`` the probit variance. The
  implied ``sigma = sqrt(s2)`` and ``rho = b_l / sigma`` are reported (not
  truncated to [-1, 1]). Inference uses the normal distribution.
* otherwise (FE and/or ``cluster``, or ``outcome_sample="all"``): the two steps are stacked as one
  M-estimator and the sandwich is taken with the *exact* Jacobian of the
  stacked sample moments (a clustered Murphy-Topel correction). With ``M``
  the FE residual maker, ``Xt = M X`` and ``ut`` the step-2 residuals, the
  influence of row ``i`` on the step-2 coefficients is
  ``a_i = Xt_i ut_i - J H1^-1 psi1_i`` with ``psi1_i`` the probit score and
  ``H1`` its Hessian, and
  ``J = b_l Xt' D W - e_l (ut' D W)`` the derivative of the step-2 moments
  with respect to the probit coefficients (``e_l`` picks the IMR row).
  ``V = c B (sum_g a_g a_g') B`` with ``B = (Xt'Xt)^-1``, clusters summed over
  all step-1 rows (selected or not), and ``c`` pyfixest's CRV1 factor of the
  step-2 regression, ``(n-1)/(n-df_k) G/(G-1)`` (df_k counts FE levels, not
  those nested in the cluster; ``G`` = clusters in the step-1 sample); t
  tests with ``G - 1`` df. Without ``cluster`` every row is its own cluster
  with the HC1 factor ``n/(n-df_k)`` and t tests with ``n - df_k`` df.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import optimize, special, stats

from ...errors import (
    CollinearityError,
    ConvergenceError,
    MissingOutcomeError,
    MissingValueError,
    MissingValueWarning,
    SelectionError,
    SeparationError,
    StaggerlabWarning,
)
from ...panels.panel import (
    check_columns,
    check_numeric,
    column_list,
    factorize_column,
    finite_mask,
    missing_columns,
    to_polars,
)
from ..regression.feols import feols
from ..regression.formula import Formula, quote
from ..regression.results import CoefTable
from ..regression.vcov import cluster_parts, clustered_meat, parse_vcov, ssc_factor
from ..results import Result
from .inputs import check_reserved

__all__ = ["probit", "ProbitResult", "heckman", "HeckmanResult", "SeparationError", "SelectionError"]


def _mills(z: np.ndarray) -> np.ndarray:
    """phi(z) / Phi(z), stable far in the left tail."""
    return np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - special.log_ndtr(z))


def _check_separation(X: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """Raise if some b != 0 has (2y-1) x'b >= 0 for every row (Konis 2007's LP)."""
    s = np.where(y > 0, 1.0, -1.0)
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    A = (X / scale) * s[:, None]
    k = X.shape[1]
    res = optimize.linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(len(y)), bounds=[(-1, 1)] * k, method="highs")
    if res.status != 0 or -res.fun <= 1e-7 * len(y):
        return
    fit = A @ res.x
    # keep only genuine separating directions (not solver feasibility slack)
    if fit.min() < -1e-9 * np.abs(fit).max():
        return
    n_perfect = int((fit > 1e-9 * np.abs(fit).max()).sum())
    direction = {n: float(v) for n, v in zip(names, res.x / scale) if abs(v) > 1e-8}
    raise SeparationError(
        f"perfect or quasi-perfect separation: a combination of the selection variables ({direction}) "
        f"predicts the outcome exactly for {n_perfect} row(s), so the probit MLE does not exist; "
        "drop or recode the separating variable(s)"
    )


@dataclass
class ProbitResult(Result):
    """A probit fit (created by :func:`probit`)."""

    coefnames: list[str]
    beta: np.ndarray
    vcov_matrix: np.ndarray
    loglik: float
    n_iter: int
    nobs: int
    hessian: np.ndarray
    scores: np.ndarray  # N x k per-row score at the MLE

    def coef(self) -> dict[str, float]:
        """Coefficients by name."""
        return {n: float(v) for n, v in zip(self.coefnames, self.beta)}

    def se(self) -> dict[str, float]:
        """Standard errors (inverse observed information) by name."""
        return {n: float(v) for n, v in zip(self.coefnames, np.sqrt(np.diag(self.vcov_matrix)))}

    def vcov(self) -> np.ndarray:
        """Inverse of the negative Hessian at the MLE."""
        return self.vcov_matrix.copy()

    def tidy(self) -> pl.DataFrame:
        """``term, estimate, se, zstat, pvalue``."""
        se = np.sqrt(np.diag(self.vcov_matrix))
        z = self.beta / se
        return pl.DataFrame(
            {"term": self.coefnames, "estimate": self.beta, "se": se, "zstat": z, "pvalue": 2 * stats.norm.sf(np.abs(z))}
        )

    def summary(self) -> str:
        """Printable table."""
        lines = [f"probit: {self.nobs:,} observations, log-likelihood {self.loglik:.4f} ({self.n_iter} iterations)",
                 f"{'term':<16}{'estimate':>12}{'se':>12}{'z':>9}{'p':>9}"]
        for r in self.tidy().iter_rows(named=True):
            lines.append(f"{r['term'][:16]:<16}{r['estimate']:>12.5f}{r['se']:>12.5f}{r['zstat']:>9.2f}{r['pvalue']:>9.4f}")
        return "\n".join(lines)


def probit(X: np.ndarray, y: np.ndarray, names: list[str] | None = None, *, tol: float = 1e-10,
           maxiter: int = 100, check_separation: bool = True) -> ProbitResult:
    """Probit MLE by Newton-Raphson on the analytic Hessian (with step halving).

    Parameters
    ----------
    X : ndarray (N x k)
        Regressors (include a column of ones for an intercept).
    y : ndarray (N,)
        0/1 outcome.
    names : list of str, optional
    tol : float
        Stop when the Newton decrement ``g' H^-1 g`` falls below ``tol``.
    maxiter : int
    check_separation : bool
        Run the linear-programming separation check first.

    Raises
    ------
    SeparationError
        (Quasi-)complete separation: the MLE does not exist.
    ConvergenceError
        Newton did not converge within ``maxiter``.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    N, k = X.shape
    names = list(names) if names is not None else [f"x{j}" for j in range(k)]
    if np.linalg.matrix_rank(X) < k:
        raise CollinearityError(f"probit regressors {names} are collinear; drop one")
    if check_separation:
        _check_separation(X, y, names)
    q = 2 * y - 1

    def loglik(b: np.ndarray) -> float:
        return float(special.log_ndtr(q * (X @ b)).sum())

    b = np.zeros(k)
    ll = loglik(b)
    for it in range(1, maxiter + 1):
        xb = X @ b
        lam = q * _mills(q * xb)  # generalized residual
        g = X.T @ lam
        w = lam * (lam + xb)
        H = -(X * w[:, None]).T @ X
        step = np.linalg.solve(-H, g)
        t = 1.0
        while True:
            nb = b + t * step
            nll = loglik(nb)
            if nll >= ll - 1e-12 * abs(ll) or t < 1e-10:
                break
            t /= 2
        b, ll = nb, nll
        if float(g @ step) < tol:
            break
    else:
        raise ConvergenceError(f"probit did not converge in {maxiter} Newton iterations")
    xb = X @ b
    lam = q * _mills(q * xb)
    w = lam * (lam + xb)
    H = -(X * w[:, None]).T @ X
    V = np.linalg.inv(-H)
    return ProbitResult(names, b, (V + V.T) / 2, ll, it, N, H, X * lam[:, None])


class HeckmanResult(CoefTable):
    """A two-step Heckman selection model (created by :func:`heckman`).

    Attributes
    ----------
    probit : ProbitResult
        The selection equation.
    outcome_fit : Feols
        The step-2 regression with naive (uncorrected) SEs.
    variance : str
        ``"heckman-twostep"`` (textbook) or ``"stacked-CRV1 by c"`` / ``"stacked-HC1"``.
    sigma, rho : float or None
        Textbook estimates (no-FE case only).
    n_selected : int
        Rows of the probit sample with ``selection == 1``.
    """

    def __init__(self, probit_fit: ProbitResult, outcome_fit: Any, beta: np.ndarray, V: np.ndarray,
                 coefnames: list[str], df_t: int | None, variance: str, n_selected: int, n_clusters: int | None,
                 sigma: float | None, rho: float | None):
        self.probit = probit_fit
        self.outcome_fit = outcome_fit
        self._beta = beta
        self._V = V
        self.coefnames = coefnames
        self._df_t = df_t
        self.variance = variance
        self.n_selected = n_selected
        self.n_clusters = n_clusters
        self.sigma = sigma
        self.rho = rho

    @property
    def imr_coef(self) -> float:
        """Coefficient on the inverse Mills ratio (``rho * sigma``)."""
        return float(self._beta[self.coefnames.index("imr")])

    @property
    def imr_se(self) -> float:
        """Its corrected standard error."""
        j = self.coefnames.index("imr")
        return float(np.sqrt(self._V[j, j]))

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """Step-2 rows: ``term, estimate, se, se_naive, tstat, pvalue, ci_low, ci_high``."""
        naive = self.outcome_fit.se()
        return super().tidy(level).insert_column(3, pl.Series("se_naive", [naive[n] for n in self.coefnames]))

    def summary(self) -> str:
        """Printable: selection equation, outcome equation with corrected SEs."""
        d = self.outcome_fit.design
        lines = [
            "Heckman two-step selection model",
            f"Selected: {self.n_selected:,} of {self.probit.nobs:,}   Outcome equation: {d.nobs:,} rows"
            f"   Fixed effects: {' + '.join(d.fixef) or 'none'}"
            f"   Variance: {self.variance}",
            "",
            "Selection equation (probit)",
            self.probit.summary(),
            "",
            "Outcome equation",
            f"{'term':<16}{'estimate':>12}{'se':>12}{'se naive':>12}{'t':>9}{'p':>9}",
        ]
        for r in self.tidy().iter_rows(named=True):
            lines.append(
                f"{r['term'][:16]:<16}{r['estimate']:>12.5f}{r['se']:>12.5f}{r['se_naive']:>12.5f}"
                f"{r['tstat']:>9.2f}{r['pvalue']:>9.4f}"
            )
        if self.rho is not None:
            lines.append(f"\nsigma = {self.sigma:.5f}   rho = {self.rho:.5f}")
        return "\n".join(lines)


def heckman(
    data: Any,
    *,
    y: str,
    selection: str,
    outcome_vars: list[str] | tuple[str, ...],
    selection_vars: list[str] | tuple[str, ...],
    unit: str | None = None,
    time: str | None = None,
    cluster: str | None = None,
    outcome_sample: Literal["selected", "all"] = "selected",
) -> HeckmanResult:
    """Heckman two-step selection model (see the module docstring for the variance).

    Parameters
    ----------
    data : polars.DataFrame, pandas.DataFrame or Panel
    y : str
        Outcome (may be missing where ``selection == 0``).
    selection : str
        0/1 (or boolean) column: 1 where ``y`` is observed.

        Step 1 (the probit) uses every row whose ``selection``,
        ``selection_vars`` and ``cluster`` are observed, whatever its outcome;
        rows missing one of those leave both steps (``MissingValueWarning``
        naming the columns). A row that belongs in the outcome equation but
        misses ``y``, an outcome variable or an FE stays in the probit and
        leaves the outcome equation only (``MissingValueWarning``).
    outcome_vars, selection_vars : list of str
        Regressors of the outcome and of the (pooled) probit selection
        equation; an intercept is added to the probit (and to the outcome
        equation when there are no FE). ``selection_vars`` should contain an
        exclusion restriction (a variable not in ``outcome_vars``).
    unit, time : str, optional
        FE absorbed in the outcome equation.
    cluster : str, optional
        Cluster column for the corrected (stacked) variance.
    outcome_sample : {"selected", "all"}
        ``"selected"`` (Heckman's sample-selection model): the outcome equation
        uses the rows with ``selection == 1`` and ``imr = phi/Phi``.
        ``"all"`` (the treatment-effects / control-function variant common in
        applied DID work, where ``selection`` is the treatment): every row
        enters the outcome equation with the probit's generalized residual,
        ``phi/Phi`` if selected and ``-phi/(1-Phi)`` if not; ``y`` must then be
        observed everywhere, and the stacked variance is always used.

    Returns
    -------
    HeckmanResult

    Raises
    ------
    SeparationError
        The selection variables perfectly predict ``selection``.
    SelectionError
        ``selection`` is not 0/1 or has no variation.
    MissingOutcomeError
        The outcome variables are missing on every selected row, or (with
        ``outcome_sample="all"``) on every unselected row.
    MissingValueError
        Every row misses a selection variable.
    """
    frame = to_polars(data)
    outcome_vars, selection_vars = list(outcome_vars), list(selection_vars)
    fe = [c for c in (unit, time) if c is not None]
    check_columns(frame, [y, selection, *outcome_vars, *selection_vars, *fe, *([cluster] if cluster else [])])
    check_numeric(frame, [y, selection, *outcome_vars, *selection_vars], "heckman variable")
    # the outcome equation's frame gets the inverse Mills ratio as column "imr"
    check_reserved({"outcome": [y], "outcome variable": outcome_vars, "unit": [unit] if unit else [],
                    "time": [time] if time else [], "cluster": [cluster] if cluster else []}, ["imr"], "heckman")
    if not set(selection_vars) - set(outcome_vars):
        warnings.warn(
            "no exclusion restriction: every selection variable is also in the outcome equation, so the "
            "correction is identified only by the probit's functional form",
            StaggerlabWarning,
            stacklevel=2,
        )
    if outcome_sample not in ("selected", "all"):
        raise SelectionError(f"outcome_sample must be 'selected' or 'all', got {outcome_sample!r}")
    s_all = frame[selection].cast(pl.Float64).to_numpy()
    # step 1 needs only the selection side: a missing outcome never removes a row from the probit
    probit_cols = [selection, *selection_vars, *([cluster] if cluster else [])]
    ok1 = finite_mask(frame, probit_cols)
    if not ok1.any():
        raise MissingValueError(
            f"every row has a missing or non-finite value in {column_list(missing_columns(frame, probit_cols))}; "
            "the selection equation has no rows"
        )
    if not np.isin(s_all[ok1], (0.0, 1.0)).all():
        raise SelectionError(f"selection column {selection!r} must be 0/1 (or boolean)")
    n_drop = int((~ok1).sum())
    if n_drop:
        warnings.warn(
            f"dropped {n_drop} of {frame.height} row(s) with a missing or non-finite value in "
            f"{column_list(missing_columns(frame, probit_cols, ~ok1))} from both steps",
            MissingValueWarning,
            stacklevel=2,
        )
    sub = frame.filter(pl.Series(ok1))
    s = s_all[ok1]
    if s.min() == s.max():
        raise SelectionError(f"selection column {selection!r} has no variation (all {int(s[0])})")
    outcome_cols = [y, *outcome_vars, *fe]
    ok2 = finite_mask(sub, outcome_cols)
    wanted = s == 1 if outcome_sample == "selected" else np.ones(sub.height, dtype=bool)
    for value in (1.0, 0.0) if outcome_sample == "all" else (1.0,):
        if not (ok2 & (s == value)).any():
            cols = column_list(missing_columns(sub, outcome_cols, s == value))
            if value == 0.0:
                raise MissingOutcomeError(
                    f"outcome_sample='all' fits the outcome equation on unselected rows too, but every row "
                    f"with {selection} == 0 has a missing value in {cols} (the usual coding of a selection sample); use "
                    "outcome_sample='selected'"
                )
            raise MissingOutcomeError(
                f"every row with {selection} == 1 has a missing value in {cols}: the outcome equation has no row"
            )
    lost = wanted & ~ok2
    if lost.any():
        which = "selected row(s)" if outcome_sample == "selected" else "row(s)"
        warnings.warn(
            f"{int(lost.sum())} {which} with a missing or non-finite value in "
            f"{column_list(missing_columns(sub, outcome_cols, lost))} stay in the selection probit but leave "
            "the outcome equation",
            MissingValueWarning,
            stacklevel=2,
        )
    W = np.column_stack([np.ones(sub.height)] + [sub[c].cast(pl.Float64).to_numpy() for c in selection_vars])
    pr = probit(W, s, ["Intercept", *selection_vars])
    idx = W @ pr.beta
    if outcome_sample == "selected":
        imr_all = _mills(idx)
    else:
        q = 2 * s - 1
        imr_all = q * _mills(q * idx)  # d imr / d idx = -imr (imr + idx) in both branches
    selected = np.flatnonzero(wanted & ok2)  # outcome-equation rows, as positions in the step-1 sample
    sframe = sub[selected].with_columns(imr=pl.Series(imr_all[selected]))
    fml = Formula.of(y, [*outcome_vars, "imr"], fe)
    textbook = not fe and cluster is None and outcome_sample == "selected"
    vc = "iid" if textbook else ({"CRV1": quote(cluster)} if cluster else "hetero")
    fit = feols(fml, sframe, vcov=vc)
    names = fit.coefnames
    if "imr" not in names:
        raise CollinearityError("the inverse Mills ratio is collinear with the outcome regressors / FE")
    beta = fit.beta
    d = fit.design
    rows2 = selected[d.rows]  # step-2 rows as positions in the step-1 sample
    Xt, ut = d.Xw, fit.uw
    j = names.index("imr")
    bl = beta[j]
    delta = imr_all[rows2] * (imr_all[rows2] + idx[rows2])
    W2 = W[rows2]
    B = d.bread
    if textbook:
        n = Xt.shape[0]
        s2 = float(ut @ ut) / n + bl**2 * float(delta.mean())
        XDW = (Xt * delta[:, None]).T @ W2
        meat = s2 * (Xt.T @ Xt) - bl**2 * (Xt * delta[:, None]).T @ Xt + bl**2 * XDW @ pr.vcov_matrix @ XDW.T
        V = B @ meat @ B
        sigma = float(np.sqrt(s2))
        return HeckmanResult(pr, fit, beta, (V + V.T) / 2, names, None, "heckman-twostep", int((s == 1).sum()),
                             None, sigma, float(bl / sigma))
    # stacked two-step M-estimator, exact Jacobian
    DW = W2 * delta[:, None]
    J = bl * Xt.T @ DW
    J[j] -= ut @ DW
    A = np.zeros((sub.height, len(names)))
    A[rows2] = Xt * ut[:, None]
    A -= pr.scores @ np.linalg.solve(pr.hessian, J.T)
    N2 = d.nobs
    spec = parse_vcov({"CRV1": quote(cluster)} if cluster is not None else "hetero")
    df_k = d.df_k(spec)
    if cluster is not None:
        # clusters counted on the step-1 sample: the probit scores are rows of A too
        parts = cluster_parts([factorize_column(sub[cluster])])
        G = parts[0][2]
        meat = clustered_meat(A, parts)
        df_t, label = G - 1, f"stacked-CRV1 by {cluster}"
    else:
        meat, G = A.T @ A, None
        df_t, label = N2 - df_k, "stacked-HC1"
    # the factor scales the bread before the products, as this estimator always did (last-bit identity)
    V = ssc_factor(spec.kind, N2, df_k, G) * B @ meat @ B
    return HeckmanResult(pr, fit, beta, (V + V.T) / 2, names, df_t, label, int((s == 1).sum()), G, None, None)
