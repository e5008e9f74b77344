"""Callaway-Sant'Anna on unbalanced panels (R did's ``allow_unbalanced_panel=TRUE``):
against csdid's unbalanced path and against a by-hand repeated-cross-section 2x2."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import ArgumentTypeError, MissingValueWarning
from staggerlab.inference.did.cs import CSTuning, callaway_santanna, cs
from staggerlab.inference.did.cs_cells import att_gt, to_wide
from staggerlab.inference.did.cs_influence import IFMap
from staggerlab.inference.did.staggered_data import prepare

DATA = Path(__file__).parent / "data"
CSDID_TOL = 1e-6  # the peer's bar in test_cs.py; the agreement observed is ~1e-15
HAND_TOL = 1e-12  # the same sums in another order
DROP_SHARE, DROP_SEED = 0.10, 0


@pytest.fixture(scope="module")
def mpdta_unbalanced() -> pl.DataFrame:
    """mpdta with 10% of its rows dropped at random (fixed seed): 2,229 rows, 500 counties."""
    df = pl.read_csv(DATA / "mpdta.csv")
    keep = np.random.default_rng(DROP_SEED).random(df.height) >= DROP_SHARE
    out = df.filter(pl.Series(keep))
    assert out.height < df.height and out["countyreal"].n_unique() == 500
    return out


def _cs(df, **kw):
    return cs(df, y="lemp", unit="countyreal", time="year", cohort="first.treat", **kw)


def _csdid(df: pl.DataFrame, control: str, base: str, **kw):
    att_gt_mod = pytest.importorskip("csdid.att_gt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = att_gt_mod.ATTgt(yname="lemp", gname="first.treat", idname="countyreal", tname="year",
                             data=df.to_pandas(), allow_unbalanced_panel=True,
                             control_group="nevertreated" if control == "never" else "notyettreated", **kw)
        return a.fit(est_method="reg", base_period=base, bstrap=False)


def _aggte(ref, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ref.aggte(typec=kind, bstrap=False).atte


# --------------------------------------------------------------------------- csdid (R did's unbalanced path)
@pytest.mark.parametrize("control", ["never", "notyet"])
@pytest.mark.parametrize("base", ["varying", "universal"])
def test_matches_csdid_unbalanced(mpdta_unbalanced, control, base):
    ref = _csdid(mpdta_unbalanced, control, base)
    res = _cs(mpdta_unbalanced, control=control, base_period=base, allow_unbalanced_panel=True)
    assert res.unbalanced and res.n_units == 500 and res.nobs == mpdta_unbalanced.height
    tab = res.att_gt()
    np.testing.assert_array_equal(tab["cohort"].to_numpy(), np.asarray(ref.results["group"], dtype=int))
    np.testing.assert_array_equal(tab["time"].to_numpy(), np.asarray(ref.results["year"], dtype=int))
    np.testing.assert_allclose(tab["estimate"].to_numpy(), ref.results["att"], rtol=0, atol=CSDID_TOL)
    se_ref = np.asarray(ref.results["se"], dtype=float)
    live = np.isfinite(se_ref) & (se_ref > 1e-8)  # the universal reference cells have no variance
    np.testing.assert_allclose(tab["se"].to_numpy()[live], se_ref[live], rtol=0, atol=CSDID_TOL)
    for kind in ("simple", "dynamic", "group", "calendar"):
        agg_ref = _aggte(ref, kind)
        agg = res.aggregate(kind)
        assert agg.estimate == pytest.approx(agg_ref["overall_att"], abs=CSDID_TOL), kind
        assert agg.se == pytest.approx(agg_ref["overall_se"], abs=CSDID_TOL), kind
        if kind != "simple":
            np.testing.assert_allclose(agg.estimates, agg_ref["att_egt"], rtol=0, atol=CSDID_TOL, err_msg=kind)
            se_e = np.asarray(agg_ref["se_egt"], dtype=float)
            ok = np.isfinite(se_e)
            np.testing.assert_allclose(agg.ses[ok], se_e[ok], rtol=0, atol=CSDID_TOL, err_msg=kind)


def test_weighted_matches_csdid_unbalanced(mpdta_unbalanced):
    df = mpdta_unbalanced.with_columns(pl.col("lpop").exp().alias("w"))  # constant within county
    ref = _csdid(df, "never", "varying", weights_name="w")
    res = _cs(df, weights="w", allow_unbalanced_panel=True)
    np.testing.assert_allclose(res.att_gt()["estimate"].to_numpy(), ref.results["att"], rtol=0, atol=CSDID_TOL)
    np.testing.assert_allclose(res.att_gt()["se"].to_numpy(), np.asarray(ref.results["se"], float), rtol=0,
                               atol=CSDID_TOL)
    simple_ref = _aggte(ref, "simple")
    assert res.aggregate("simple").estimate == pytest.approx(simple_ref["overall_att"], abs=CSDID_TOL)
    assert res.aggregate("simple").se == pytest.approx(simple_ref["overall_se"], abs=CSDID_TOL)


# --------------------------------------------------------------------------- by hand
def _hand_cell(df: pl.DataFrame, g: int, t: int, b: int, weights: str | None = None,
               cluster: str | None = None) -> tuple[float, float]:
    """One ATT(g,t) with never-treated controls from the rows of the two
    periods (four weighted means), and its SE from the unit-level influence
    function: each row adds +-n w (y - mean) / (group-period weight), summed by
    unit, then by cluster; se = sqrt(sum of squares) / n, n = all units."""
    d = df.with_columns((pl.col(weights) if weights else pl.lit(1.0)).alias("_w"))
    n = d["countyreal"].n_unique()
    att, parts = 0.0, []
    for grp, s_grp in ((pl.col("first.treat") == g, 1.0), (pl.col("first.treat") == 0, -1.0)):
        for per, s_per in ((t, 1.0), (b, -1.0)):
            cell = d.filter(grp & (pl.col("year") == per))
            w, y = cell["_w"].to_numpy(), cell["lemp"].to_numpy()
            mean = float(w @ y / w.sum())
            att += s_grp * s_per * mean
            parts.append(cell.select("countyreal", *([cluster] if cluster else []))
                         .with_columns(pl.Series("inf", s_grp * s_per * n * w * (y - mean) / w.sum())))
    inf = pl.concat(parts).group_by(cluster or "countyreal").agg(pl.col("inf").sum())["inf"].to_numpy()
    return att, float(np.sqrt((inf**2).sum()) / n)


@pytest.mark.parametrize("weights,cluster", [(None, None), ("w", "state")])
def test_cells_equal_hand_computed_two_by_two(mpdta_unbalanced, weights, cluster):
    df = mpdta_unbalanced.with_columns(pl.col("lpop").exp().alias("w"),
                                       (pl.col("countyreal") % 17).alias("state"))
    # influence functions in ragged chunks of 37 units: the chunking must not matter
    res = _cs(df, weights=weights, cluster=cluster, allow_unbalanced_panel=True, tuning=CSTuning(if_chunk=37))
    tab = {(g, t): (e, s) for g, t, e, s in res.att_gt().iter_rows()}
    for g, t, b in ((2004, 2004, 2003), (2004, 2007, 2003), (2006, 2005, 2004), (2007, 2007, 2006)):
        att, se = _hand_cell(df, g, t, b, weights, cluster)
        assert tab[(g, t)][0] == pytest.approx(att, abs=HAND_TOL), (g, t)
        assert tab[(g, t)][1] == pytest.approx(se, rel=HAND_TOL), (g, t)


def test_unit_seen_in_one_period_only_enters_that_period(mpdta_unbalanced):
    """A unit observed in t but not in the base period still enters the t mean
    (as in did's repeated-cross-section path), unlike a units-in-both-periods 2x2."""
    df = pl.read_csv(DATA / "mpdta.csv")
    df = df.filter(~((pl.col("countyreal") % 3 == 0) & (pl.col("year") == 2003)))
    assert df.height < 2500
    res = _cs(df, allow_unbalanced_panel=True)
    est = res.att_gt().filter((pl.col("cohort") == 2004) & (pl.col("time") == 2004))["estimate"].item()
    assert est == pytest.approx(_hand_cell(df, 2004, 2004, 2003)[0], abs=HAND_TOL)
    both = df.filter(pl.col("year").is_in([2003, 2004])).filter(pl.len().over("countyreal") == 2)
    assert abs(est - _hand_cell(both, 2004, 2004, 2003)[0]) > 1e-4


# --------------------------------------------------------------------------- balanced data, either path
def test_balanced_panel_same_numbers_either_setting():
    df = pl.read_csv(DATA / "mpdta.csv")
    a, b = _cs(df), _cs(df, allow_unbalanced_panel=True)
    assert not b.unbalanced and a.n_units == b.n_units == 500
    assert a.att_gt().equals(b.att_gt())
    for kind in ("simple", "dynamic", "group", "calendar"):
        assert (a.aggregate(kind).estimate, a.aggregate(kind).se) == (b.aggregate(kind).estimate,
                                                                     b.aggregate(kind).se)


@pytest.mark.parametrize("control,base", [("never", "varying"), ("notyet", "universal")])
def test_repeated_cross_section_formulas_reduce_to_panel_ones_on_a_balanced_panel(control, base):
    """The unbalanced-path cells and influence functions, forced on a balanced
    panel, equal the panel ones: the same estimator on complete data."""
    df = sl.simulate.staggered(120, 7, start=1, cohorts=[3, 5, 6], seed=3, dynamic=0.3)
    df = df.with_columns((1.0 + pl.col("unit") % 4).alias("wt"))
    sd = prepare(df, y="y", unit="unit", time="time", cohort="cohort", weights="wt", rows=False)
    panel = to_wide(sd, 0)
    rc = to_wide(sd, 0)
    rc.unbalanced = True
    c_panel, c_rc = att_gt(panel, control, 0, base), att_gt(rc, control, 0, base)
    assert c_panel.mu1b is None and c_rc.mu1b is not None
    np.testing.assert_allclose(c_rc.att, c_panel.att, rtol=0, atol=1e-12)
    k = c_panel.att.size
    eye, no_a = np.eye(k), np.zeros((k, c_panel.cohorts.size))
    np.testing.assert_allclose(IFMap(c_rc, rc, eye, no_a, 50).matrix(), IFMap(c_panel, panel, eye, no_a, 50).matrix(),
                               rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- options and reporting
def test_default_balances_and_says_how_to_keep_units(mpdta_unbalanced):
    with pytest.warns(MissingValueWarning, match=r"dropped 216 of 500 unit\(s\).*allow_unbalanced_panel=True"):
        res = _cs(mpdta_unbalanced)
    assert not res.unbalanced and (res.n_units, res.nobs) == (284, 284 * 5)
    assert "units: 284   rows: 1420" in res.summary()
    with pytest.raises(ArgumentTypeError, match="allow_unbalanced_panel"):
        _cs(mpdta_unbalanced, allow_unbalanced_panel="yes")


def test_cell_without_rows_in_a_period_is_skipped_with_a_warning(mpdta_unbalanced):
    # no unit of cohort 2006 observed in 2005: its cells using 2005 cannot be computed (did: NA)
    df = mpdta_unbalanced.filter(~((pl.col("first.treat") == 2006) & (pl.col("year") == 2005)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = _cs(df, allow_unbalanced_panel=True)
    assert [str(w.message) for w in caught] == [
        f"ATT(2006,{t}) has no treated unit observed in 2005; skipped" for t in (2005, 2006, 2007)]
    cells = set(res.att_gt().select("cohort", "time").iter_rows())
    assert (2006, 2005) not in cells and (2006, 2006) not in cells and (2006, 2007) not in cells
    assert (2006, 2004) in cells


def test_unbalanced_bootstrap_close_to_analytic(mpdta_unbalanced):
    sd = prepare(mpdta_unbalanced, y="lemp", unit="countyreal", time="year", cohort="first.treat", rows=False)
    ana = callaway_santanna(sd, allow_unbalanced_panel=True)
    boot = callaway_santanna(sd, allow_unbalanced_panel=True, bootstrap=True, biters=999, seed=3)
    np.testing.assert_allclose(boot.se, ana.se, rtol=5 * 1.166 / np.sqrt(999))
    np.testing.assert_array_equal(boot.coef, ana.coef)


# --------------------------------------------------------------------------- adoption dated by the treatment
@pytest.mark.parametrize("rows", [True, False])
@pytest.mark.parametrize("shuffle", [False, True])
def test_missing_outcome_in_the_adoption_period_does_not_move_the_cohort(rows, shuffle):
    """A unit's adoption period comes from its treatment column, also in the rows
    whose outcome is missing (those rows are then dropped from the estimation)."""
    df = sl.simulate.staggered(60, 6, start=1, cohorts=[3, 5], seed=1)
    adopters = df.filter((pl.col("time") == pl.col("cohort")) & (pl.col("unit") != 7))["unit"].head(4).to_list()
    hole = pl.col("unit").is_in(adopters) & (pl.col("time") == pl.col("cohort"))
    holes = df.with_columns(pl.when(hole).then(None).otherwise(pl.col("y")).alias("y"))
    holes = holes.with_columns(pl.when(pl.col("unit") == 7).then(None).otherwise(pl.col("y")).alias("y"))
    if shuffle:
        holes = holes.sample(fraction=1.0, shuffle=True, seed=2)
    with pytest.warns(MissingValueWarning, match="dropped 10 of 360"):
        sd = prepare(holes, y="y", unit="unit", time="time", treat="treat", rows=rows)
    truth = df.filter(pl.col("unit") != 7).group_by("unit").agg(pl.col("cohort").first()).sort("unit")
    if rows:
        got = sd.frame.group_by("unit", maintain_order=True).agg(pl.col("_cohort").first())["_cohort"]
    else:
        got = pl.Series(sd.unit_cohort)
    assert got.to_list() == truth["cohort"].to_list()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cs(holes, y="y", unit="unit", time="time", treat="treat", allow_unbalanced_panel=True)
        b = cs(holes, y="y", unit="unit", time="time", cohort="cohort", allow_unbalanced_panel=True)
    assert a.att_gt().equals(b.att_gt())
