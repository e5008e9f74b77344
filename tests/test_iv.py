"""feiv: 2SLS with absorbed FEs against pyfixest and linearmodels; diagnostics
against linearmodels' first-stage statistics and independent formulas.

Diagnostics references (what each check proves):

* one endogenous regressor: the Kleibergen-Paap rk Wald F equals the
  first-stage cluster-robust/hetero Wald F of the excluded instruments, taken
  from pyfixest (``_f_stat_1st_stage``) and from linearmodels'
  ``first_stage.diagnostics["f.stat"]`` (a chi2(L) Wald statistic = L * F);
  the Cragg-Donald F equals linearmodels' unadjusted first-stage F;
* the KP rk LM with one endogenous regressor equals the cluster-robust score
  statistic ``(Z'y)' (sum_g s_g s_g')^-1 (Z'y)`` written out in the test;
* several endogenous regressors: under homoskedasticity the KP LM equals
  Anderson's ``N * rho_min^2`` and the KP Wald statistic equals the
  Cragg-Donald statistic ``N rho^2/(1-rho^2)`` (the identities ranktest's
  certification script checks), with the canonical correlations ``rho`` from
  ``scipy.linalg.subspace_angles``; the robust statistics are invariant to
  invertible recombinations of the instruments and of the endogenous
  regressors (Kleibergen-Paap 2006, the point of the rk normalisation).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.linalg as sla

from staggerlab.errors import FormulaError, StaggerlabError, VcovError
from staggerlab.inference.regression.feiv import FeivResult, IdentificationError, _pi_vcov, feiv, kp_rk_statistic
from staggerlab.inference.regression.vcov import VcovSpec

pf = pytest.importorskip("pyfixest")

#: agreement with pyfixest / linearmodels on estimates and SEs
PEER_RTOL = 1e-8
#: diagnostics against an independent computation
DIAG_RTOL = 1e-6
#: algebraic identities computed two ways in floating point
IDENTITY_RTOL = 1e-9


@pytest.fixture(scope="module")
def ivdata() -> pd.DataFrame:
    df = pf.get_data()  # has missing values in Y, X1, f1
    rng = np.random.default_rng(11)
    n = len(df)
    df["Z2"] = df["Z1"].fillna(0) ** 2 + rng.normal(size=n)
    df["Z3"] = rng.normal(size=n)
    df["X3"] = df["X2"] + 0.5 * df["Z1"] - 0.7 * df["Z3"] + rng.normal(size=n)
    df["g"] = rng.integers(0, 30, n)  # a cluster not nesting any FE
    df["w"] = rng.uniform(0.5, 2.0, n)
    return df


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# ----------------------------------------------------------------- pyfixest
@pytest.mark.parametrize(
    "fml",
    ["Y ~ X2 | f1 + f2 | X1 ~ Z1", "Y ~ X2 | X1 ~ Z1 + Z2", "Y ~ 1 | f1 | X1 ~ Z1 + Z2 + Z3", "Y ~ X2 + f3 | f1 | X1 ~ Z1"],
)
@pytest.mark.parametrize("vcov", ["iid", "hetero", {"CRV1": "f1"}, {"CRV1": "g"}, {"CRV1": "f1+f2"}])
def test_matches_pyfixest(ivdata, fml, vcov):
    if isinstance(vcov, dict):  # pyfixest refuses missing cluster ids; feiv drops those rows
        cols = vcov["CRV1"].split("+")
        ivdata = ivdata.dropna(subset=cols)
    a = _quiet(pf.feols, fml, ivdata, vcov=vcov, fixef_tol=1e-13)
    b = _quiet(feiv, fml, pl.from_pandas(ivdata), vcov=vcov)
    assert isinstance(b, FeivResult)
    assert b.nobs == a._N
    ca, sa = a.coef().to_dict(), a.se().to_dict()
    assert set(ca) == set(b.coef())
    for n, v in b.coef().items():
        assert _rel(v, ca[n]) < PEER_RTOL
        assert _rel(b.se()[n], sa[n]) < PEER_RTOL
    pa = a.pvalue().to_dict()
    for n, v in b.pvalue().items():
        assert abs(v - pa[n]) < 1e-8


def test_matches_pyfixest_weighted(ivdata):
    fml = "Y ~ X2 | f1 + f2 | X1 ~ Z1 + Z2"
    a = _quiet(pf.feols, fml, ivdata, vcov={"CRV1": "f1"}, weights="w", fixef_tol=1e-13)
    b = _quiet(feiv, fml, ivdata, vcov={"CRV1": "f1"}, weights="w")
    for n, v in b.coef().items():
        assert _rel(v, a.coef()[n]) < PEER_RTOL
        assert _rel(b.se()[n], a.se()[n]) < PEER_RTOL


@pytest.mark.parametrize("vcov", ["iid", "hetero", {"CRV1": "f1"}, {"CRV1": "g"}])
def test_first_stage_matches_pyfixest(ivdata, vcov):
    b = _quiet(feiv, "Y ~ X2 | f1 + f2 | X1 ~ Z1 + Z2", ivdata, vcov=vcov)
    a = _quiet(pf.feols, "Y ~ X2 | f1 + f2 | X1 ~ Z1 + Z2", ivdata, vcov=vcov, fixef_tol=1e-13)
    a.first_stage()
    fs = b.first_stage["X1"]
    # pyfixest's first stage is fitted on its own sample; ours on the IV sample (Y non-missing)
    ref = _quiet(pf.feols, "X1 ~ X2 + Z1 + Z2 | f1 + f2", ivdata.loc[ivdata["Y"].notna()], vcov=vcov, fixef_tol=1e-13)
    for n, v in fs.coef().items():
        assert _rel(v, ref.coef()[n]) < PEER_RTOL
        assert _rel(fs.se()[n], ref.se()[n]) < PEER_RTOL
    assert _rel(fs.f_stat, a._f_stat_1st_stage) < DIAG_RTOL
    # one endogenous regressor: KP rk Wald F is the robust first-stage F; iid: Cragg-Donald
    assert _rel(b.diagnostics.kp_wald_f, a._f_stat_1st_stage) < DIAG_RTOL
    if vcov == "iid":
        assert _rel(b.diagnostics.cd_wald_f, a._f_stat_1st_stage) < DIAG_RTOL
    assert set(fs.tidy()["term"]) == {"X2", "Z1", "Z2"}


# -------------------------------------------------------------- linearmodels
def _lm_fit(ivdata, endog, instr, cov, weighted=False, fe=True):
    IV2SLS = pytest.importorskip("linearmodels.iv").IV2SLS

    fe_part = "| f1 + f2 " if fe else ""
    b = _quiet(feiv, f"Y ~ X2 {fe_part}| {' + '.join(endog)} ~ {' + '.join(instr)}", ivdata,
               vcov={"iid": "iid", "robust": "hetero", "clustered": {"CRV1": "g"}}[cov],
               weights="w" if weighted else None)
    d = ivdata.iloc[b.design.rows]
    if fe:
        ex = pd.concat(
            [d[["X2"]], pd.get_dummies(d["f1"].astype(int), prefix="f1").astype(float),
             pd.get_dummies(d["f2"].astype(int), prefix="f2", drop_first=True).astype(float)],
            axis=1,
        )
    else:
        ex = d[["X2"]].assign(Intercept=1.0)
    m = IV2SLS(d["Y"], ex, d[endog], d[instr], weights=d["w"] if weighted else None)
    kw = {"clusters": d["g"]} if cov == "clustered" else {}
    r = m.fit(cov_type={"iid": "unadjusted"}.get(cov, cov), debiased=True, **kw)
    return b, r


@pytest.mark.parametrize("cov", ["iid", "robust", "clustered"])
@pytest.mark.parametrize("endog,instr", [(["X1"], ["Z1", "Z2"]), (["X1", "X3"], ["Z1", "Z2", "Z3"])])
def test_matches_linearmodels_dummies(ivdata, cov, endog, instr):
    b, r = _lm_fit(ivdata, endog, instr, cov)
    for n in ["X2", *endog]:
        assert _rel(b.coef()[n], r.params[n]) < PEER_RTOL
        assert _rel(b.se()[n], r.std_errors[n]) < PEER_RTOL


def test_matches_linearmodels_weighted(ivdata):
    b, r = _lm_fit(ivdata, ["X1", "X3"], ["Z1", "Z2", "Z3"], "clustered", weighted=True)
    for n in ["X2", "X1", "X3"]:
        assert _rel(b.coef()[n], r.params[n]) < PEER_RTOL
        assert _rel(b.se()[n], r.std_errors[n]) < PEER_RTOL


@pytest.mark.parametrize("cov", ["iid", "clustered"])  # hetero: pyfixest above
def test_diagnostics_match_linearmodels_first_stage(ivdata, cov):
    # no FE here: linearmodels' first-stage diagnostics are slow with many dummies,
    # and the FE path of the same statistic is checked against pyfixest above
    b, r = _lm_fit(ivdata, ["X1"], ["Z1", "Z2"], cov, fe=False)
    fstat = r.first_stage.diagnostics.loc["X1", "f.stat"]
    L = 2
    if cov == "iid":  # linearmodels reports the F form for unadjusted covariances
        assert _rel(b.diagnostics.cd_wald_f, fstat) < DIAG_RTOL
        assert _rel(b.diagnostics.kp_wald_f, fstat) < DIAG_RTOL
    else:  # and the chi2(L) Wald form otherwise
        assert _rel(b.diagnostics.kp_wald_f * L, fstat) < DIAG_RTOL


# ------------------------------------------------------------ identities
def _partialled(b: FeivResult, ivdata, endog, instr):
    """Endogenous regressors and instruments with FEs and X2 partialled out (explicit dummies)."""
    d = ivdata.iloc[b.design.rows]
    D = np.column_stack(
        [d["X2"].to_numpy(), pd.get_dummies(d["f1"].astype(int)).to_numpy(float),
         pd.get_dummies(d["f2"].astype(int), drop_first=True).to_numpy(float)]
    )
    Q, _ = np.linalg.qr(D)

    def resid(M):
        return M - Q @ (Q.T @ M)

    return resid(d[endog].to_numpy(float)), resid(d[instr].to_numpy(float)), d


def test_kp_lm_one_endog_is_robust_score_test(ivdata):
    b = _quiet(feiv, "Y ~ X2 | f1 + f2 | X1 ~ Z1 + Z2", ivdata, vcov={"CRV1": "g"})
    Y, Z, d = _partialled(b, ivdata, ["X1"], ["Z1", "Z2"])
    g = d["g"].to_numpy()
    s = np.array([Z[g == c].T @ Y[g == c, 0] for c in np.unique(g)])
    zy = Z.T @ Y[:, 0]
    lm = zy @ np.linalg.solve(s.T @ s, zy)
    assert _rel(b.diagnostics.kp_lm, lm) < DIAG_RTOL
    assert b.diagnostics.kp_lm_df == 2


def test_homoskedastic_identities_two_endog(ivdata):
    endog, instr = ["X1", "X3"], ["Z1", "Z2", "Z3"]
    b = _quiet(feiv, "Y ~ X2 | f1 + f2 | X1 + X3 ~ Z1 + Z2 + Z3", ivdata, vcov="iid")
    Y, Z, d = _partialled(b, ivdata, endog, instr)
    rho = np.cos(sla.subspace_angles(Y, Z)).min()
    N = b.nobs
    # Anderson canonical-correlation LM
    assert _rel(b.diagnostics.kp_lm, N * rho**2) < DIAG_RTOL
    assert b.diagnostics.kp_lm_df == 2
    # Cragg-Donald F: min eig of S^-1 Y'PY / L with S on the first stage's df
    df_k1 = N - b.first_stage["X1"].df_t
    cd = rho**2 / (1 - rho**2) * (N - df_k1) / 3
    assert _rel(b.diagnostics.cd_wald_f, cd) < DIAG_RTOL
    assert _rel(b.diagnostics.kp_wald_f, cd) < DIAG_RTOL


@pytest.mark.parametrize("kind", ["hetero", "CRV1"])
def test_kp_invariant_to_recombination(kind):
    rng = np.random.default_rng(5)
    N, L, K = 400, 4, 2
    Z = rng.normal(size=(N, L))
    Y = Z @ rng.normal(size=(L, K)) * 0.2 + rng.normal(size=(N, K)) * (1 + np.abs(Z[:, :1]))
    cl = [rng.integers(0, 35, N)]
    spec = VcovSpec(kind, ("c",) if kind == "CRV1" else ())
    A, B = rng.normal(size=(L, L)), rng.normal(size=(K, K))

    def stats_(Y, Z):
        Pi = np.linalg.solve(Z.T @ Z, Z.T @ Y)
        wald = kp_rk_statistic(Y, Z, _pi_vcov(Z, Y - Z @ Pi, spec, cl, N, 7))
        lm = kp_rk_statistic(Y, Z, _pi_vcov(Z, Y, spec, cl, N, None))
        return wald, lm

    for s1, s2 in zip(stats_(Y, Z), stats_(Y @ B, Z @ A)):
        assert _rel(s1, s2) < IDENTITY_RTOL * 1e3


# ------------------------------------------------------------ bad input, API
def test_fewer_instruments_than_endog(ivdata):
    with pytest.raises(IdentificationError) as e:
        feiv("Y ~ X2 | f1 | X1 + X3 ~ Z1", ivdata)
    assert isinstance(e.value, ValueError) and isinstance(e.value, StaggerlabError)
    assert "under-identified" in str(e.value)


def test_collinear_instrument_leaves_model_underidentified(ivdata):
    df = ivdata.assign(Zc=2.0 * ivdata["X2"])
    with pytest.raises(IdentificationError):
        _quiet(feiv, "Y ~ X2 | f1 | X1 ~ Zc", df)


@pytest.mark.parametrize(
    "fml",
    ["Y ~ X2 | f1", "Y ~ X2 | f1 | X1 ~ X2", "Y ~ X1 | f1 | X1 ~ Z1", "Y ~ X2 | d ~ | f1", "Y ~ X2 | f1 | f2 | X1 ~ Z1"],
)
def test_bad_formulas(ivdata, fml):
    with pytest.raises(FormulaError):
        feiv(fml, ivdata)


def test_crv3_rejected(ivdata):
    with pytest.raises(VcovError):
        feiv("Y ~ X2 | f1 | X1 ~ Z1", ivdata, vcov={"CRV3": "f1"})


def test_result_api(ivdata):
    b = _quiet(feiv, "Y ~ X2 | f1 + f2 | X1 ~ Z1 + Z2", ivdata, vcov={"CRV1": "f1"})
    t = b.tidy()
    assert isinstance(t, pl.DataFrame) and t["term"].to_list() == ["X2", "X1"]
    assert set(t.columns) == {"term", "estimate", "se", "tstat", "pvalue", "ci_low", "ci_high"}
    assert b.diagnostics.tidy().height == 3
    s = b.summary()
    assert "Kleibergen-Paap rk LM" in s and "First stage X1" in s
    assert b.n_clusters == b.design.fe_levels[0] and b.df_t == b.n_clusters - 1
    assert np.isfinite(b.resid()).all()


def test_variable_both_exogenous_and_endogenous_named_in_user_formula(ivdata):
    with pytest.raises(FormulaError, match=r"'X1' listed both as exogenous regressor and as endogenous variable in "
                                           r"'Y ~ X1 \| f1 \| X1 ~ Z1'"):
        feiv("Y ~ X1 | f1 | X1 ~ Z1", ivdata)
    with pytest.raises(FormulaError, match=r"read from the IV formula 'Y ~ X2 \+ X2 \| X1 ~ Z1'"):
        feiv("Y ~ X2 + X2 | X1 ~ Z1", ivdata)
