"""DGP objects: design, effects and truth checked against explicit references
(pandas group-bys, dense-dummy least squares), knobs checked against their
definitions with tolerances derived from the sample sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import staggerlab as sl
from staggerlab.inference.studies.plim import twfe_plim
from staggerlab.panels.dgp import DGP, PRESETS, DGPError, Truth, dgp

EXACT = 1e-12  # identities computed two ways in float64
LSQ = 1e-9  # dense least squares vs the demeaned regression
Z = 4.0  # z-bound for checks of random knobs against their expectations


def dense_twfe(frame: pl.DataFrame, y: str, regressors: list[str]) -> float:
    """Coefficient on regressors[0] from explicit unit and time dummies (slow reference)."""
    pdf = frame.to_pandas()
    X = pd.get_dummies(pdf[["unit", "time"]].astype(str), drop_first=True).astype(float)
    X = pd.concat([pdf[regressors].astype(float), X], axis=1)
    X.insert(0, "const", 1.0)
    b = np.linalg.lstsq(X.to_numpy(), pdf[y].to_numpy(float), rcond=None)[0]
    return float(b[1])


def test_simulate_exports():
    d = sl.simulate.dgp("homogeneous")
    assert isinstance(d, sl.simulate.DGP)
    _, truth = d.draw(0)
    assert isinstance(truth, sl.simulate.Truth)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_design(preset):
    d = dgp(preset)
    frame, truth = d.draw(3)
    assert {"unit", "time", "cohort", "treat", "y", "tau", *d.covariates} <= set(frame.columns)
    # absorbing staggered treatment from the cohort
    expect = ((frame["cohort"] > 0) & (frame["time"] >= frame["cohort"])).cast(pl.Int64)
    assert frame["treat"].equals(expect.alias("treat"))
    # cohort sizes are the fixed counts of the design
    units = frame.group_by("unit").agg(pl.col("cohort").first())
    counts = dict(units.group_by("cohort").len().iter_rows())
    want = {g: n for g, n in d.cohort_counts().items() if n}
    assert counts == want
    assert np.isfinite(frame["y"].to_numpy()).all()
    # truth.att is the mean effect over treated rows
    tr = frame.filter(pl.col("treat") == 1)["tau"].to_numpy()
    assert truth.att == pytest.approx(tr.mean(), abs=EXACT)


def test_draw_reproducible_and_seed_dependent():
    d = dgp("heterogeneous_dynamic", effect_sd=0.3, drop_share=0.1)
    a, _ = d.draw(5)
    b, _ = d.draw(5)
    c, _ = d.draw(6)
    assert a.equals(b)
    assert not a.equals(c)
    ss = np.random.SeedSequence(9)
    assert d.draw(ss)[0].equals(d.draw(np.random.SeedSequence(9))[0])


def test_cell_effects_match_definition():
    d = dgp(None, n_units=60, n_periods=9, cohorts=(3, 5, 7), cohort_shares=(1, 2, 1), never_share=0.25,
            effect=0.7, cohort_slope=-0.2, cohort_effects=(0.1, 0.0, -0.3), dynamic=0.4, dynamic_cap=2,
            anticipation=1, anticipation_effect=0.05)
    frame, _ = d.draw(1)
    g = frame["cohort"].to_numpy()
    t = frame["time"].to_numpy()
    extra = {3: 0.1, 5: 0.0, 7: -0.3}
    want = np.zeros(frame.height)
    for i in range(frame.height):
        if g[i] == 0:
            continue
        e = t[i] - g[i]
        if e >= 0:
            want[i] = 0.7 - 0.2 * (g[i] - 3) + extra[g[i]] + 0.4 * min(e, 2)
        elif e == -1:
            want[i] = 0.05
    np.testing.assert_allclose(frame["tau"].to_numpy(), want, atol=EXACT)
    assert d.cohort_counts() == {0: 15, 3: 11, 5: 23, 7: 11}


def test_truth_tables_against_pandas():
    d = dgp("heterogeneous_dynamic", n_units=150, effect_sd=0.5, drop_share=0.15, entry_share=0.3)
    frame, truth = d.draw(2)
    pdf = frame.to_pandas()
    tr = pdf[pdf.cohort > 0].assign(rel=lambda x: x.time - x.cohort)
    gt = tr.groupby(["cohort", "time"]).tau.agg(["mean", "size"]).reset_index()
    got = truth.att_gt.to_pandas()
    np.testing.assert_allclose(got["att"], gt["mean"], atol=EXACT)
    np.testing.assert_array_equal(got["n"], gt["size"])
    np.testing.assert_array_equal(got["rel_time"], gt["time"] - gt["cohort"])
    ev = tr.groupby("rel").tau.mean()
    np.testing.assert_allclose(truth.event_time["att"].to_numpy(), ev.to_numpy(), atol=EXACT)
    assert truth.dynamic == pytest.approx(ev[ev.index >= 0].mean(), abs=EXACT)
    # group: cohort-size-weighted mean of each cohort's average post-period cell
    post = gt[gt.time >= gt.cohort].groupby("cohort")["mean"].mean()
    sizes = tr.groupby("cohort").unit.nunique()
    assert truth.group == pytest.approx(float((post * sizes).sum() / sizes.sum()), abs=EXACT)
    assert truth.target("simple") == truth.att == truth.estimands["simple"]
    with pytest.raises(DGPError):
        truth.target("nope")


@pytest.mark.parametrize(
    "preset,knobs",
    [
        ("heterogeneous_dynamic", {"n_units": 120}),
        ("homogeneous", {"n_units": 120, "drop_share": 0.2, "effect_sd": 0.4}),
        ("few_treated_clusters", {"n_covariates": 2, "x_confound": 1.0, "n_units": 200, "n_clusters": 20}),
    ],
)
def test_twfe_plim_against_dense_regression(preset, knobs):
    d = dgp(preset, **knobs)
    frame, truth = d.draw(4)
    ref = dense_twfe(frame, "tau", ["treat", *d.covariates])
    assert twfe_plim(truth) == pytest.approx(ref, abs=LSQ)


def test_heterogeneous_dynamic_plim_is_far_from_att():
    """The preset is the textbook failure: the TWFE plim is a small fraction of the ATT."""
    _, truth = dgp("heterogeneous_dynamic").draw(0)
    assert truth.att > 2.0
    assert abs(twfe_plim(truth) - truth.att) > 0.5 * truth.att


def test_homogeneous_plim_equals_effect():
    """With a constant effect every implicit-weight average is that effect."""
    _, truth = dgp("homogeneous", drop_share=0.2).draw(1)
    assert twfe_plim(truth) == pytest.approx(1.0, abs=LSQ)
    assert truth.att == pytest.approx(1.0, abs=EXACT)


def test_ar1_errors():
    """Within-unit lag-1 correlation of the errors equals ``ar1`` (z-bound from n pairs)."""
    rho = 0.6
    d = dgp(None, n_units=2000, n_periods=10, unit_sd=0.0, time_sd=0.0, effect=0.0, ar1=rho, noise_sd=2.0)
    frame, _ = d.draw(0)
    u = frame["y"].to_numpy().reshape(2000, 10)
    assert u.std() == pytest.approx(2.0, rel=Z / np.sqrt(u.size) * 2)
    r = np.corrcoef(u[:, 1:].ravel(), u[:, :-1].ravel())[0, 1]
    assert abs(r - rho) < Z * (1 - rho**2) / np.sqrt(2000 * 9) * 3  # inflated for serial dependence


def test_cluster_shocks_and_assignment():
    d = dgp("few_treated_clusters", noise_sd=1.0, cluster_sd=1.0, unit_sd=0.0, time_sd=0.0, effect=0.0)
    frame, _ = d.draw(0)
    # treatment is constant within cluster
    per = frame.group_by("cluster").agg(pl.col("cohort").n_unique().alias("k"))
    assert per["k"].max() == 1
    assert frame.filter(pl.col("cohort") > 0)["cluster"].n_unique() == 6
    # share of variance from cluster-period shocks ~ 1/2
    pdf = frame.to_pandas()
    cm = pdf.groupby(["cluster", "time"]).y.transform("mean")
    within = ((pdf.y - cm) ** 2).mean() * 20 / 19
    assert within == pytest.approx(1.0, rel=0.1)
    assert pdf.y.var() == pytest.approx(2.0, rel=0.15)


def test_unbalanced_entry_and_drops():
    d = dgp("paper_panel")
    frame, _ = d.draw(1)
    T = d.n_periods
    assert frame.height < d.n_units * T
    # every eventually treated unit is observed at least 2 periods before adoption
    first = frame.group_by("unit").agg(pl.col("time").min().alias("t0"), pl.col("cohort").first())
    tr = first.filter(pl.col("cohort") > 0)
    assert (tr["cohort"] - tr["t0"]).min() >= 2
    # random drops remove about drop_share of rows (binomial z-bound)
    d2 = dgp("homogeneous", drop_share=0.25)
    f2, _ = d2.draw(0)
    n = d2.n_units * d2.n_periods
    assert abs((n - f2.height) / n - 0.25) < Z * np.sqrt(0.25 * 0.75 / n)


def test_paper_panel_calibration():
    """Shape and Table 3 moments of the reference study (docs/study.md) (loose: a synthetic calibration, one draw)."""
    frame, truth = dgp("paper_panel").draw(0)
    assert 14_500 < frame.height < 16_500  # 15,511 firm-years in the study
    assert frame["time"].min() == 2011 and frame["time"].max() == 2022
    assert 0.028 < frame["treat"].mean() < 0.040  # mean(IM) = 0.033
    assert frame["y"].mean() == pytest.approx(0.339, abs=0.03)
    assert frame["y"].std() == pytest.approx(0.329, rel=0.15)
    assert frame["x1"].mean() == pytest.approx(21.934, abs=0.05)  # Size
    assert frame["x1"].std() == pytest.approx(1.138, rel=0.1)
    assert truth.att == pytest.approx(0.093, abs=EXACT)
    assert frame.filter(pl.col("cohort") > 0)["unit"].n_unique() == 84


def test_x_confound_trend():
    """x1 of eventually treated units trends by x_confound over the panel (conditional PT)."""
    d = dgp("homogeneous", n_units=2000, n_covariates=1, x_confound=2.0, x_between=0.5)
    frame, _ = d.draw(0)
    pdf = frame.to_pandas()
    pdf["ev"] = pdf.cohort > 0
    m = pdf.groupby(["ev", "time"]).x1.mean().unstack(0)
    gap = m[True] - m[False]
    slope = np.polyfit(np.arange(d.n_periods), gap.to_numpy(), 1)[0]
    assert slope == pytest.approx(2.0 / (d.n_periods - 1), rel=0.15)


@given(
    n_units=st.integers(8, 40),
    n_periods=st.integers(4, 9),
    never=st.floats(0.0, 0.8),
    drop=st.sampled_from([0.0, 0.2]),
    seed=st.integers(0, 2**31),
)
def test_property_truth_consistency(n_units, n_periods, never, drop, seed):
    d = dgp(None, n_units=n_units, n_periods=n_periods, never_share=never, drop_share=drop,
            dynamic=0.3, cohort_slope=0.1, effect_sd=0.2)
    frame, truth = d.draw(seed)
    # cell means weighted by their counts reproduce the overall ATT
    post = truth.att_gt.filter(pl.col("rel_time") >= 0)
    if post.height:
        w = post["n"].to_numpy()
        assert np.sum(w * post["att"].to_numpy()) / w.sum() == pytest.approx(truth.att, abs=1e-10)
    assert sum(d.cohort_counts().values()) == n_units


def test_invalid_knobs():
    with pytest.raises(DGPError, match="unknown DGP preset"):
        dgp("nope")
    with pytest.raises(DGPError, match="unknown DGP knob"):
        dgp("homogeneous", n_unit=3)
    with pytest.raises(DGPError, match="pre-period"):
        dgp(None, cohorts=(1, 3))
    with pytest.raises(DGPError, match="ar1"):
        dgp(None, ar1=1.0)
    with pytest.raises(DGPError, match="cohort_shares"):
        dgp(None, cohorts=(3, 5), cohort_shares=(1, 2, 3))
    with pytest.raises(ValueError):
        DGP(never_share=1.0)


def test_replace_and_truth_repr():
    d = dgp("homogeneous").replace(n_units=50)
    assert d.n_units == 50 and d.name == "homogeneous"
    _, truth = d.draw(0)
    assert "att=" in repr(truth)
    assert isinstance(Truth.from_frame(d.draw(0)[0]), Truth)
