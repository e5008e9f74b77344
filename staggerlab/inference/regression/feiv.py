"""``feiv``: two-stage least squares with absorbed fixed effects, and
weak-instrument diagnostics (first-stage F, Kleibergen-Paap rk, Cragg-Donald).

Conventions follow pyfixest's ``feols("y ~ x | fe | d ~ z")``: the small-sample
factor of the second stage counts the ``k`` second-stage regressors (included
exogenous + endogenous) plus the FE degrees of freedom (FE nested in a cluster
not counted); the first stage counts the included exogenous regressors plus
the excluded instruments instead of ``k``.

Diagnostics (all computed after partialling the FEs and the included
exogenous regressors out of the endogenous regressors ``Y`` (N x K) and the
excluded instruments ``Z`` (N x L); ``Pi = (Z'Z)^-1 Z'Y``, ``E = Y - Z Pi``):

* ``kp_wald_f``: Kleibergen-Paap (2006) rk Wald statistic for the null
  ``rank(Pi) = K - 1``, divided by ``L``, with ``Var(vec Pi)`` estimated
  from the first-stage residuals ``E`` with the fit's vcov type and the
  first stage's small-sample factor. With one endogenous regressor it is
  exactly the first-stage Wald F of the excluded instruments (pyfixest's
  ``_f_stat_1st_stage``). With ``vcov="iid"`` it is the Cragg-Donald F.
  (ivreg2's ``widstat`` uses the slightly different factor
  ``(N - L_all - dofminus)/N * (G-1)/G`` instead of the CRV1 factor.)
* ``kp_lm`` / ``kp_lm_pvalue``: Kleibergen-Paap rk LM statistic (the
  under-identification test of ivreg2): the same rk statistic with
  ``Var(vec Pi)`` estimated from ``Y`` itself (the reduced form under the
  null) and no small-sample factor; chi-squared with ``L - K + 1`` df. With
  ``vcov="iid"`` it is Anderson's canonical-correlation LM, ``N * rho_K^2``.
* ``cd_wald_f``: Cragg-Donald Wald F, the smallest eigenvalue of
  ``S^-1/2' Y'P_Z Y S^-1/2 / L`` with ``S = E'E / (N - df_k1)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import linalg as sla
from scipy import stats

from ...errors import (
    CollinearityError,
    CollinearityWarning,
    FormulaError,
    IdentificationError,
    VcovError,
)
from ...panels.panel import to_polars
from ..results import Result
from .design import Design, build_design
from .formula import Term, parse_formula, quote, split_top
from .rank import independent_columns
from .results import DesignFit
from .vcov import VcovSpec, parse_vcov, residual_variance, sandwich

__all__ = ["feiv", "FeivResult", "FirstStage", "IVDiagnostics", "IdentificationError", "IVFormula", "parse_iv_formula"]


@dataclass(frozen=True)
class IVFormula:
    """A parsed ``y ~ exog | fe | endog ~ instruments`` formula."""

    depvar: str
    exog: tuple[str, ...]
    fixef: tuple[str, ...]
    endog: tuple[str, ...]
    instruments: tuple[str, ...]
    intercept: bool

    def __str__(self) -> str:
        ex = " + ".join(map(quote, self.exog)) if self.exog else "1"
        fe = f" | {' + '.join(map(quote, self.fixef))}" if self.fixef else ""
        return (f"{quote(self.depvar)} ~ {ex}{fe} | {' + '.join(map(quote, self.endog))} ~ "
                f"{' + '.join(map(quote, self.instruments))}")


def _columns(terms: tuple[Term, ...], fml: str) -> tuple[str, ...]:
    for t in terms:
        if not t.column:
            raise FormulaError(
                f"term {t.text!r} of IV formula {fml!r} is not a column name; feiv takes columns "
                "(quote names with spaces or symbols in backticks; build other terms as columns)"
            )
    return tuple(t.text for t in terms)


def parse_iv_formula(fml: str) -> IVFormula:
    """Parse ``"y ~ x1 + x2 | fe1 + fe2 | d1 + d2 ~ z1 + z2 + z3"`` (FE part optional).

    Raises
    ------
    FormulaError
        On anything outside that subset (one outcome, column names, backtick-quoted
        when they hold spaces or symbols).
    """
    if not isinstance(fml, str):
        raise FormulaError(f"IV formula {fml!r} must be a string such as 'y ~ x | fe1 + fe2 | d ~ z'")
    parts = [p for _, p in split_top(fml, "|")]
    tildes = [len(split_top(p, "~")) - 1 for p in parts]
    if sum(tildes) != 2:
        raise FormulaError(
            f"IV formula {fml!r} must have two '~', as in 'y ~ x | fe1 + fe2 | d ~ z1 + z2'"
        )
    if len(parts) not in (2, 3) or tildes[-1] != 1 or tildes[0] != 1:
        raise FormulaError(
            f"IV formula {fml!r} must read 'y ~ exog | fe | endog ~ instruments' "
            "(the FE part may be left out; the IV part comes last)"
        )
    (_, lhs), (_, exog) = split_top(parts[0], "~")
    (_, endog), (_, instr) = split_top(parts[-1], "~")
    fe = parts[1] if len(parts) == 3 else ""
    # the foundation's parser validates names and reads the intercept rule
    endo = parse_formula(f"{endog} ~ {instr}")
    end_names = _columns(endo.depvars, fml)
    try:
        main = parse_formula(f"{lhs} ~ {exog} + {endog}" + (f" | {fe}" if fe else ""))
    except FormulaError as err:
        # the merged formula is ours, not the user's: name a variable both exogenous and endogenous here
        try:
            exog_alone = [t.text for t in parse_formula(f"{lhs} ~ {exog}").regressors]
        except FormulaError:
            exog_alone = []
        both = [e for e in end_names if e in exog_alone]
        if both:
            raise FormulaError(
                f"{', '.join(repr(e) for e in both)} listed both as exogenous regressor and as endogenous "
                f"variable in {fml!r}; keep it in one place"
            ) from None
        raise FormulaError(f"{err} (read from the IV formula {fml!r})") from None
    if len(main.depvars) != 1:
        raise FormulaError(f"feiv takes one outcome, got {[t.text for t in main.depvars]} in {fml!r}")
    if not all(isinstance(fe, str) for fe in main.fixef):
        raise FormulaError(f"feiv takes fixed-effect columns, not interactions 'a^b', in {fml!r}; build the column")
    depvar = _columns(main.depvars, fml)[0]
    regs = _columns(main.regressors, fml)
    instruments = _columns(endo.regressors, fml)
    exog_names = tuple(r for r in regs if r not in end_names)
    return _checked(IVFormula(depvar, exog_names, main.fixef, end_names, instruments, main.intercept), fml)


def _checked(f: IVFormula, fml: str) -> IVFormula:
    clash = set(f.instruments) & (set(f.exog) | set(f.endog) | {f.depvar})
    if clash:
        raise FormulaError(
            f"instrument(s) {sorted(clash)} also appear as outcome or regressor in {fml!r}; "
            "included exogenous regressors are instruments already"
        )
    if not f.instruments:
        raise FormulaError(f"no excluded instrument in {fml!r}")
    return f


def _pi_vcov(Zt: np.ndarray, R: np.ndarray, spec: VcovSpec, clusters: list[np.ndarray], N: int,
             df_k: int | None) -> np.ndarray:
    """Variance of ``vec(Pi)`` (column-major, endogenous-major) from "residuals" ``R``.

    ``df_k=None`` means no small-sample factor (the LM form).
    """
    K, L = R.shape[1], Zt.shape[1]
    A = np.linalg.inv(Zt.T @ Zt)
    if spec.kind == "iid":
        S = residual_variance(R.T @ R, N, df_k or 0)
        return np.kron(S, A)
    bread = np.kron(np.eye(K), A)
    # score of vec(Pi) for row i: e_i (x) z_i
    scores = (R[:, :, None] * Zt[:, None, :]).reshape(N, K * L)
    V, _, _ = sandwich(bread, scores, spec, clusters, N, df_k or 0, small_sample=df_k is not None)
    return V


def _sqrtm_sym(M: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((M + M.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def kp_rk_statistic(Yt: np.ndarray, Zt: np.ndarray, V_pi: np.ndarray) -> float:
    """Kleibergen-Paap (2006) rk statistic for ``rank(Pi) = K - 1``.

    ``Yt`` (N x K) and ``Zt`` (N x L) are the partialled-out endogenous
    regressors and excluded instruments, ``V_pi`` the variance of
    ``vec(Pi)`` (column-major). Normalisation as in ranktest:
    ``Theta = Rz' Pi Ry'^-1`` with ``Z'Z = Rz Rz'`` and ``Y'Y = Ry Ry'``.
    """
    K = Yt.shape[1]
    Pi = np.linalg.solve(Zt.T @ Zt, Zt.T @ Yt)
    Rz = np.linalg.cholesky(Zt.T @ Zt)
    Ry = np.linalg.cholesky(Yt.T @ Yt)
    Ry_inv = sla.solve_triangular(Ry, np.eye(K), lower=True)
    Theta = Rz.T @ Pi @ Ry_inv.T
    T = np.kron(Ry_inv, Rz.T)  # vec(Theta) = T vec(Pi)
    W = T @ V_pi @ T.T
    U, _, Vt = np.linalg.svd(Theta, full_matrices=True)
    Vm = Vt.T
    q = K - 1
    u12, u22 = U[:q, q:], U[q:, q:]
    v12, v22 = Vm[:q, q:], Vm[q:, q:]
    aq = np.vstack([u12, u22]) @ np.linalg.solve(u22, _sqrtm_sym(u22 @ u22.T))
    bq = _sqrtm_sym(v22 @ v22.T) @ np.linalg.solve(v22.T, np.vstack([v12, v22]).T)
    P = np.kron(bq, aq.T)
    lam = P @ Theta.reshape(-1, order="F")
    Om = P @ W @ P.T
    Om = (Om + Om.T) / 2
    return float(lam @ np.linalg.solve(Om, lam))


@dataclass(frozen=True)
class IVDiagnostics(Result):
    """Weak- and under-identification statistics of a :class:`FeivResult`."""

    n_endog: int
    n_instruments: int
    kp_wald_f: float
    kp_lm: float
    kp_lm_df: int
    kp_lm_pvalue: float
    cd_wald_f: float
    vcov_label: str

    def tidy(self) -> pl.DataFrame:
        """``statistic, value, df, pvalue`` (pvalue only for the LM test)."""
        return pl.DataFrame(
            {
                "statistic": ["Kleibergen-Paap rk Wald F", "Kleibergen-Paap rk LM", "Cragg-Donald Wald F"],
                "value": [self.kp_wald_f, self.kp_lm, self.cd_wald_f],
                "df": [self.n_instruments, self.kp_lm_df, self.n_instruments],
                "pvalue": [None, self.kp_lm_pvalue, None],
            },
            schema_overrides={"pvalue": pl.Float64},
        )

    def summary(self) -> str:
        """Printable diagnostics block."""
        return "\n".join(
            [
                f"Weak-instrument diagnostics ({self.n_endog} endogenous, {self.n_instruments} excluded "
                f"instrument(s); robust statistics use {self.vcov_label})",
                f"  Kleibergen-Paap rk Wald F : {self.kp_wald_f:12.4f}",
                f"  Kleibergen-Paap rk LM     : {self.kp_lm:12.4f}  Chi2({self.kp_lm_df}) p = {self.kp_lm_pvalue:.4g}",
                f"  Cragg-Donald Wald F       : {self.cd_wald_f:12.4f}",
            ]
        )


class FirstStage:
    """First-stage regression of one endogenous regressor on all instruments."""

    def __init__(self, endog: str, names: list[str], beta: np.ndarray, V: np.ndarray, df_t: int,
                 instruments: list[str]):
        self.endog = endog
        self.coefnames = names
        self.beta = beta
        self._V = V
        self.df_t = df_t
        self.instruments = instruments
        idx = [names.index(z) for z in instruments]
        b = beta[idx]
        self.f_stat = float(b @ np.linalg.solve(V[np.ix_(idx, idx)], b)) / len(idx)
        self.f_pvalue = float(stats.f.sf(self.f_stat, len(idx), df_t))

    def coef(self) -> dict[str, float]:
        """Coefficients by name."""
        return {n: float(v) for n, v in zip(self.coefnames, self.beta)}

    def se(self) -> dict[str, float]:
        """Standard errors by name."""
        return {n: float(v) for n, v in zip(self.coefnames, np.sqrt(np.diag(self._V)))}

    def vcov(self) -> np.ndarray:
        """Variance matrix of the first-stage coefficients."""
        return self._V.copy()

    def tidy(self) -> pl.DataFrame:
        """``endog, term, estimate, se, tstat, pvalue, instrument`` (excluded instrument flag)."""
        se = np.sqrt(np.diag(self._V))
        t = self.beta / se
        return pl.DataFrame(
            {
                "endog": [self.endog] * len(self.coefnames),
                "term": self.coefnames,
                "estimate": self.beta,
                "se": se,
                "tstat": t,
                "pvalue": 2 * stats.t.sf(np.abs(t), self.df_t),
                "instrument": [n in self.instruments for n in self.coefnames],
            }
        )


class FeivResult(DesignFit):
    """A fitted 2SLS model with absorbed fixed effects (created by :func:`feiv`).

    Attributes
    ----------
    design : Design
        The second-stage design (``Xw`` = demeaned exogenous + endogenous).
    first_stage : dict
        Endogenous name -> :class:`FirstStage`.
    diagnostics : IVDiagnostics
    """

    def __init__(self, formula: IVFormula, design: Design, spec: VcovSpec, beta: np.ndarray,
                 V: np.ndarray, df_t: int, G: int | None, uw: np.ndarray,
                 first_stage: dict[str, FirstStage], diagnostics: IVDiagnostics):
        self.formula = str(formula)
        self.parsed = formula
        self.design = design
        self.vcov_spec = spec
        self._beta = beta
        self._V = V
        self._df_t = df_t
        self._G = G
        self._uw = uw
        self.first_stage = first_stage
        self.diagnostics = diagnostics

    def summary(self) -> str:
        """Printable table: second stage, first-stage F per endogenous regressor, diagnostics."""
        lines = self.table_lines(f"feiv (2SLS): {self.formula}")
        lines.append("")
        for name, fs in self.first_stage.items():
            lines.append(f"First stage {name}: F({len(fs.instruments)}, {fs.df_t}) = {fs.f_stat:.4f}  p = {fs.f_pvalue:.4g}")
        lines.append(self.diagnostics.summary())
        return "\n".join(lines)


def feiv(
    fml: "str | IVFormula",
    data: Any,
    vcov: Any = None,
    weights: str | None = None,
    *,
    fixef_rm: Literal["singleton", "none"] = "singleton",
    na: Literal["drop", "raise"] = "drop",
    collin_tol: float = 1e-9,
    fixef_tol: float = 1e-12,
    fixef_maxiter: int = 100_000,
    demean_method: Literal["auto", "exact", "iterative"] = "auto",
) -> FeivResult:
    """Two-stage least squares with absorbed fixed effects.

    Parameters
    ----------
    fml : str or IVFormula
        ``"y ~ x1 + x2 | fe1 + fe2 | d1 + d2 ~ z1 + z2"`` (fixest syntax; the FE
        part may be left out, then an intercept is included; names with spaces
        or symbols in backticks). Included exogenous regressors ``x`` serve as
        their own instruments. An :class:`IVFormula` names its columns verbatim.
    data : polars.DataFrame, pandas.DataFrame or Panel
    vcov : str or dict, optional
        ``"iid"`` (default), ``"hetero"``, ``{"CRV1": "c"}`` or ``{"CRV1": "c1+c2"}``.
    weights : str, optional
        Column of positive analytic weights.
    fixef_rm, na, collin_tol, fixef_tol, fixef_maxiter, demean_method
        As in :func:`staggerlab.feols`. Rows with a missing value in any used
        column (outcome, regressors, instruments, FE, clusters) are dropped once,
        for both stages.

    Returns
    -------
    FeivResult
        Coefficients and SEs equal to pyfixest's ``feols`` IV fit; first-stage
        regressions in ``.first_stage``; diagnostics in ``.diagnostics`` (see
        the module docstring for their exact definitions).

    Raises
    ------
    IdentificationError
        Fewer excluded instruments than endogenous regressors (also after
        dropping collinear instruments).
    CollinearityError
        An endogenous regressor is collinear with the FEs/exogenous regressors.

    Examples
    --------
    >>> import numpy as np, polars as pl, staggerlab as sl
    >>> df = sl.simulate.staggered(300, 6, seed=2, n_controls=1)
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=df.height)
    >>> df = df.with_columns(z=z, d=0.8 * z + df["x1"] + rng.normal(size=df.height))
    >>> fit = feiv("y ~ treat | unit + time | d ~ z", df, vcov={"CRV1": "unit"})
    >>> sorted(fit.coef())
    ['d', 'treat']
    """
    f = _checked(fml, str(fml)) if isinstance(fml, IVFormula) else parse_iv_formula(fml)
    if len(f.instruments) < len(f.endog):
        raise IdentificationError(
            f"{len(f.endog)} endogenous regressor(s) {list(f.endog)} but only {len(f.instruments)} "
            f"excluded instrument(s) {list(f.instruments)}: the model is under-identified; add instruments"
        )
    frame = to_polars(data)
    spec = parse_vcov(vcov, frame.columns)
    if spec.kind == "CRV3":
        raise VcovError("feiv supports 'iid', 'hetero' and CRV1 (one- or two-way); CRV3 is not implemented")
    design, raw = build_design(
        frame,
        [*f.exog, *f.endog],
        f.fixef,
        extra=[f.depvar, *f.instruments],
        clusters=spec.clusters,
        weights=weights,
        intercept=f.intercept,
        fixef_rm=fixef_rm,
        na=na,
        collin_tol=collin_tol,
        fixef_tol=fixef_tol,
        fixef_maxiter=fixef_maxiter,
        demean_method=demean_method,
        stacklevel=4,
    )
    lost = [e for e in f.endog if e not in design.regressors]
    if lost:
        raise CollinearityError(
            f"endogenous regressor(s) {lost} are collinear with the fixed effects / exogenous regressors"
        )
    W = design.demean(raw)
    yw = np.ascontiguousarray(W[:, 0])
    Iw = W[:, 1:]
    Xw = design.Xw
    exog_names = [r for r in design.regressors if r not in f.endog]
    n_ex = len(exog_names)
    Xex = Xw[:, :n_ex]
    # instruments collinear with the exogenous block are dropped like feols drops regressors
    Zfull = np.hstack([Xex, Iw])
    sw2 = design.sw**2
    ss_instr = sw2 @ (raw[:, 1:] - (sw2 @ raw[:, 1:]) / sw2.sum()) ** 2
    ss = np.concatenate([np.full(n_ex, np.inf), ss_instr])
    kept = independent_columns(Zfull.T @ Zfull, np.where(np.isinf(ss), 1.0, ss), collin_tol)
    drop = [j - n_ex for j in range(Zfull.shape[1]) if j >= n_ex and j not in kept]
    instr = list(f.instruments)
    if drop:
        warnings.warn(f"dropped collinear instrument(s) {[instr[j] for j in drop]}", CollinearityWarning, stacklevel=2)
        keep = [j for j in range(len(instr)) if j not in drop]
        instr = [instr[j] for j in keep]
        Iw = Iw[:, keep]
    K, L = len(f.endog), len(instr)
    if L < K:
        raise IdentificationError(
            f"after dropping collinear instruments {L} excluded instrument(s) remain for {K} endogenous "
            "regressor(s): the model is under-identified"
        )
    Zw = np.ascontiguousarray(np.hstack([Xex, Iw]))
    N, k = Xw.shape
    clusters = [design.clusters[c] for c in spec.clusters]

    # second stage
    ZtZ = Zw.T @ Zw
    Pi_all = np.linalg.solve(ZtZ, Zw.T @ Xw)
    Xhat = np.ascontiguousarray(Zw @ Pi_all)
    A = Xhat.T @ Xw
    beta = np.linalg.solve((A + A.T) / 2, Xhat.T @ yw)
    uw = yw - Xw @ beta
    bread = np.linalg.inv(Xhat.T @ Xhat)
    df_k = design.df_k(spec)
    V, df_t, G = sandwich(bread, (Xhat, uw), spec, clusters, N, df_k)

    # first stage: endogenous on all instruments; same vcov type, its own df
    df_k1 = df_k - k + Zw.shape[1]
    Ezw = Xw[:, n_ex:] - Xhat[:, n_ex:]
    zbread = np.linalg.inv(ZtZ)
    znames = exog_names + instr
    first: dict[str, FirstStage] = {}
    for j, name in enumerate(f.endog):
        e = np.ascontiguousarray(Ezw[:, j])
        Vj, dfj, _ = sandwich(zbread, (Zw, e), spec, clusters, N, df_k1)
        first[name] = FirstStage(name, znames, Pi_all[:, n_ex + j], Vj, dfj, instr)

    diagnostics = _diagnostics(Xex, Xw[:, n_ex:], Iw, spec, clusters, N, df_k1)
    return FeivResult(f, design, spec, beta, V, df_t, G, uw, first, diagnostics)


def _diagnostics(Xex: np.ndarray, Yend: np.ndarray, Iz: np.ndarray, spec: VcovSpec,
                 clusters: list[np.ndarray], N: int, df_k1: int) -> IVDiagnostics:
    """KP rk Wald F, KP rk LM, Cragg-Donald F on the partialled-out data."""
    if Xex.shape[1]:
        Q, _ = np.linalg.qr(Xex)
        Yt = Yend - Q @ (Q.T @ Yend)
        Zt = Iz - Q @ (Q.T @ Iz)
    else:
        Yt, Zt = Yend.copy(), Iz.copy()
    K, L = Yt.shape[1], Zt.shape[1]
    Pi = np.linalg.solve(Zt.T @ Zt, Zt.T @ Yt)
    E = Yt - Zt @ Pi
    V_wald = _pi_vcov(Zt, E, spec, clusters, N, df_k1)
    kp_wald = kp_rk_statistic(Yt, Zt, V_wald)
    lm_spec = spec if spec.kind != "iid" else VcovSpec("iid")
    V_lm = _pi_vcov(Zt, Yt, lm_spec, clusters, N, None)
    kp_lm = kp_rk_statistic(Yt, Zt, V_lm)
    df_lm = L - K + 1
    # Cragg-Donald: smallest eigenvalue of S^-1 Y'P_Z Y (S the first-stage residual covariance)
    S = residual_variance(E.T @ E, N, df_k1)
    YPY = (Zt @ Pi).T @ Yt
    ev = sla.eigh((YPY + YPY.T) / 2, (S + S.T) / 2, eigvals_only=True)
    cd = float(ev.min()) / L
    return IVDiagnostics(K, L, kp_wald / L, kp_lm, df_lm, float(stats.chi2.sf(kp_lm, df_lm)), cd, spec.label)
