"""de Chaisemartin-D'Haultfoeuille weights against the authors' twowayfeweights
package and against the decomposition identity with known effects."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.inference.did.dcdh import twfe_weights

TOL_PACKAGE = 1e-6
TOL_IDENTITY = 1e-10


def _compare(mine, ref):
    assert mine.beta == pytest.approx(ref.beta, abs=TOL_PACKAGE)
    assert (mine.n_positive, mine.n_negative) == (ref.nr_plus, ref.nr_minus)
    assert mine.sum_positive == pytest.approx(ref.sum_plus, abs=TOL_PACKAGE)
    assert mine.sum_negative == pytest.approx(ref.sum_minus, abs=TOL_PACKAGE)
    assert mine.sigma == pytest.approx(ref.sensibility, abs=TOL_PACKAGE)


def test_equals_twowayfeweights_on_wagepan():
    """Wooldridge's wagepan (public, shipped with twowayfeweights): union status
    switches on and off, so cells are (person, year)."""
    twfw = pytest.importorskip("twowayfeweights")
    wp = twfw.load_wagepan()
    ref = twfw.twowayfeweights(wp, Y="lwage", G="nr", T="year", D="union")
    mine = twfe_weights(wp, y="lwage", unit="nr", time="year", treat="union")
    assert mine.cells == "unit"
    _compare(mine, ref)
    rw = pl.from_pandas(ref.weights).rename({"Group_TWFE": "nr", "Time_TWFE": "year"}).filter(pl.col("weight") != 0)
    joined = mine.tidy().filter(pl.col("weight") != 0).join(rw, on=["nr", "year"], how="full", coalesce=True)
    assert joined.height == rw.height
    np.testing.assert_allclose(joined["weight"], joined["weight_right"], atol=TOL_PACKAGE)


def test_equals_twowayfeweights_staggered_cohort_cells():
    """Balanced staggered panel: cohort x period cells equal the package with G = cohort."""
    twfw = pytest.importorskip("twowayfeweights")
    df = sl.simulate.staggered(300, 9, seed=2, dynamic=0.3, cohort_slope=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = twfw.twowayfeweights(df.to_pandas(), Y="y", G="cohort", T="time", D="treat")
    mine = twfe_weights(df, y="y", unit="unit", time="time", cohort="cohort")
    _compare(mine, ref)
    assert mine.n_negative > 0


@pytest.mark.parametrize("drop_share", [0.0, 0.2])
def test_identity_with_known_effects(drop_share):
    """No noise: y = unit FE + period FE + tau * D, so beta = sum_c weight_c * mean tau_c
    exactly on (unit, period) cells, and on cohort cells when the panel is balanced."""
    df = sl.simulate.staggered(150, 8, seed=5, dynamic=0.5, cohort_slope=-0.7, noise_sd=0.0,
                               drop_share=drop_share)
    df = df.with_columns(tau=pl.col("tau") + 0.3 * (pl.col("unit") % 5))  # heterogeneity within cohorts
    df = df.with_columns(y=pl.col("y") + 0.3 * (pl.col("unit") % 5) * pl.col("treat"))
    kinds = ["unit", "cohort"] if drop_share == 0.0 else ["unit"]
    fit = sl.feols("y ~ treat | unit + time", df, fixef_rm="none")
    for cells in kinds:
        res = twfe_weights(df, y="y", unit="unit", time="time", cohort="cohort", cells=cells)
        key = ["unit", "time"] if cells == "unit" else ["cohort", "time"]
        eff = df.filter(pl.col("treat") == 1).group_by(key).agg(pl.col("tau").mean())
        t = res.tidy().join(eff, on=key)
        assert t.height == res.tidy().height
        assert res.beta == pytest.approx(fit.coef()["treat"], abs=TOL_IDENTITY)
        assert (t["weight"] * t["tau"]).sum() == pytest.approx(res.beta, abs=TOL_IDENTITY)
        assert t["weight"].sum() == pytest.approx(1.0, abs=TOL_IDENTITY)
        assert (res.nobs, res.n_units) == (fit.nobs, df["unit"].n_unique())


def test_missing_outcome_rows_are_left_out_and_counted():
    df = sl.simulate.staggered(80, 6, seed=3)
    y = df["y"].to_numpy().copy()
    y[[0, 7, 30]] = np.nan
    holes = df.with_columns(pl.Series("y", y))
    with pytest.warns(sl.errors.MissingValueWarning, match="dropped 3 of 480"):
        res = twfe_weights(holes, y="y", unit="unit", time="time", cohort="cohort")
    ref = twfe_weights(holes.filter(pl.col("y").is_not_nan()), y="y", unit="unit", time="time", cohort="cohort")
    assert (res.nobs, res.n_units) == (477, 80)
    assert res.beta == ref.beta
    assert res.tidy().equals(ref.tidy())
    assert "80 units, 477 observations" in res.summary()


def test_switching_treatment_and_summary():
    rng = np.random.default_rng(0)
    n, T = 40, 6
    d = (rng.random(n * T) < 0.4).astype(int)
    df = pl.DataFrame({"u": np.repeat(np.arange(n), T), "t": np.tile(np.arange(T), n), "d": d,
                       "y": rng.normal(size=n * T) + d})
    res = twfe_weights(df, y="y", unit="u", time="t", treat="d")
    assert res.cells == "unit"
    assert res.tidy().height == d.sum()
    assert res.sum_positive + res.sum_negative == pytest.approx(1.0, abs=TOL_IDENTITY)
    assert "sigma" in res.summary()
    with pytest.raises(sl.errors.TreatmentError):
        twfe_weights(df, y="y", unit="u", time="t", treat="d", cells="cohort")
