"""Callaway-Sant'Anna with covariates (reg / ipw / dr): against R did's published
mpdta numbers and csdid 0.4.3 (every ATT(g,t), the four aggregations, analytic SEs)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from staggerlab.errors import CovariatesNotSupportedError, OverlapError, SingularCovariatesError
from staggerlab.inference.did.cs import cs
from staggerlab.inference.did.event_study import event_study

DATA = Path(__file__).parent / "data"
CSDID_TOL = 1e-8  # the brief's bar; observed agreement is below 1e-12
R_TOL = 5e-5 + 1e-12  # the published values are rounded to 4 decimals


@pytest.fixture(scope="module")
def mpdta() -> pl.DataFrame:
    df = pl.read_csv(DATA / "mpdta.csv")
    rng = np.random.default_rng(7)
    # a time-varying covariate (lpop is constant within a county), so the test
    # also pins which period's covariates each 2x2 uses
    return df.with_columns(
        (pl.col("lpop") + 0.3 * pl.Series(rng.normal(size=df.height))).alias("xtv"),
        pl.col("lpop").exp().alias("w"),
    )


def _cs(df, **kw):
    return cs(df, y="lemp", unit="countyreal", time="year", cohort="first.treat", **kw)


# --------------------------------------------------------------------------- R did (published)
# did 2.1.2 reference manual (CRAN, published 2022-07-20), att_gt examples: "Using covariates"
# (att_gt(yname="lemp", tname="year", idname="countyreal", gname="first.treat", xformla=~lpop,
# data=mpdta), est_method "dr" by default, never-treated controls) and "Specify comparison units"
# (the same with control_group="notyettreated"). Point estimates only (the printed SEs are bootstrap).
R_DR_NEVER = {
    (2004, 2004): -0.0145, (2004, 2005): -0.0764, (2004, 2006): -0.1404, (2004, 2007): -0.1069,
    (2006, 2004): -0.0005, (2006, 2005): -0.0062, (2006, 2006): 0.0010, (2006, 2007): -0.0413,
    (2007, 2004): 0.0267, (2007, 2005): -0.0046, (2007, 2006): -0.0284, (2007, 2007): -0.0288,
}
R_DR_NOTYET = {
    (2004, 2004): -0.0212, (2004, 2005): -0.0816, (2004, 2006): -0.1382, (2004, 2007): -0.1069,
    (2006, 2004): -0.0075, (2006, 2005): -0.0046, (2006, 2006): 0.0087, (2006, 2007): -0.0413,
    (2007, 2004): 0.0269, (2007, 2005): -0.0042, (2007, 2006): -0.0284, (2007, 2007): -0.0288,
}


@pytest.mark.parametrize("control, ref", [("never", R_DR_NEVER), ("notyet", R_DR_NOTYET)])
def test_dr_matches_r_published(mpdta, control, ref):
    res = _cs(mpdta, controls=["lpop"], control=control)  # est_method="dr" is the default, as in R
    tab = res.att_gt()
    got = {(g, t): e for g, t, e in zip(tab["cohort"], tab["time"], tab["estimate"])}
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=R_TOL), key


# --------------------------------------------------------------------------- csdid oracle
def _csdid(df: pl.DataFrame, method: str, control: str, base: str, xs, **kw):
    att_gt = pytest.importorskip("csdid.att_gt")
    out = {}
    # csdid prints every aggregation it computes
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        a = att_gt.ATTgt(yname="lemp", gname="first.treat", idname="countyreal", tname="year", data=df.to_pandas(),
                         control_group="nevertreated" if control == "never" else "notyettreated",
                         xformla="lemp~" + "+".join(xs), **kw)
        ref = a.fit(est_method=method, base_period=base, bstrap=False)
        for kind in ("simple", "dynamic", "group", "calendar"):
            out[kind] = ref.aggte(typec=kind, bstrap=False).atte
    return ref, out


def _assert_equal_to_csdid(res, ref, aggs):
    tab = res.att_gt()
    np.testing.assert_array_equal(tab["cohort"].to_numpy(), np.asarray(ref.results["group"], dtype=int))
    np.testing.assert_array_equal(tab["time"].to_numpy(), np.asarray(ref.results["year"], dtype=int))
    np.testing.assert_allclose(tab["estimate"].to_numpy(), ref.results["att"], rtol=0, atol=CSDID_TOL)
    se_ref = np.asarray(ref.results["se"], dtype=float)
    live = np.isfinite(se_ref) & (se_ref > 1e-8)  # the universal reference cells have no variance
    np.testing.assert_allclose(tab["se"].to_numpy()[live], se_ref[live], rtol=0, atol=CSDID_TOL)
    for kind, agg_ref in aggs.items():
        agg = res.aggregate(kind)
        assert agg.estimate == pytest.approx(agg_ref["overall_att"], abs=CSDID_TOL), kind
        assert agg.se == pytest.approx(agg_ref["overall_se"], abs=CSDID_TOL), kind
        if kind != "simple":
            np.testing.assert_allclose(agg.estimates, agg_ref["att_egt"], rtol=0, atol=CSDID_TOL)
            se_e = np.asarray(agg_ref["se_egt"], dtype=float)
            ok = np.isfinite(se_e)
            np.testing.assert_allclose(agg.ses[ok], se_e[ok], rtol=0, atol=CSDID_TOL)


@pytest.mark.parametrize("method", ["dr", "ipw", "reg"])
@pytest.mark.parametrize("control", ["never", "notyet"])
def test_matches_csdid_lpop(mpdta, method, control):
    ref, aggs = _csdid(mpdta, method, control, "varying", ["lpop"])
    res = _cs(mpdta, controls=["lpop"], est_method=method, control=control)
    assert res.est_method == method and res.controls == ["lpop"]
    _assert_equal_to_csdid(res, ref, aggs)


@pytest.mark.parametrize("method, control, weights", [("dr", "never", None), ("ipw", "notyet", "w"),
                                                      ("reg", "never", "w")])
def test_matches_csdid_universal_time_varying_covariates_weights(mpdta, method, control, weights):
    # universal base: pre-adoption cells difference t against a later base period, so the
    # covariates are those of t (the earlier period), as R did's panel2cs2 keeps
    xs = ["xtv", "lpop"]
    ref, aggs = _csdid(mpdta, method, control, "universal", xs, weights_name=weights)
    res = _cs(mpdta, controls=xs, est_method=method, control=control, base_period="universal", weights=weights)
    _assert_equal_to_csdid(res, ref, aggs)


def test_matches_csdid_with_anticipation(mpdta):
    ref, aggs = _csdid(mpdta, "dr", "notyet", "varying", ["xtv"], anticipation=1)
    with pytest.warns(UserWarning, match="already treated in the first period"):  # cohort 2004, as csdid
        res = _cs(mpdta, controls=["xtv"], control="notyet", anticipation=1)
    _assert_equal_to_csdid(res, ref, aggs)


# --------------------------------------------------------------------------- interfaces
def test_event_study_method_cs_passes_controls(mpdta):
    es = event_study(mpdta, y="lemp", unit="countyreal", time="year", cohort="first.treat", controls=["lpop"],
                     method="cs", window=(-3, 3), est_method="ipw")
    direct = _cs(mpdta, controls=["lpop"], est_method="ipw", window=(-3, 3))
    np.testing.assert_array_equal(es.coef, direct.coef)
    np.testing.assert_array_equal(es.se, direct.se)
    assert "covariates: lpop   estimator: ipw" in es.summary()


def test_bootstrap_and_clusters_with_covariates(mpdta):
    res = _cs(mpdta, controls=["lpop"], bootstrap=True, biters=999, seed=3)
    analytic = _cs(mpdta, controls=["lpop"])
    # the multiplier bootstrap of the same influence functions: SEs near the analytic ones
    np.testing.assert_allclose(res.se, analytic.se, rtol=0.15)
    assert res.crit > analytic.crit  # a uniform band is wider than the pointwise one
    # clustering by a coarser id sums the influence functions by cluster (hand computation)
    df = mpdta.with_columns((pl.col("countyreal") // 10).alias("grp"))
    cl = _cs(df, controls=["lpop"], cluster="grp")
    inf = analytic.inf_gt
    grp = np.unique(mpdta.group_by("countyreal", maintain_order=True).first().sort("countyreal")["countyreal"] // 10,
                    return_inverse=True)[1]
    sums = np.zeros((grp.max() + 1, inf.shape[1]))
    np.add.at(sums, grp, inf)
    np.testing.assert_allclose(cl.att_gt()["se"].to_numpy(), np.sqrt((sums**2).sum(0)) / inf.shape[0], rtol=1e-12)


def test_bad_est_method(mpdta):
    with pytest.raises(ValueError, match="est_method"):
        _cs(mpdta, controls=["lpop"], est_method="aipw")


# --------------------------------------------------------------------------- refusals
def test_singular_covariates_name_cell_and_columns(mpdta):
    df = mpdta.with_columns((2 * pl.col("lpop") + 1).alias("lpop2"))
    with pytest.raises(SingularCovariatesError, match=r"cohort 2004, period 2004.*'lpop2'"):
        _cs(df, controls=["lpop", "lpop2"], est_method="reg")
    # constant among the comparison units only: the outcome regression is singular
    df = mpdta.with_columns((pl.col("first.treat") > 0).cast(pl.Float64).alias("ever"))
    for method in ("reg", "dr"):
        with pytest.raises(SingularCovariatesError, match=r"comparison units' outcome regression.*'ever'"):
            _cs(df, controls=["lpop", "ever"], est_method=method)
    # ... and for ipw it separates the cohort from the comparison units
    with pytest.raises(OverlapError, match=r"cohort 2004, period 2004"):
        _cs(df, controls=["lpop", "ever"], est_method="ipw")


def test_overlap_failure_names_cell(mpdta):
    # a covariate that is (nearly) the cohort-2007 indicator: propensity scores of 1
    rng = np.random.default_rng(0)
    df = mpdta.with_columns(
        ((pl.col("first.treat") == 2007).cast(pl.Float64) + pl.Series(rng.normal(size=mpdta.height)) * 1e-3)
        .alias("sep")
    )
    with pytest.raises(OverlapError, match=r"cohort 2007, period 2004.*overlap"):
        _cs(df, controls=["sep"], est_method="ipw")


def test_unbalanced_panel_with_controls_is_refused(mpdta):
    df = mpdta.filter(~((pl.col("countyreal") == mpdta["countyreal"][0]) & (pl.col("year") == 2005)))
    with pytest.raises(CovariatesNotSupportedError, match="allow_unbalanced_panel"):
        _cs(df, controls=["lpop"], allow_unbalanced_panel=True)
    # the default balances the panel (drops the unit, with a warning) and estimates
    with pytest.warns(UserWarning, match="dropped 1 of 500"):
        res = _cs(df, controls=["lpop"])
    assert res.n_units == 499


def test_weighted_logit_matches_statsmodels():
    # fit_logit(weights=) is the propensity score of ipw / dr: R glm's prior weights
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 3))
    d = (rng.random(400) < 1 / (1 + np.exp(-(0.3 + X @ [1.0, -0.5, 0.2])))).astype(float)
    w = rng.uniform(0.2, 3.0, size=400)
    from staggerlab.inference.selection.psm import fit_logit

    mine = fit_logit(X, d, weights=w)
    ref = sm.GLM(d, sm.add_constant(X), family=sm.families.Binomial(), freq_weights=w).fit(tol=1e-14)
    np.testing.assert_allclose(mine.params, ref.params, rtol=1e-9)
    np.testing.assert_allclose(mine.bse, ref.bse, rtol=1e-7)
    assert mine.llf == pytest.approx(ref.llf, rel=1e-12)
