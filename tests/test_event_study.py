"""Event studies: dynamic TWFE and Sun-Abraham against pyfixest, imputation
against pyfixest's did2s and a dense two-stage GMM reference."""

from __future__ import annotations

import re
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.inference.did.event_study import EventStudyError, EventStudyResult, event_study

pf = pytest.importorskip("pyfixest")

RTOL_PYFIXEST = 1e-8  # same OLS / CRV1 algebra as pyfixest
ATOL_PYFIXEST = 1e-10
TOL_DID2S = 1e-6  # pyfixest's first stage demeans iteratively (its own fixef_tol)
TOL_DENSE = 1e-9  # dense normal equations vs the FE solver


def _rel_of(name: str) -> int:
    return int(float(re.search(r"::(-?[\d.]+)", name).group(1)))


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    df = sl.simulate.staggered(400, 10, seed=3, dynamic=0.3, cohort_slope=0.5, n_controls=1).to_pandas()
    df["state"] = df["unit"] % 37
    df["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(df))
    return df


@pytest.fixture(scope="module")
def df_het() -> pd.DataFrame:
    return pd.read_csv(pf.__path__[0] + "/did/data/df_het.csv")


# ------------------------------------------------------------------ TWFE
@pytest.mark.parametrize("window", [(-4, 4), (-2, 3)])
def test_twfe_binned_equals_pyfixest_i(panel, window):
    lo, hi = window
    df = panel.copy()
    df["rb"] = np.where(df.cohort > 0, np.clip(df.time - df.cohort, lo, hi), -1)
    ref = pf.feols("y ~ i(rb, ref=-1) | unit + time", df, vcov={"CRV1": "unit"}).tidy()
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=window)
    assert es.rel_time.tolist() == [_rel_of(n) for n in ref.index]
    np.testing.assert_allclose(es.coef, ref["Estimate"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    np.testing.assert_allclose(es.se, ref["Std. Error"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)


def test_twfe_controls_weights_cluster_equal_pyfixest(panel):
    df = panel.copy()
    df["rb"] = np.where(df.cohort > 0, np.clip(df.time - df.cohort, -3, 3), -1)
    ref = pf.feols("y ~ i(rb, ref=-1) + x1 | unit + time", df, vcov={"CRV1": "state"}, weights="w")
    es = event_study(df, y="y", unit="unit", time="time", treat="treat", controls=["x1"], cluster="state",
                     weights="w", window=(-3, 3))
    k = len(es.coef)
    np.testing.assert_allclose(es.coef, ref.coef().values[:k], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    np.testing.assert_allclose(es.se, ref.se().values[:k], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)


def test_twfe_unbinned_reports_window_only(panel):
    df = panel.copy()
    df["rel"] = np.where(df.cohort > 0, df.time - df.cohort, -1)
    ref = pf.feols("y ~ i(rel, ref=-1) | unit + time", df, vcov={"CRV1": "unit"}).tidy()
    ref = ref[[abs(_rel_of(n) - 0.5) < 3 for n in ref.index]]  # -2..3
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 3), bin_endpoints=False)
    assert es.rel_time.tolist() == [-2, 0, 1, 2, 3]
    np.testing.assert_allclose(es.coef, ref["Estimate"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    np.testing.assert_allclose(es.se, ref["Std. Error"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)


# ------------------------------------------------------------ Sun-Abraham
def test_sunab_equals_pyfixest_saturated(panel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sat = pf.event_study(panel, yname="y", idname="unit", tname="time", gname="cohort", estimator="saturated")
        agg = sat.aggregate()
    es = event_study(panel, y="y", unit="unit", time="time", cohort="cohort", window=(-50, 50),
                     bin_endpoints=False, method="sunab")
    assert es.rel_time.tolist() == [int(p) for p in agg.index]
    np.testing.assert_allclose(es.coef, agg["Estimate"].astype(float), rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    np.testing.assert_allclose(es.se, agg["Std. Error"].astype(float), rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    # cohort x period cells are the saturated regression's coefficients
    tb = sat.tidy()
    key = tb.index.str.extract(r"::(-?[\d.]+):first_treated_period::(\d+)").astype(float).astype(int)
    cells = es.extra["cells"].sort("cohort", "rel_time")
    ref = pd.DataFrame({"g": key[1].values, "r": key[0].values, "b": tb["Estimate"].values,
                        "se": tb["Std. Error"].values}).sort_values(["g", "r"])
    np.testing.assert_allclose(cells["estimate"], ref["b"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    np.testing.assert_allclose(cells["se"], ref["se"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)


def test_sunab_binned_aggregates_by_cell_shares(panel):
    """Binned Sun-Abraham: pyfixest's cohort x binned-period regression, aggregated
    by the cells' observation shares (computed here from the data)."""
    lo, hi = -3, 3
    df = panel.copy()
    df["rb"] = np.where(df.cohort > 0, np.clip(df.time - df.cohort, lo, hi), -1)
    fit = pf.feols("y ~ i(rb, cohort, ref=-1, ref2=0) | unit + time", df, vcov={"CRV1": "unit"})
    names = fit._coefnames
    b, V = fit.coef().values, fit._vcov
    gl = [tuple(int(float(v)) for v in re.search(r"::(-?[\d.]+):cohort::(\d+)", n).groups()) for n in names]
    counts = df[df.cohort > 0].groupby(["cohort", "rb"]).size()
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(lo, hi), method="sunab")
    for i, r in enumerate(es.rel_time):
        R = np.array([counts[(g, l)] if l == r else 0.0 for l, g in gl])
        R /= R.sum()
        assert es.coef[i] == pytest.approx(R @ b, rel=RTOL_PYFIXEST, abs=ATOL_PYFIXEST)
        assert es.se[i] == pytest.approx(np.sqrt(R @ V @ R), rel=RTOL_PYFIXEST, abs=ATOL_PYFIXEST)
    post = np.array([l >= 0 for l, g in gl])
    R = np.array([counts[(g, l)] for l, g in gl]) * post
    R = R / R.sum()
    att = es.aggregate("simple")
    assert att.estimate == pytest.approx(R @ b, rel=RTOL_PYFIXEST)
    assert att.se == pytest.approx(np.sqrt(R @ V @ R), rel=RTOL_PYFIXEST)
    grp = es.aggregate("group")
    assert grp.components.height == df.loc[df.cohort > 0, "cohort"].nunique()


def test_sunab_without_never_treated_uses_last_cohort():
    df = sl.simulate.staggered(200, 10, never_share=0.0, seed=4)
    with pytest.warns(UserWarning, match="last treated"):
        es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", method="sunab")
    g_last = int(df["cohort"].max())
    assert g_last not in es.extra["cells"]["cohort"].to_list()


# -------------------------------------------------------------- imputation
def test_imputation_equals_pyfixest_did2s_event_study(df_het):
    fit = pf.did2s(df_het, yname="dep_var", first_stage="~ 0 | unit + year",
                   second_stage="~i(rel_year, ref=-1.0)", treatment="treat", cluster="state")
    tb = fit.tidy()
    tb = tb[~tb.index.str.contains("inf")]
    es = event_study(df_het, y="dep_var", unit="unit", time="year", cohort="g", cluster="state",
                     window=(-20, 20), bin_endpoints=False, method="imputation")
    assert es.rel_time.tolist() == [_rel_of(n) for n in tb.index]
    np.testing.assert_allclose(es.coef, tb["Estimate"], atol=TOL_DID2S)
    np.testing.assert_allclose(es.se, tb["Std. Error"], atol=TOL_DID2S)


@pytest.mark.slow  # pyfixest's did2s takes ~5 s here
def test_imputation_att_equals_pyfixest_did2s(df_het):
    fit = pf.did2s(df_het, yname="dep_var", first_stage="~ 0 | unit + year", second_stage="~i(treat)",
                   treatment="treat", cluster="state")
    es = event_study(df_het, y="dep_var", unit="unit", time="year", cohort="g", cluster="state",
                     method="imputation")
    att = es.aggregate("simple")
    assert att.estimate == pytest.approx(float(fit.coef().iloc[0]), abs=TOL_DID2S)
    assert att.se == pytest.approx(float(fit.se().iloc[0]), abs=TOL_DID2S)


def _dense_two_stage(y, unit, time, X, D, groups, w, cl):
    """Gardner's two-stage estimator with explicit dummies and the stacked-GMM
    variance (Butts-Gardner): slow, O(N * (units + periods)) memory."""
    U = (unit[:, None] == np.unique(unit)[None, :]).astype(float)
    Tm = (time[:, None] == np.unique(time)[None, 1:]).astype(float)
    X1 = np.column_stack([U, Tm, X])
    X10 = X1 * (~D)[:, None]
    sw = np.sqrt(w)
    g1 = np.linalg.lstsq(X10 * sw[:, None], y * (~D) * sw, rcond=None)[0]
    u1 = y - X1 @ g1
    k = groups.max() + 1
    X2 = (groups[:, None] == np.arange(k)[None, :]).astype(float)
    b2 = np.linalg.lstsq(X2 * sw[:, None], u1 * sw, rcond=None)[0]
    u2 = u1 - X2 @ b2
    V12 = (X2.T * w) @ X1 @ np.linalg.pinv((X10.T * w) @ X10)
    A = np.linalg.inv((X2.T * w) @ X2)
    meat = np.zeros((k, k))
    for g in np.unique(cl):
        m = cl == g
        Wg = (X2[m].T * w[m]) @ u2[m] - V12 @ ((X10[m].T * w[m]) @ u1[m])
        meat += np.outer(Wg, Wg)
    return b2, A @ meat @ A


def test_imputation_equals_dense_reference_with_controls_and_weights():
    df = sl.simulate.staggered(60, 7, seed=8, n_controls=2, dynamic=0.4, drop_share=0.1)
    df = df.with_columns(w=pl.Series(np.random.default_rng(1).uniform(0.3, 3.0, df.height)),
                         region=(pl.col("unit") % 9))
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", controls=["x1", "x2"],
                     cluster="region", weights="w", window=(-3, 3), method="imputation")
    f = df.sort("unit", "time")
    y, u, t = f["y"].to_numpy(), f["unit"].to_numpy(), f["time"].to_numpy()
    g, w = f["cohort"].to_numpy(), f["w"].to_numpy()
    D = (g > 0) & (t >= g)
    X = f.select("x1", "x2").to_numpy()
    rel = np.clip(t - g, -3, 3)
    levels = [r for r in range(-3, 4) if r != -1 and ((g > 0) & (rel == r)).any()]
    groups = np.array([levels.index(r) if (gg > 0 and r in levels) else -1 for gg, r in zip(g, rel)])
    mask = groups >= 0
    b, V = _dense_two_stage(y, u, t, X, D, np.where(mask, groups, len(levels)), w, f["region"].to_numpy())
    assert es.rel_time.tolist() == levels
    np.testing.assert_allclose(es.coef, b[: len(levels)], atol=TOL_DENSE)
    np.testing.assert_allclose(es.vcov, V[: len(levels), : len(levels)], atol=TOL_DENSE)
    # cohort and calendar aggregations: group means of treated rows, their own GMM variance
    for kind, col in (("group", g), ("calendar", t)):
        agg = es.aggregate(kind)
        lv = np.unique(col[D])
        grp = np.where(D, np.searchsorted(lv, col), lv.size)
        bg, Vg = _dense_two_stage(y, u, t, X, D, grp, w, f["region"].to_numpy())
        np.testing.assert_allclose(agg.components["estimate"], bg[: lv.size], atol=TOL_DENSE)
        np.testing.assert_allclose(agg.components["se"], np.sqrt(np.diag(Vg))[: lv.size], atol=TOL_DENSE)


# ------------------------------------------------------- result behaviour
def test_pretrend_test_is_wald_of_leads(panel):
    es = event_study(panel, y="y", unit="unit", time="time", cohort="cohort", window=(-4, 4))
    lead = es.rel_time < 0
    b, V = es.coef[lead], es.vcov[np.ix_(lead, lead)]
    wald = b @ np.linalg.solve(V, b)
    pt = es.pretrend_test()
    assert pt.df == lead.sum()
    assert pt.statistic == pytest.approx(wald / lead.sum(), rel=1e-10)
    from scipy import stats

    assert pt["pvalue"] == pytest.approx(stats.f.sf(wald / lead.sum(), lead.sum(), es.df), rel=1e-10)
    assert pt.tidy().columns == ["statistic", "wald", "df", "df2", "pvalue"]


def test_aggregates_and_tidy(panel):
    es = event_study(panel, y="y", unit="unit", time="time", cohort="cohort", method="twfe")
    tab = es.tidy()
    assert tab.columns == ["rel_time", "estimate", "se", "ci_low", "ci_high"]
    assert -1 not in tab["rel_time"].to_list()
    dyn = es.aggregate("dynamic")
    post = es.rel_time >= 0
    assert dyn.estimate == pytest.approx(es.coef[post].mean(), rel=1e-12)
    assert dyn.tidy()["level"][0] == "overall"
    with pytest.raises(EventStudyError):
        es.aggregate("calendar")


def test_constructor_contract():
    r = EventStudyResult([-2, 0, 1], [0.1, 1.0, 2.0], np.diag([0.01, 0.04, 0.09]), -1, "custom", 100)
    assert r.se.tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert r.aggregate("simple").estimate == pytest.approx(1.5)
    assert r.pretrend_test().df == 1


def test_plot(panel, tmp_path):
    es = event_study(panel, y="y", unit="unit", time="time", cohort="cohort", method="imputation")
    path = tmp_path / "es.png"
    fig = es.plot(path=str(path))
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert path.stat().st_size > 0
    assert any(line.get_linestyle() == "--" for line in ax.lines)


def test_bad_inputs(panel):
    with pytest.raises(EventStudyError):
        event_study(panel, y="y", unit="unit", time="time", cohort="cohort", method="nope")
    with pytest.raises(EventStudyError):
        event_study(panel, y="y", unit="unit", time="time", cohort="cohort", window=(0, 5), ref=-1)
    with pytest.raises(TypeError):
        event_study(panel, y="y", unit="unit", time="time", cohort="cohort", control="never")


def test_panel_input(panel):
    p = sl.Panel.from_frame(panel, unit="unit", time="time")
    a = event_study(p, y="y", cohort="cohort")
    b = event_study(panel, y="y", unit="unit", time="time", cohort="cohort")
    np.testing.assert_array_equal(a.coef, b.coef)


@pytest.mark.slow
def test_imputation_170k_rows_fast_and_lean():
    df = sl.simulate.staggered(10_000, 17, seed=0, dynamic=0.2)
    event_study(df[:3000], y="y", unit="unit", time="time", cohort="cohort", method="imputation")
    tracemalloc.start()
    t0 = time.perf_counter()
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", method="imputation")
    es.aggregate("simple")
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert df.height == 170_000
    assert elapsed < 2.0
    assert peak < 2 * 1024**3


def test_cs_dispatch(panel):
    res = event_study(panel, y="y", unit="unit", time="time", cohort="cohort", method="cs", control="notyet")
    assert res.tidy().columns[:3] == ["rel_time", "estimate", "se"]


def test_imputation_row_chunks_and_panel_codes_do_not_change_results():
    """Tiny row chunks in the imputation passes, and a Panel lending its id
    codes, give the same estimates and variances."""
    from staggerlab.inference.did.event_study import EventStudyTuning

    df = sl.simulate.staggered(80, 7, seed=3, n_controls=2, dynamic=0.4)
    df = df.with_columns(w=pl.Series(np.random.default_rng(2).uniform(0.3, 3.0, df.height)))
    kw = dict(y="y", treat="treat", controls=["x1", "x2"], weights="w", method="imputation")
    ref = event_study(df, unit="unit", time="time", **kw)
    for data in (df, sl.Panel.from_frame(df, unit="unit", time="time")):
        got = event_study(data, unit="unit", time="time", tuning=EventStudyTuning(chunk_rows=37), **kw)
        np.testing.assert_allclose(got.coef, ref.coef, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.vcov, ref.vcov, rtol=1e-10, atol=1e-16)
        for kind in ("simple", "group", "calendar"):
            assert got.aggregate(kind).se == pytest.approx(ref.aggregate(kind).se, rel=1e-10)


@pytest.mark.parametrize("method", ["twfe", "sunab"])
@pytest.mark.parametrize(
    "case",
    [
        dict(controls=["x1", "x2"], cluster=None, drop=0.2, window=(-4, 4)),
        dict(controls=["x1"], cluster="region", drop=0.0, window=(-3, 2)),
        dict(controls=None, cluster=None, drop=0.1, window=(-6, 6), bin_endpoints=False),
    ],
    ids=["controls-unbalanced", "cluster-region", "unbinned"],
)
def test_lean_path_equals_feols_path(method, case):
    """The lean regression (per-unit sums, no N x k design) that big panels
    take gives the feols path's estimates, SEs and aggregates."""
    from staggerlab.inference.did.event_study import EventStudyTuning

    df = sl.simulate.staggered(150, 12, n_controls=2, drop_share=case["drop"], never_share=0.3, seed=8)
    rng = np.random.default_rng(3)
    df = df.with_columns(region=pl.Series(rng.integers(0, 12, 150)[df["unit"].to_numpy() % 150]))
    kw = dict(y="y", unit="unit", time="time", cohort="cohort", controls=case["controls"], cluster=case["cluster"],
              window=case["window"], bin_endpoints=case.get("bin_endpoints", True), method=method)
    ref = event_study(df, **kw)
    got = event_study(df, tuning=EventStudyTuning(lean_bytes=0), **kw)
    assert got.extra.get("lean") and not ref.extra.get("lean")
    a, b = got.tidy(), ref.tidy()
    np.testing.assert_array_equal(a["rel_time"].to_numpy(), b["rel_time"].to_numpy())
    np.testing.assert_allclose(a["estimate"].to_numpy(), b["estimate"].to_numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a["se"].to_numpy(), b["se"].to_numpy(), rtol=1e-8)
    assert (got.nobs, got.df) == (ref.nobs, ref.df)
    np.testing.assert_allclose(got.extra["n_rel"], ref.extra["n_rel"])
    for kind in ("simple",) + (("group",) if method == "sunab" else ()):
        ga, ra = got.aggregate(kind), ref.aggregate(kind)
        assert ga.estimate == pytest.approx(ra.estimate, rel=1e-8)
        assert ga.se == pytest.approx(ra.se, rel=1e-8)


def test_lean_path_falls_back_to_feols():
    """Weights and singleton units are feols' business (it reports what it drops)."""
    from staggerlab.inference.did.event_study import EventStudyTuning

    lean = EventStudyTuning(lean_bytes=0)
    df = sl.simulate.staggered(80, 8, drop_share=0.1, seed=2).with_columns(w=pl.lit(1.5))
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", weights="w", tuning=lean)
    assert not es.extra.get("lean")
    single = df.filter(~((pl.col("unit") == 3) & (pl.col("time") > df["time"].min())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = event_study(single, y="y", unit="unit", time="time", cohort="cohort", tuning=lean)
    assert not es.extra.get("lean")


# ------------------------------------------------------------------ reference periods (issue 16, item 3)
def _biennial() -> pd.DataFrame:
    """Periods 0, 2, ..., 18 and cohorts adopting at even periods: relative period -1 never occurs."""
    rng = np.random.default_rng(11)
    units, times = 160, np.arange(0, 20, 2)
    coh = rng.choice([6, 10, 14, 0], units)
    u = np.repeat(np.arange(units), times.size)
    t = np.tile(times, units)
    g = coh[u]
    y = rng.normal(size=units)[u] + 0.1 * t + ((g > 0) & (t >= g)) * 1.0 + rng.normal(size=u.size)
    return pd.DataFrame({"unit": u, "time": t, "cohort": g, "y": y})


@pytest.mark.parametrize("method", ["twfe", "sunab"])
def test_unobserved_reference_period_is_refused_by_name(method):
    df = _biennial()
    with pytest.raises(sl.errors.ReferencePeriodError, match=r"reference period -1 is not observed.*"
                       r"\[-5, -4, -2, 0, 2, 4, 5\].*ref=-2"):
        event_study(df, y="y", unit="unit", time="time", cohort="cohort", method=method)


def test_biennial_twfe_with_observed_reference_equals_pyfixest():
    # reference: pyfixest's i() with the reference period the error message suggests
    df = _biennial()
    df["rb"] = np.where(df.cohort > 0, np.clip(df.time - df.cohort, -5, 5), -2)
    ref = pf.feols("y ~ i(rb, ref=-2) | unit + time", df, vcov={"CRV1": "unit"}).tidy()
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", ref=-2)
    assert es.rel_time.tolist() == [_rel_of(n) for n in ref.index]
    np.testing.assert_allclose(es.coef, ref["Estimate"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    np.testing.assert_allclose(es.se, ref["Std. Error"], rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    assert "reference period -2" in es.summary()


def _all_treated() -> pd.DataFrame:
    # every unit adopts (cohorts 3..7 of periods 1..8); before period 7 the last cohort is untreated
    df = sl.simulate.staggered(200, 8, never_share=0.0, cohorts=[3, 4, 5, 6, 7], start=1, seed=4).to_pandas()
    return df[df.time < 7].reset_index(drop=True)


def test_collinear_dummies_without_never_treated_are_refused():
    df = _all_treated()
    with pytest.raises(sl.errors.ReferencePeriodError, match=r"without never-treated units.*ref=\[-1, -6\]"):
        event_study(df, y="y", unit="unit", time="time", cohort="cohort", bin_endpoints=False, window=(-6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", sl.errors.CollinearityWarning)  # refused, not dropped with a warning
        with pytest.raises(sl.errors.ReferencePeriodError):
            event_study(df, y="y", unit="unit", time="time", cohort="cohort", bin_endpoints=False, window=(-6, 6))
    with pytest.raises(sl.errors.ReferencePeriodError, match="method='twfe' only"):
        event_study(df, y="y", unit="unit", time="time", cohort="cohort", method="sunab", ref=[-1, -4])


def test_two_reference_periods_equal_explicit_dummies_in_pyfixest(tmp_path):
    # reference: pyfixest on hand-made dummies for every relative period except -1 and -4
    df = _all_treated()
    rel = df.time - df.cohort
    names = []
    for r in sorted(set(rel) - {-1, -4}):
        names.append(f"d{'m' if r < 0 else 'p'}{abs(r)}")
        df[names[-1]] = (rel == r).astype(float)
    fit = pf.feols(f"y ~ {' + '.join(names)} | unit + time", df, vcov={"CRV1": "unit"})
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", bin_endpoints=False, window=(-6, 6),
                     ref=[-1, -4])
    assert es.rel_time.tolist() == sorted(set(rel) - {-1, -4})
    np.testing.assert_allclose(es.coef, fit.coef().values, rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    np.testing.assert_allclose(es.se, fit.se().values, rtol=RTOL_PYFIXEST, atol=ATOL_PYFIXEST)
    assert (es.ref, es.refs) == (-1, (-1, -4))
    assert "reference periods -1, -4" in es.summary()
    fig = es.plot()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "reference (-1, -4)" in labels


# ------------------------------------------------------------------ few clusters (issue 16, item 7)
@pytest.mark.parametrize("method", ["sunab", "imputation", "cs"])
def test_df_clusters_gives_t_quantiles_with_g_minus_1(method):
    from scipy import stats

    df = sl.simulate.staggered(50, 8, seed=1)
    G = df["unit"].n_unique()  # clusters = units, counted by hand
    kw = dict(y="y", unit="unit", time="time", cohort="cohort", method=method)
    es_t = event_study(df, df="clusters", **kw)
    es_n = event_study(df, df="normal", **kw)
    for res, q in ((es_t, stats.t.ppf(0.975, G - 1)), (es_n, stats.norm.ppf(0.975))):
        tab = res.tidy()
        est, se = tab["estimate"].to_numpy(), tab["se"].to_numpy()
        np.testing.assert_allclose(tab["ci_high"].to_numpy(), est + q * se, rtol=1e-12)
        a = res.aggregate("simple")
        lo = a.tidy()["ci_low"][0]
        assert lo == pytest.approx(a.estimate - q * a.se, rel=1e-12)
    np.testing.assert_allclose(es_t.coef, es_n.coef, rtol=0, atol=0)
    pt = es_t.pretrend_test()
    assert pt.pvalue == pytest.approx(stats.f.sf(pt.wald / pt.df1, pt.df1, G - 1), rel=1e-10)
    with pytest.raises(EventStudyError, match="df"):
        event_study(df, df="t", **kw)


def test_honest_refuses_two_reference_periods():
    df = _all_treated()
    es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", bin_endpoints=False, window=(-6, 6),
                     ref=[-1, -4])
    with pytest.raises(sl.errors.HonestDiDError, match=r"normalises 2 periods \(-1, -4\)"):
        sl.honest(es, method="relative_magnitude", Mbar=[1])


def test_a_relative_period_resting_on_one_cluster_is_flagged():
    """A cohort of one unit alone at relative period -5: its coefficient is that unit's own
    contrast, with no leave-that-cluster-out estimate (the CRV3 jackknife refuses it), so its
    CRV1 interval is flagged, by TWFE, Sun-Abraham and imputation alike; the full panel is not."""
    from staggerlab.errors import SingleClusterWarning, VcovError
    from staggerlab.inference.regression.absorb import Absorber
    from staggerlab.inference.regression.vcov import jackknife_nested

    df = sl.simulate.staggered(60, 8, n_controls=1, seed=4)
    keep = df.filter(pl.col("cohort") == 2017)["unit"][0]
    one = df.filter((pl.col("cohort") != 2017) | (pl.col("unit") == keep))
    for method in ("twfe", "sunab", "imputation"):
        with pytest.warns(SingleClusterWarning, match=r"relative period\(s\) \[-5\] rest on the treated rows of one "
                                                      r"cluster \('unit'\)"):
            es = sl.event_study(one, y="y", unit="unit", time="time", cohort="cohort", method=method)
        assert es.extra["single_cluster"] == [-5]
        assert "relative period(s) [-5] rest on one cluster" in es.summary()
        with warnings.catch_warnings():
            warnings.simplefilter("error", SingleClusterWarning)
            full = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", method=method)
        assert full.extra["single_cluster"] == []
    # the dynamic TWFE design itself: leaving that unit out leaves the -5 dummy unidentified
    rel = (one["time"] - one["cohort"]).clip(-5, 5).to_numpy()
    treated = one["cohort"].to_numpy() > 0
    cols = [((rel == r) & treated).astype(float) for r in range(-5, 6) if r != -1]
    times = np.unique(one["time"].to_numpy())
    cols += [(one["time"].to_numpy() == t).astype(float) for t in times[1:]]
    ucode = one["unit"].rank("dense").cast(pl.Int64).to_numpy() - 1
    within = Absorber([ucode])
    Xd, yd = within.demean(np.column_stack(cols)), within.demean(one["y"].to_numpy())
    bread = np.linalg.inv(Xd.T @ Xd)
    with pytest.raises(VcovError, match="one cluster alone"):
        jackknife_nested(Xd, yd - Xd @ (bread @ (Xd.T @ yd)), bread, ucode)
