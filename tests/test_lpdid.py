"""LP-DiD: against Stata lpdid's values on its example data (as printed in
pyfixest's tests), pyfixest's ``lpdid``, and by-hand long differences."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

from staggerlab.errors import ArgumentTypeError, EventStudyError, PanelError
from staggerlab.inference.did.event_study import event_study

pf = pytest.importorskip("pyfixest")
from pyfixest.did.estimation import lpdid as pf_lpdid  # noqa: E402

TOL_PYFIXEST = 1e-6  # the same OLS/CRV1 algebra; pyfixest demeans the period FE on its own
TOL_STATA = 1e-5  # Stata's values are known to 5 significant digits (pyfixest's test)
TOL_HAND = 1e-9


@pytest.fixture(scope="module")
def lpdata() -> pd.DataFrame:
    """Stata lpdid's example data (2000 units x 50 periods), shipped with pyfixest."""
    return pd.read_stata(pf.__path__[0] + "/did/data/lpdidtestdata1.dta").astype(np.float64)


@pytest.fixture(scope="module")
def small(lpdata) -> pd.DataFrame:
    return lpdata[lpdata.unit <= 250].reset_index(drop=True)


def _lp(df, window=(-5, 10), **kw):
    return event_study(pl.from_pandas(df), y="Y", unit="unit", time="time", cohort="event_date",
                       window=window, method="lpdid", **kw)


def test_matches_stata_values(lpdata):
    es = _lp(lpdata)
    assert es.rel_time.tolist() == [-5, -4, -3, -2, *range(11)]
    np.testing.assert_allclose(es.coef[0], -0.042566, rtol=TOL_STATA)
    np.testing.assert_allclose(es.coef[-1], 72.635834, rtol=TOL_STATA)
    assert es.extra["n_obs"][0] == 40662 and es.extra["n_obs"][-1] == 28709
    np.testing.assert_allclose(es.aggregate("simple").estimate, 31.79438, rtol=TOL_STATA)
    assert es.extra["pooled_nobs"]["simple"] == 28709


def test_event_study_and_pooled_match_pyfixest(small):
    ref = pf_lpdid(small, yname="Y", idname="unit", tname="time", gname="event_date", att=False,
                   pre_window=5, post_window=10).tidy()
    es = _lp(small)
    assert es.rel_time.tolist() == [int(s.split("::")[1]) for s in ref.index]
    np.testing.assert_allclose(es.coef, ref["Estimate"], rtol=TOL_PYFIXEST)
    np.testing.assert_allclose(es.se, ref["Std. Error"], rtol=TOL_PYFIXEST)
    np.testing.assert_array_equal(es.extra["n_obs"], ref["N"].to_numpy())
    pooled = pf_lpdid(small, yname="Y", idname="unit", tname="time", gname="event_date", att=True,
                      pre_window=5, post_window=10).tidy()
    agg = es.aggregate("simple")
    np.testing.assert_allclose(agg.estimate, pooled["Estimate"].iloc[0], rtol=TOL_PYFIXEST)
    np.testing.assert_allclose(agg.se, pooled["Std. Error"].iloc[0], rtol=TOL_PYFIXEST)


def _long_frame(df: pd.DataFrame, h: int) -> pd.DataFrame:
    """By hand: each row's long difference y[t+h] - y[t-1] and its event flag
    (the panel is balanced with consecutive periods: shifting columns shifts time)."""
    w = df.pivot(index="unit", columns="time", values="Y")
    dy = (w.shift(-h, axis=1) - w.shift(1, axis=1)).stack().dropna().rename("dy").reset_index()
    g = df.groupby("unit")["event_date"].first().fillna(0)
    dy["g"] = g.loc[dy.unit].to_numpy()
    dy["ev"] = (dy.g == dy.time).astype(float)
    return dy[["unit", "time", "dy", "ev", "g"]]


def _clean(df: pd.DataFrame, h: int) -> pd.DataFrame:
    """Newly treated rows and not-yet-treated clean controls of horizon h >= 0, by hand."""
    lf = _long_frame(df, h)
    return lf[(lf.ev == 1) | (lf.g == 0) | (lf.time + h < lf.g)]


@pytest.mark.parametrize("h", [0, 3, -3])
def test_reweighted_is_mean_over_events_of_the_gap_to_clean_controls(small, h):
    """Reweighted LP-DiD = the equally weighted mean, over newly treated rows,
    of their long difference minus the same-period mean of the clean controls."""
    lf = _long_frame(small, h)
    clean = (lf.g == 0) | ((lf.time + h < lf.g) if h >= 0 else (lf.time < lf.g))
    lf = lf[(lf.ev == 1) | clean]
    cm = lf[lf.ev == 0].groupby("time")["dy"].mean()
    ev = lf[lf.ev == 1]
    ev = ev[ev.time.isin(cm.index)]
    want = float((ev.dy - cm.loc[ev.time].to_numpy()).mean())
    es = _lp(small, reweight=True)
    got = es.coef[es.rel_time.tolist().index(h)]
    np.testing.assert_allclose(got, want, rtol=TOL_HAND)


def test_never_treated_controls_match_pyfixest_on_hand_built_sample(small):
    h = 2
    lf = _long_frame(small, h)
    lf = lf[(lf.ev == 1) | (lf.g == 0)]
    ref = pf.feols("dy ~ ev | time", lf, vcov={"CRV1": "unit"})
    es = _lp(small, control="never")
    j = es.rel_time.tolist().index(h)
    np.testing.assert_allclose(es.coef[j], ref.coef()["ev"], rtol=TOL_PYFIXEST)
    np.testing.assert_allclose(es.se[j], ref.se()["ev"], rtol=TOL_PYFIXEST)


def test_joint_covariance_and_result_protocol(small):
    es = _lp(small, window=(-3, 4))
    # the diagonal is each horizon's CRV1 variance (checked against pyfixest above); the
    # off-diagonal pairs the horizons' cluster scores: by hand for horizons 0 and 1
    sc = []
    for h in (0, 1):
        d = _clean(small, h)
        xd = d.ev - d.groupby("time").ev.transform("mean")
        yd = d.dy - d.groupby("time").dy.transform("mean")
        u = yd - (xd @ yd) / (xd @ xd) * xd
        sc.append((xd * u).groupby(d.unit).sum())
    both = pd.concat(sc, axis=1).fillna(0.0)
    j0, j1 = es.rel_time.tolist().index(0), es.rel_time.tolist().index(1)
    corr = es.vcov[j0, j1] / np.sqrt(es.vcov[j0, j0] * es.vcov[j1, j1])
    want = (both[0] * both[1]).sum() / np.sqrt((both[0] ** 2).sum() * (both[1] ** 2).sum())
    np.testing.assert_allclose(corr, want, rtol=1e-8)
    assert np.all(np.linalg.eigvalsh(es.vcov) > -1e-10)
    assert es.pretrend_test().df == 2
    dyn = es.aggregate("dynamic")
    np.testing.assert_allclose(dyn.estimate, es.coef[es.rel_time >= 0].mean(), rtol=1e-12)
    # pooled pre: mean of y[t-3], y[t-2] minus y[t-1], by hand
    lf2, lf3 = _long_frame(small, -2), _long_frame(small, -3)
    m = lf3.merge(lf2, on=["unit", "time", "ev", "g"])
    m["dy"] = (m.dy_x + m.dy_y) / 2
    m = m[(m.ev == 1) | (m.g == 0) | (m.time < m.g)]
    ref = pf.feols("dy ~ ev | time", m, vcov={"CRV1": "unit"})
    pre = es.aggregate("pre")
    np.testing.assert_allclose(pre.estimate, ref.coef()["ev"], rtol=TOL_PYFIXEST)
    np.testing.assert_allclose(pre.se, ref.se()["ev"], rtol=TOL_PYFIXEST)
    assert es.tidy().height == 7


def test_refusals(small):
    with pytest.raises(EventStudyError, match="ref must be -1"):
        event_study(pl.from_pandas(small), y="Y", unit="unit", time="time", cohort="event_date",
                    method="lpdid", ref=-2)
    with pytest.raises(ArgumentTypeError, match="unexpected keyword"):
        _lp(small, weighting="x")
    df = small.copy()
    df["time"] = df["time"] + 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PanelError, match="non-integer periods"):
            _lp(df.assign(event_date=df.event_date + 0.5))


def test_plot_and_honest_work_on_every_new_method(small):
    import matplotlib

    matplotlib.use("Agg")
    import staggerlab as sl

    # 100 units, 20 periods: ETWFE with never-treated controls has a dummy per cohort x period
    sub = small[(small.unit <= 100) & small.time.between(10, 29)]
    df = pl.from_pandas(sub.assign(event_date=sub.event_date.where(sub.event_date <= 29)))
    kw = dict(y="Y", unit="unit", time="time", cohort="event_date", window=(-4, 3))
    for method, opts in (("lpdid", {}), ("stacked", {}), ("etwfe", {"control": "never", "bin_endpoints": False})):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es = event_study(df, method=method, **kw, **opts)
        assert es.plot() is not None
        h = sl.honest(es, method="smoothness", M=[0.0, 0.5], grid_points=50)
        assert h.tidy().height == 2
