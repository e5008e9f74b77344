"""Extended TWFE: the identity with the imputation estimator, Sun-Abraham with
never-treated controls, and pyfixest on a hand-built covariate design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import EventStudyError
from staggerlab.inference.did.event_study import event_study

pf = pytest.importorskip("pyfixest")

TOL_IDENTITY = 1e-10  # two exact solvers of the same least-squares problem
TOL_PYFIXEST = 1e-8


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return sl.simulate.staggered(300, 10, seed=3, dynamic=0.3, cohort_slope=0.5, n_controls=1)


def _es(df, method, **kw):
    kw.setdefault("window", (-4, 4))
    return event_study(df, y="y", unit="unit", time="time", cohort="cohort", method=method, **kw)


@pytest.mark.parametrize("window", [(-4, 4), (-2, 3)])
def test_equals_imputation_on_balanced_panel(panel, window):
    et, imp = _es(panel, "etwfe", window=window), _es(panel, "imputation", window=window)
    post = imp.rel_time >= 0
    assert et.rel_time.tolist() == imp.rel_time[post].tolist()
    np.testing.assert_allclose(et.coef, imp.coef[post], rtol=TOL_IDENTITY, atol=TOL_IDENTITY)
    for kind in ("simple", "group", "calendar"):
        a, b = et.aggregate(kind), imp.aggregate(kind)
        np.testing.assert_allclose(a.estimate, b.estimate, rtol=TOL_IDENTITY)
        if kind != "simple":
            np.testing.assert_allclose(a.components["estimate"], b.components["estimate"], rtol=TOL_IDENTITY)


def test_never_treated_version_equals_sun_abraham(panel):
    kw = dict(window=(-4, 4), bin_endpoints=False)
    et, sa = _es(panel, "etwfe", control="never", **kw), _es(panel, "sunab", **kw)
    assert et.rel_time.tolist() == sa.rel_time.tolist()
    np.testing.assert_allclose(et.coef, sa.coef, rtol=TOL_IDENTITY, atol=TOL_IDENTITY)
    np.testing.assert_allclose(et.se, sa.se, rtol=1e-8)
    assert et.pretrend_test().df == 3


def test_covariates_match_pyfixest_hand_built_design(panel):
    df = panel.to_pandas()
    df = df[df.unit < 100].reset_index(drop=True)
    treated = (df.cohort > 0) & (df.time >= df.cohort)
    df["cell"] = np.where(treated, df.cohort.astype(str) + "_" + df.time.astype(str), "none")
    cells = sorted(set(df.cell) - {"none"})
    df["xd"] = df.x1 - df.groupby("cohort").x1.transform("mean")
    terms = []
    for j, c in enumerate(cells):
        df[f"d{j}"] = (df.cell == c).astype(float)
        df[f"dx{j}"] = df[f"d{j}"] * df.xd
        terms += [f"d{j}", f"dx{j}"]
    for s in sorted(df.time.unique())[1:]:
        df[f"xt{s}"] = (df.time == s) * df.x1
        terms.append(f"xt{s}")
    ref = pf.feols("y ~ x1 + " + " + ".join(terms) + " | unit + time", df, vcov={"CRV1": "unit"})
    et = _es(pl.from_pandas(df[["y", "unit", "time", "cohort", "x1"]]), "etwfe", controls=["x1"])
    got = et.extra["cells"]
    want = [ref.coef()[f"d{j}"] for j in range(len(cells))]
    np.testing.assert_allclose(got["estimate"], want, rtol=TOL_PYFIXEST)
    np.testing.assert_allclose(got["se"], [ref.se()[f"d{j}"] for j in range(len(cells))], rtol=TOL_PYFIXEST)
    # the simple aggregate by hand: cells weighted by their observations, delta-method se
    n = got["n"].to_numpy()
    w = n / n.sum()
    idx = [ref._coefnames.index(f"d{j}") for j in range(len(cells))]
    V = ref._vcov[np.ix_(idx, idx)]
    agg = et.aggregate("simple")
    np.testing.assert_allclose(agg.estimate, w @ np.array(want), rtol=TOL_PYFIXEST)
    np.testing.assert_allclose(agg.se, np.sqrt(w @ V @ w), rtol=TOL_PYFIXEST)


def test_drops_always_treated_and_refuses_bad_options(panel):
    df = panel.with_columns(pl.when(pl.col("unit") < 5).then(pl.col("time").min()).otherwise(pl.col("cohort"))
                            .alias("cohort"))
    with pytest.warns(UserWarning, match="no untreated observation"):
        _es(df, "etwfe")
    with pytest.raises(EventStudyError, match="ref must be -1"):
        _es(panel, "etwfe", ref=-2)
    never_none = panel.filter(pl.col("cohort") > 0)
    with pytest.raises(EventStudyError, match="never-treated"):
        _es(never_none, "etwfe", control="never")


def test_unbalanced_panel_runs_and_aggregates(panel):
    df = panel.to_pandas().sample(frac=0.85, random_state=1).sort_values(["unit", "time"])
    et = _es(pl.from_pandas(df), "etwfe")
    assert np.isfinite(et.coef).all() and et.aggregate("dynamic").se > 0
    assert isinstance(et.summary(), str) and et.tidy().height == et.rel_time.size
    assert pd.Series(et.aggregate("group").components["level"]).is_monotonic_increasing
