"""Goodman-Bacon decomposition: exact identities on balanced panels."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import staggerlab as sl
from staggerlab.errors import PanelError
from staggerlab.inference.did.bacon import ALWAYS, EARLY, LATE, NEVER, bacon

TOL_IDENTITY = 1e-10  # algebraic identities, float64 round-off only


@st.composite
def balanced_staggered(draw) -> pl.DataFrame:
    """Balanced panel with 1-4 adoption cohorts, optionally no never-treated
    units and optionally always-treated units (adopted before the first period)."""
    n_units = draw(st.integers(4, 30))
    n_periods = draw(st.integers(3, 9))
    start = 2000
    cohorts = draw(st.lists(st.integers(start + 1, start + n_periods - 1), min_size=1, max_size=4, unique=True))
    pool = list(cohorts)
    if draw(st.booleans()):
        pool.append(0)
    if draw(st.booleans()):
        pool.append(start - 3)  # always treated
    g = np.array(draw(st.lists(st.sampled_from(pool), min_size=n_units, max_size=n_units)))
    g[0] = cohorts[0]  # at least one unit switches within the sample
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), n_periods)
    time = np.tile(np.arange(start, start + n_periods), n_units)
    coh = np.repeat(g, n_periods)
    d = ((coh > 0) & (time >= coh)).astype(float)
    tau = rng.normal(1.0, 2.0, size=n_units)[unit] + 0.3 * (time - coh) * d
    y = rng.normal(size=n_units)[unit] + rng.normal(size=n_periods)[time - start] + tau * d + rng.normal(size=unit.size)
    return pl.DataFrame({"unit": unit, "time": time, "cohort": coh, "y": y})


def _twfe(df: pl.DataFrame) -> float:
    df = df.with_columns(d=((pl.col("cohort") > 0) & (pl.col("time") >= pl.col("cohort"))).cast(pl.Float64))
    return sl.feols("y ~ d | unit + time", df, fixef_rm="none").coef()["d"]


@given(balanced_staggered())
def test_weights_sum_to_one_and_reproduce_twfe(df):
    d = df.with_columns(treat=((pl.col("cohort") > 0) & (pl.col("time") >= pl.col("cohort"))).cast(pl.Int64))
    if d.group_by("time").agg(pl.col("treat").n_unique())["treat"].max() < 2:
        return  # treatment collinear with the period effects: no TWFE coefficient
    res = bacon(df, y="y", unit="unit", time="time", cohort="cohort")
    assert res.weights.sum() == pytest.approx(1.0, abs=TOL_IDENTITY)
    assert (res.weights >= -TOL_IDENTITY).all()
    assert res.weights @ res.estimates == pytest.approx(res.twfe, abs=TOL_IDENTITY * max(1.0, abs(res.twfe)))
    assert res.twfe == pytest.approx(_twfe(df), abs=TOL_IDENTITY * max(1.0, abs(res.twfe)))


def test_each_2x2_is_the_twfe_of_its_subsample():
    """Every 2x2 equals the TWFE regression on its two groups and its window."""
    df = sl.simulate.staggered(120, 9, seed=7, dynamic=0.3, cohort_slope=0.4)
    res = bacon(df, y="y", unit="unit", time="time", cohort="cohort")
    t0, t1 = int(df["time"].min()), int(df["time"].max())
    for r in res.tidy().iter_rows(named=True):
        k, c = r["treated"], r["control"]
        if r["type"] == NEVER:
            lo, hi = t0, t1
        elif r["type"] == EARLY:
            lo, hi = t0, c - 1
        else:
            lo, hi = c, t1
        sub = df.filter(pl.col("cohort").is_in([k, c]) & pl.col("time").is_between(lo, hi))
        assert r["estimate"] == pytest.approx(_twfe(sub), abs=1e-10)


def test_types_and_by_type():
    df = sl.simulate.staggered(200, 8, seed=2, dynamic=0.2)
    res = bacon(df, y="y", unit="unit", time="time", cohort="cohort")
    bt = res.by_type()
    assert set(bt["type"].to_list()) == {EARLY, LATE, NEVER}
    assert bt["weight"].sum() == pytest.approx(1.0, abs=TOL_IDENTITY)
    assert (bt["weight"] * bt["estimate"]).sum() == pytest.approx(res.twfe, abs=TOL_IDENTITY)
    assert res.tidy().columns == ["type", "treated", "control", "estimate", "weight"]
    # with no staggering (one cohort) only treated-vs-never comparisons remain
    one = df.with_columns(cohort=pl.when(pl.col("cohort") > 0).then(2015).otherwise(0))
    assert bacon(one, y="y", unit="unit", time="time", cohort="cohort").by_type()["type"].to_list() == [NEVER]


def test_always_treated_type():
    df = sl.simulate.staggered(100, 8, seed=3).with_columns(
        cohort=pl.when(pl.col("unit") % 7 == 0).then(2000).otherwise(pl.col("cohort")))
    res = bacon(df, y="y", unit="unit", time="time", cohort="cohort")
    assert ALWAYS in res.types
    assert res.weights @ res.estimates == pytest.approx(res.twfe, abs=TOL_IDENTITY)


def test_unbalanced_raises():
    df = sl.simulate.staggered(100, 8, seed=1, drop_share=0.1)
    with pytest.raises(PanelError, match="balance=True"):
        bacon(df, y="y", unit="unit", time="time", cohort="cohort")


def test_balance_keeps_units_complete_in_the_columns_used():
    """``balance=True`` equals the decomposition of the panel balanced by hand:
    rows missing the outcome dropped, then the units seen in every period kept."""
    df = sl.simulate.staggered(100, 8, seed=1, drop_share=0.1)
    y = df["y"].to_numpy().copy()
    full_units = df.group_by("unit").len().filter(pl.col("len") == 8)["unit"].sort()
    hole = df.with_row_index().filter(pl.col("unit") == full_units[0])["index"][3]
    y[hole] = np.nan  # a unit observed in every period loses one outcome
    df = df.with_columns(pl.Series("y", y), pl.lit(None, dtype=pl.Float64).alias("unused"))
    by_hand = df.filter(pl.col("y").is_not_nan()).filter(pl.len().over("unit") == 8)
    assert full_units[0] not in by_hand["unit"]
    with pytest.warns(sl.errors.MissingValueWarning, match=r"kept the (\d+) of 100 units observed with 'y' in all 8"):
        res = bacon(df, y="y", unit="unit", time="time", cohort="cohort", balance=True)
    ref = bacon(by_hand, y="y", unit="unit", time="time", cohort="cohort")
    assert (res.n_units, res.nobs) == (by_hand["unit"].n_unique(), by_hand.height) == (ref.n_units, ref.nobs)
    assert res.balanced_from == (100, int(df["y"].is_not_nan().sum()))
    np.testing.assert_array_equal(res.estimates, ref.estimates)
    np.testing.assert_array_equal(res.weights, ref.weights)
    assert res.twfe == pytest.approx(_twfe(by_hand), abs=TOL_IDENTITY)
    assert f"{res.n_units} units" in res.summary() and "of 100 units" in res.summary()
    balanced = sl.simulate.staggered(60, 6, seed=2)
    assert bacon(balanced, y="y", unit="unit", time="time", cohort="cohort", balance=True).balanced_from is None


def test_treat_input_and_plot(tmp_path):
    df = sl.simulate.staggered(100, 8, seed=4)
    a = bacon(df, y="y", unit="unit", time="time", treat="treat")
    b = bacon(df, y="y", unit="unit", time="time", cohort="cohort")
    np.testing.assert_array_equal(a.estimates, b.estimates)
    fig = a.plot(path=str(tmp_path / "b.png"))
    assert fig.axes[0].get_xlabel() == "Weight"
    assert (tmp_path / "b.png").stat().st_size > 0
    assert "TWFE" in a.summary()
