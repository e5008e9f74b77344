"""PSM-DID: logit vs statsmodels, matching vs brute force, TWFE vs pyfixest, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyfixest as pf
import pytest
import statsmodels.api as smapi

import staggerlab as sl
from staggerlab.inference.selection.matching import nn_noreplace, nn_replace
from staggerlab.inference.selection.psm import (
    NoCommonSupportError,
    SeparationError,
    fit_logit,
    psm_did,
)

#: the brief's contract for the logit against statsmodels
LOGIT_TOL = 1e-6
#: feols vs pyfixest on the same sample
PEER_TOL = 1e-8

COV = ["x1", "x2", "x3"]


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    df = sl.simulate.staggered(300, 8, never_share=0.75, n_controls=3, seed=5)
    # make the treated group differ in x1 so matching has something to do
    return df.with_columns(pl.when(pl.col("cohort") > 0).then(pl.col("x1") + 0.5).otherwise(pl.col("x1")).alias("x1"))


def test_logit_equals_statsmodels():
    rng = np.random.default_rng(1)
    n = 800
    X = np.column_stack([rng.normal(5, 2, n), rng.uniform(size=n), rng.integers(0, 2, n)])
    eta = -1.0 + 0.3 * (X[:, 0] - 5) - 1.2 * X[:, 1] + 0.8 * X[:, 2]
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
    mine = fit_logit(X, d, names=["a", "b", "c"])
    ref = smapi.Logit(d, smapi.add_constant(X)).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
    np.testing.assert_allclose(mine.params, ref.params, rtol=LOGIT_TOL, atol=LOGIT_TOL * 1e-2)
    np.testing.assert_allclose(mine.bse, ref.bse, rtol=LOGIT_TOL)
    np.testing.assert_allclose(mine.llf, ref.llf, rtol=1e-12)


def test_logit_separation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=100)
    d = (x > 0.1).astype(float)  # complete separation
    with pytest.raises(SeparationError, match="separation"):
        fit_logit(np.column_stack([x, rng.normal(size=100)]), d)
    # quasi-complete: a dummy that is 1 only for treated rows
    z = np.zeros(100)
    z[:5] = 1
    d2 = rng.integers(0, 2, 100).astype(float)
    d2[:5] = 1
    with pytest.raises(SeparationError):
        fit_logit(np.column_stack([rng.normal(size=100), z]), d2)


def _brute_replace(st, sc, k):
    out = []
    for x in st:
        dist = np.abs(sc - x)
        order = np.lexsort((np.arange(sc.size), sc, dist))
        out.append(order[:k])
    return np.array(out)


def _brute_noreplace(st, sc, k, cal):
    avail = np.ones(sc.size, dtype=bool)
    out = np.full((st.size, k), -1)
    for i in sorted(range(st.size), key=lambda i: -st[i]):
        for j in range(k):
            idx = np.flatnonzero(avail)
            if idx.size == 0:
                break
            dist = np.abs(sc[idx] - st[i])
            best = idx[np.lexsort((idx, sc[idx], dist))[0]]
            if abs(sc[best] - st[i]) > cal:
                break
            out[i, j] = best
            avail[best] = False
    return out


@pytest.mark.parametrize("k", [1, 4])
def test_nn_kernels_equal_brute_force(k):
    rng = np.random.default_rng(k)
    st, sc = rng.normal(0.4, 1, 60), rng.normal(0, 1, 300)
    isel, dsel = nn_replace(st, sc, k)
    np.testing.assert_array_equal(isel, _brute_replace(st, sc, k))
    np.testing.assert_allclose(dsel, np.abs(sc[isel] - st[:, None]))
    for cal in (np.inf, 0.05):
        isel2, _, _ = nn_noreplace(st, sc, k, cal)
        np.testing.assert_array_equal(isel2, _brute_noreplace(st, sc, k, cal))
        used = isel2[isel2 >= 0]
        assert used.size == np.unique(used).size


@pytest.mark.parametrize("k", [1, 3, 7])
def test_nn_ties_follow_the_docstring(k):
    """Scores on a quarter grid: many exact ties in score and in distance (both
    sides at once), broken as documented: distance, then lower score, then
    lower pool position; treated rows without replacement by score, then position."""
    rng = np.random.default_rng(10 + k)
    sc = rng.integers(0, 8, 120) / 2.0  # repeated pool scores
    st = rng.integers(0, 32, 40) / 4.0  # some on pool scores, some halfway between two
    st[:6] = 1.75  # equal treated scores
    isel, dsel = nn_replace(st, sc, k)
    np.testing.assert_array_equal(isel, _brute_replace(st, sc, k))
    for cal in (np.inf, 0.5):
        isel2, _, ran_out = nn_noreplace(st, sc, k, cal)
        np.testing.assert_array_equal(isel2, _brute_noreplace(st, sc, k, cal))
        short = (isel2 < 0).any(axis=1)  # without a caliper, short only when the pool ran out
        assert (ran_out == short).all() if cal == np.inf else not (ran_out & ~short).any()
        if 40 * k <= sc.size:
            assert not ran_out.any()
    # a pool smaller than the demand: the last treated rows (lowest scores) find it used up
    isel3, _, ran_out = nn_noreplace(st, sc[:20], k, np.inf)
    np.testing.assert_array_equal(isel3, _brute_noreplace(st, sc[:20], k, np.inf))
    np.testing.assert_array_equal(ran_out, (isel3 < 0).any(axis=1))


def test_unmatched_rows_reported_before_the_fit(panel, monkeypatch):
    small = panel.filter((pl.col("cohort") > 0) | (pl.col("unit") <= panel.filter(pl.col("cohort") == 0)["unit"].min()))
    n_pool = small.filter(pl.col("cohort") == 0).height
    n_treated = small.height - n_pool
    with pytest.warns(sl.errors.MatchingWarning) as rec:
        res = psm_did(small, y="y", treat="treat", unit="unit", time="time", covariates=COV, k=2, replace=False)
    msgs = [str(w.message) for w in rec if issubclass(w.category, sl.errors.MatchingWarning)]
    n_matched = -(-n_pool // 2)  # 2 pool rows per treated row, the last one maybe 1
    assert any(f"{n_treated - n_matched} of {n_treated} treated-group row(s) have no match: matching without "
               "replacement used up" in m for m in msgs)
    assert not any("off common support" in m for m in msgs)
    assert res.n_treated_matched == n_matched and res.n_used_up == n_treated - n_matched
    assert "used up" in res.summary()
    # the warning comes before the TWFE fit: a fit that fails still leaves it behind, and its error says why
    def failing_fit(*args, **kwargs):
        raise sl.errors.CollinearityError("every regressor is collinear with the fixed effects")

    monkeypatch.setattr("staggerlab.inference.selection.psm.feols", failing_fit)
    with pytest.warns(sl.errors.MatchingWarning, match="used up"):
        with pytest.raises(sl.errors.CollinearityError, match=rf"{n_matched} of {n_treated} treated-group row"):
            psm_did(small, y="y", treat="treat", unit="unit", time="time", covariates=COV, k=2, replace=False)


def test_pool_of_one_unit_without_replacement():
    """A real degenerate case: one never-treated unit (6 rows), k=1 without replacement;
    the matched rows are singletons of their units, and the error says what was matched."""
    df = sl.simulate.staggered(100, 6, never_share=0.6, n_controls=2, seed=3)
    one = df.filter((pl.col("cohort") > 0) | (pl.col("unit") == df.filter(pl.col("cohort") == 0)["unit"].min()))
    n_treated = one.filter(pl.col("cohort") > 0).height
    with pytest.warns(sl.errors.MatchingWarning, match=rf"{n_treated - 6} of {n_treated} treated-group row\(s\) "
                                                       "have no match: matching without replacement used up"):
        with pytest.raises(sl.errors.StaggerlabError, match=rf"matched sample of .* 6 of {n_treated} treated-group"):
            psm_did(one, y="y", treat="treat", unit="unit", time="time", covariates=["x1", "x2"], k=1, replace=False)


def test_k_larger_than_pool_warns(panel):
    small = panel.filter((pl.col("cohort") > 0) | (pl.col("unit") <= panel.filter(pl.col("cohort") == 0)["unit"].min()))
    n_pool = small.filter(pl.col("cohort") == 0).height
    with pytest.warns(sl.errors.MatchingWarning, match=rf"fewer than k={n_pool + 3} matches exist.*\({n_pool} row"):
        res = psm_did(small, y="y", treat="treat", unit="unit", time="time", covariates=COV, k=n_pool + 3)
    assert res.matches.height == n_pool * res.n_treated


def test_psm_did_end_to_end_against_brute_force(panel):
    res = psm_did(panel, y="y", treat="treat", unit="unit", time="time", covariates=COV, controls=["x3"], k=4)
    # rebuild everything independently: statsmodels logit, brute-force matches, pyfixest
    f = panel.sort("unit", "time")
    g = (f["cohort"] > 0).to_numpy()
    X = f.select(COV).to_numpy()
    lg = smapi.Logit(g.astype(float), smapi.add_constant(X)).fit(method="newton", tol=1e-14, disp=0)
    score = smapi.add_constant(X) @ lg.params
    np.testing.assert_allclose(res.pscore["logit_score"].to_numpy(), score, rtol=1e-8, atol=1e-8)
    it, ic = np.flatnonzero(g), np.flatnonzero(~g)
    m = _brute_replace(score[it], score[ic], 4)
    rows = np.unique(np.concatenate([it, ic[m.ravel()]]))
    sample = f[rows]
    assert res.sample.select("unit", "time").equals(sample.select("unit", "time"))
    assert res.matches.height == 4 * it.size
    ref = pf.feols("y ~ treat + x3 | unit + time", sample.to_pandas(), vcov={"CRV1": "unit"})
    np.testing.assert_allclose(res.fit.coef()["treat"], ref.coef()["treat"], rtol=PEER_TOL)
    np.testing.assert_allclose(res.fit.se()["treat"], ref.se()["treat"], rtol=PEER_TOL)
    # balance: SMDs before by hand; after with each control weighted by its match count / k
    bal = res.balance()
    Xt, Xc = X[it], X[ic]
    den = np.sqrt((Xt.var(0, ddof=1) + Xc.var(0, ddof=1)) / 2)
    np.testing.assert_allclose(bal["smd_before"].to_numpy(), (Xt.mean(0) - Xc.mean(0)) / den, rtol=1e-12)
    cnt = np.bincount(m.ravel(), minlength=ic.size) / 4.0
    after = (Xt.mean(0) - cnt @ Xc / cnt.sum()) / den
    np.testing.assert_allclose(bal["smd_after"].to_numpy(), after, rtol=1e-10, atol=1e-12)
    assert abs(bal["smd_after"][0]) < abs(bal["smd_before"][0])
    assert "PSM-DID" in res.summary() and res.tidy()["term"][0] == "treat"


def test_by_year_caliper_and_keep_units(panel):
    res = psm_did(panel, y="y", treat="treat", unit="unit", time="time", covariates=COV, k=2, by_year=True,
                  caliper=0.2, replace=False)
    mt = res.matches
    assert (mt["time"] == mt["match_time"]).all()
    assert (mt["distance"] <= res.caliper_abs + 1e-15).all()
    assert mt.select(pl.struct("match_unit", "match_time").is_duplicated().any()).item() is False
    assert len(res.logits) == panel["time"].n_unique()
    full = psm_did(panel, y="y", treat="treat", unit="unit", time="time", covariates=COV, keep="units")
    kept = full.sample["unit"].unique()
    assert full.sample.height == panel.filter(pl.col("unit").is_in(kept.implode())).height


def test_no_common_support(panel):
    with pytest.raises(NoCommonSupportError, match="common support"):
        psm_did(panel, y="y", treat="treat", unit="unit", time="time", covariates=COV, caliper=1e-12)


def test_separation_end_to_end(panel):
    df = panel.with_columns((pl.col("cohort") > 0).cast(pl.Float64).alias("leak"))
    with pytest.raises(SeparationError, match="separation"):
        psm_did(df, y="y", treat="treat", unit="unit", time="time", covariates=["x1", "leak"])


@pytest.mark.parametrize("name", ["_group", "_cohort", "_rel", "_treat"])
def test_covariate_named_like_a_derived_column(panel, name):
    """Such a covariate used to be overwritten by the derived column; now the
    estimator's frame renames it, and the result equals the clean name's."""
    df = panel.with_columns(pl.col("x2").alias(name))
    res = psm_did(df, y="y", treat="treat", unit="unit", time="time", covariates=["x1", name], k=2)
    ref = psm_did(panel, y="y", treat="treat", unit="unit", time="time", covariates=["x1", "x2"], k=2)
    assert res.fit.coef()["treat"] == ref.fit.coef()["treat"]
    assert res.fit.se()["treat"] == ref.fit.se()["treat"]
    assert res.balance()["covariate"].to_list() == ["x1", name]


def test_treatment_may_be_called_like_the_derived_treatment(panel):
    """The battery names a treatment it derives '_treat', as prepare does: same values, same result."""
    res = psm_did(panel.rename({"treat": "_treat"}), y="y", treat="_treat", unit="unit", time="time",
                  covariates=COV, k=2)
    ref = psm_did(panel, y="y", treat="treat", unit="unit", time="time", covariates=COV, k=2)
    assert res.fit.coef()["_treat"] == ref.fit.coef()["treat"]
