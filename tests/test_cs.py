"""Callaway-Sant'Anna: against the R ``did`` package's published mpdta numbers and csdid."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.inference.did.cs import callaway_santanna, cs
from staggerlab.inference.did.staggered_data import prepare

DATA = Path(__file__).parent / "data"
R_TOL = 1e-4  # published values are rounded to 4 decimals
CSDID_TOL = 1e-6  # the brief's bar; the agreement observed is ~1e-16
EXACT_TOL = 1e-12  # same arithmetic, different code path



def _csdid_att_gt():
    """csdid, imported by the tests that compare with it (the published R values need no peer)."""
    return pytest.importorskip("csdid.att_gt")


@pytest.fixture(scope="module")
def mpdta() -> pl.DataFrame:
    return pl.read_csv(DATA / "mpdta.csv")


def _cs(frame, **kw):
    return cs(frame, y="lemp", unit="countyreal", time="year", cohort="first.treat", **kw)


# --------------------------------------------------------------------------- R did (published)
# README.md of github.com/bcallaway11/did at commit 71ba8a5 (release 2.5.1), section
# "att_gt" -> summary(out) for att_gt(yname="lemp", gname="first.treat", idname="countyreal",
# tname="year", xformla=~1, data=mpdta, est_method="reg") (never-treated controls). Its
# standard errors are bootstrap ones (bstrap=TRUE default), so only the points are compared
# here; the analytic SEs are compared with csdid below.
R_ATT_GT = {
    (2004, 2004): -0.0105, (2004, 2005): -0.0704, (2004, 2006): -0.1373, (2004, 2007): -0.1008,
    (2006, 2004): 0.0065, (2006, 2005): -0.0028, (2006, 2006): -0.0046, (2006, 2007): -0.0412,
    (2007, 2004): 0.0305, (2007, 2005): -0.0027, (2007, 2006): -0.0311, (2007, 2007): -0.0261,
}
# same README, summary(aggte(out, type = "dynamic")): overall -0.0772, event times -3..3
R_DYNAMIC = {-3: 0.0305, -2: -0.0006, -1: -0.0245, 0: -0.0199, 1: -0.0510, 2: -0.1373, 3: -0.1008}
R_DYNAMIC_OVERALL = -0.0772
# same README, summary(aggte(out, type = "group")): overall -0.031 (printed -0.031 = -0.0310)
R_GROUP = {2004: -0.0797, 2006: -0.0229, 2007: -0.0261}
R_GROUP_OVERALL = -0.0310


def test_att_gt_matches_r_published(mpdta):
    res = _cs(mpdta)
    tab = res.att_gt()
    assert tab.columns == ["cohort", "time", "estimate", "se"]
    got = {(g, t): e for g, t, e in tab.select("cohort", "time", "estimate").iter_rows()}
    assert set(got) == set(R_ATT_GT)
    for key, val in R_ATT_GT.items():
        assert abs(got[key] - val) <= R_TOL, key


def test_dynamic_and_group_match_r_published(mpdta):
    res = _cs(mpdta)
    dyn = res.aggregate("dynamic")
    assert dict(zip(dyn.labels.tolist(), dyn.estimates)) == pytest.approx(R_DYNAMIC, abs=R_TOL)
    assert dyn.estimate == pytest.approx(R_DYNAMIC_OVERALL, abs=R_TOL)
    grp = res.aggregate("group")
    assert dict(zip(grp.labels.tolist(), grp.estimates)) == pytest.approx(R_GROUP, abs=R_TOL)
    assert grp.estimate == pytest.approx(R_GROUP_OVERALL, abs=R_TOL)
    # the event-study contract is the dynamic aggregation
    np.testing.assert_array_equal(res.rel_time, np.arange(-3, 4))
    np.testing.assert_allclose(res.coef, dyn.estimates, rtol=0, atol=0)


# --------------------------------------------------------------------------- csdid oracle
def _csdid(df: pd.DataFrame, control: str, base: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = _csdid_att_gt().ATTgt(yname="lemp", gname="first.treat", idname="countyreal", tname="year", data=df,
                               control_group="nevertreated" if control == "never" else "notyettreated", **kw)
        return a.fit(est_method="reg", base_period=base, bstrap=False)


@pytest.mark.parametrize("control", ["never", "notyet"])
@pytest.mark.parametrize("base", ["varying", "universal"])
def test_matches_csdid_including_analytic_se(mpdta, control, base):
    ref = _csdid(mpdta.to_pandas(), control, base)
    res = _cs(mpdta, control=control, base_period=base)
    tab = res.att_gt()
    np.testing.assert_array_equal(tab["cohort"].to_numpy(), np.asarray(ref.results["group"], dtype=int))
    np.testing.assert_array_equal(tab["time"].to_numpy(), np.asarray(ref.results["year"], dtype=int))
    np.testing.assert_allclose(tab["estimate"].to_numpy(), ref.results["att"], rtol=0, atol=CSDID_TOL)
    se_ref = np.asarray(ref.results["se"], dtype=float)
    se = tab["se"].to_numpy()
    live = np.isfinite(se_ref) & (se_ref > 1e-8)  # the universal reference cells have no variance
    np.testing.assert_allclose(se[live], se_ref[live], rtol=0, atol=CSDID_TOL)
    for kind in ("simple", "dynamic", "group", "calendar"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agg_ref = ref.aggte(typec=kind, bstrap=False).atte
        agg = res.aggregate(kind)
        assert agg.estimate == pytest.approx(agg_ref["overall_att"], abs=CSDID_TOL), kind
        assert agg.se == pytest.approx(agg_ref["overall_se"], abs=CSDID_TOL), kind
        if kind != "simple":
            np.testing.assert_allclose(agg.estimates, agg_ref["att_egt"], rtol=0, atol=CSDID_TOL)
            se_e = np.asarray(agg_ref["se_egt"], dtype=float)
            ok = np.isfinite(se_e)
            np.testing.assert_allclose(agg.ses[ok], se_e[ok], rtol=0, atol=CSDID_TOL)


def test_weighted_matches_csdid(mpdta):
    # population weights (exp(lpop) is constant within county), analytic SEs
    df = mpdta.with_columns(pl.col("lpop").exp().alias("w"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = _csdid_att_gt().ATTgt(yname="lemp", gname="first.treat", idname="countyreal", tname="year",
                               data=df.to_pandas(), control_group="nevertreated", weights_name="w")
        ref = a.fit(est_method="reg", base_period="varying", bstrap=False)
        simple_ref = ref.aggte(typec="simple", bstrap=False).atte
    res = _cs(df, weights="w")
    np.testing.assert_allclose(res.att_gt()["estimate"].to_numpy(), ref.results["att"], rtol=0, atol=CSDID_TOL)
    np.testing.assert_allclose(res.att_gt()["se"].to_numpy(), np.asarray(ref.results["se"], float), rtol=0,
                               atol=CSDID_TOL)
    assert res.aggregate("simple").estimate == pytest.approx(simple_ref["overall_att"], abs=CSDID_TOL)
    assert res.aggregate("simple").se == pytest.approx(simple_ref["overall_se"], abs=CSDID_TOL)


def test_vcov_and_pretrend_wald_from_csdid_influence_functions(mpdta):
    # independent: csdid's dynamic influence functions give the event-time covariance
    ref = _csdid(mpdta.to_pandas(), "never", "varying")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg = ref.aggte(typec="dynamic", bstrap=False).atte
    inf = np.asarray(agg["inf_function"]["dynamic_inf_func_e"], dtype=float)
    n = inf.shape[0]
    V_ref = inf.T @ inf / n**2
    res = _cs(mpdta)
    np.testing.assert_allclose(res.vcov, V_ref, rtol=0, atol=1e-12)
    pre = np.asarray(agg["egt"]) < 0
    b = np.asarray(agg["att_egt"])[pre]
    stat_ref = float(b @ np.linalg.solve(V_ref[np.ix_(pre, pre)], b))
    wt = res.pretrend_test()
    assert wt["stat"] == pytest.approx(stat_ref, rel=1e-10)
    assert wt["df"] == 3
    assert 0 < wt["pvalue"] < 1


# --------------------------------------------------------------------------- slow reference (simulated)
def _slow_att(df: pl.DataFrame, g: int, t: int, base: int, control: str) -> float:
    wide = df.pivot(on="time", index=["unit", "cohort"], values="y")
    dy = wide[str(t)] - wide[str(base)]
    coh = wide["cohort"]
    treated = coh == g
    if control == "never":
        ctrl = coh == 0
    else:
        ctrl = (coh == 0) | ((coh > max(t, base)) & (coh != g))
    return float(dy.filter(treated).mean() - dy.filter(ctrl).mean())


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_att_gt_equals_explicit_two_by_two_means(control):
    df = sl.simulate.staggered(120, 7, start=1, cohorts=[3, 5, 6], seed=3, dynamic=0.3)
    res = cs(df, y="y", unit="unit", time="time", cohort="cohort", control=control, base_period="universal")
    for g, t, est in res.att_gt().select("cohort", "time", "estimate").iter_rows():
        assert est == pytest.approx(_slow_att(df, g, t, g - 1, control), abs=EXACT_TOL)


def test_treat_column_gives_same_result_as_cohort():
    df = sl.simulate.staggered(80, 6, start=1, cohorts=[3, 5], seed=5)
    a = cs(df, y="y", unit="unit", time="time", cohort="cohort")
    b = cs(df, y="y", unit="unit", time="time", treat="treat")
    assert a.att_gt().equals(b.att_gt())


# --------------------------------------------------------------------------- bootstrap
BOOT_B = 999
# relative sd of the IQR-based scale estimate of a normal sample is about 1.166 / sqrt(B)
BOOT_SE_RTOL = 5 * 1.166 / np.sqrt(BOOT_B)


def test_bootstrap_se_close_to_analytic_and_band_is_wider(mpdta):
    sd = prepare(mpdta, y="lemp", unit="countyreal", time="year", cohort="first.treat")
    ana = callaway_santanna(sd)
    boot = callaway_santanna(sd, bootstrap=True, biters=BOOT_B, seed=11)
    np.testing.assert_allclose(boot.se, ana.se, rtol=BOOT_SE_RTOL)
    assert boot.crit >= 1.959963984540054
    tab = boot.tidy()
    assert np.all(tab["ci_high"].to_numpy() - tab["ci_low"].to_numpy() >= 2 * 1.959 * boot.se)


def test_bootstrap_bit_identical_for_any_n_jobs(mpdta):
    sd = prepare(mpdta, y="lemp", unit="countyreal", time="year", cohort="first.treat")
    a = callaway_santanna(sd, bootstrap=True, biters=300, seed=7, n_jobs=1)
    b = callaway_santanna(sd, bootstrap=True, biters=300, seed=7, n_jobs=2)
    np.testing.assert_array_equal(a.se, b.se)
    assert a.crit == b.crit
    np.testing.assert_array_equal(a.att_gt()["se"].to_numpy(), b.att_gt()["se"].to_numpy())
    c = callaway_santanna(sd, bootstrap=True, biters=300, seed=8, n_jobs=1, multipliers="mammen")
    assert not np.array_equal(a.se, c.se)


# --------------------------------------------------------------------------- API
def test_result_api(mpdta, tmp_path):
    res = _cs(mpdta, window=(-2, 2))
    np.testing.assert_array_equal(res.rel_time, [-2, -1, 0, 1, 2])
    assert res.method == "cs" and res.ref == -1
    assert res.vcov.shape == (5, 5)
    tab = res.tidy()
    assert tab.columns == ["rel_time", "estimate", "se", "ci_low", "ci_high"]
    for kind, col in (("dynamic", "rel_time"), ("group", "cohort"), ("calendar", "time")):
        t = res.aggregate(kind).tidy()
        assert col in t.columns and t["term"][-1] == "overall"
    assert res.aggregate("simple").tidy().height == 1
    assert "Callaway" in res.summary()
    fig = res.plot(tmp_path / "es.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert (tmp_path / "es.png").exists()


def test_bad_options_raise(mpdta):
    with pytest.raises(ValueError, match="control"):
        _cs(mpdta, control="sometimes")
    with pytest.raises(ValueError, match="base_period"):
        _cs(mpdta, base_period="fixed")


# --------------------------------------------------------------------------- memory-lean paths
def _all_outputs(res):
    out = {"att_gt": res.att_gt(), "vcov": res.vcov, "se": res.se, "crit": res.crit}
    for kind in ("simple", "dynamic", "group", "calendar"):
        a = res.aggregate(kind)
        out[kind] = (a.estimate, a.se, a.estimates, a.ses, a.crit, a.vcov)
    return out


def _assert_same(a, b, tol):
    assert a["att_gt"].select("cohort", "time").equals(b["att_gt"].select("cohort", "time"))
    for col in ("estimate", "se"):
        np.testing.assert_allclose(a["att_gt"][col].to_numpy(), b["att_gt"][col].to_numpy(), rtol=tol, atol=tol)
    for key in a:
        if key != "att_gt":
            for x, y in zip(np.atleast_1d(a[key]) if key in ("vcov", "se", "crit") else a[key],
                            np.atleast_1d(b[key]) if key in ("vcov", "se", "crit") else b[key]):
                np.testing.assert_allclose(x, y, rtol=tol, atol=tol, err_msg=key)


@pytest.mark.parametrize("source", ["cohort", "treat", "treat-unsorted", "panel"])
@pytest.mark.parametrize("cluster,weights,boot", [(None, None, False), ("cl", "wt", False), ("cl", None, True)])
def test_unit_level_prepare_equals_row_level(source, cluster, weights, boot):
    """``prepare(rows=False)`` (no derived row columns; what ``cs`` uses) gives
    each unit the adoption period the row-level path derives, and the same
    estimates, SEs, bands and covariances."""
    df = sl.simulate.staggered(150, 7, start=1, cohorts=[3, 5, 6], seed=4, drop_share=0.04)
    df = df.with_columns((pl.col("unit") % 23).alias("cl"), (1.0 + pl.col("unit") % 4).alias("wt"))
    data = df
    if source == "treat-unsorted":
        data = df.sample(fraction=1.0, shuffle=True, seed=1)
    elif source == "panel":
        data = sl.Panel.from_frame(df, unit="unit", time="time")
    key = {"cohort": "cohort"} if source == "cohort" else {"treat": "treat"}
    kw = dict(y="y", unit="unit", time="time", cluster=cluster, weights=weights, **key)
    rows, units = prepare(data, **kw), prepare(data, **kw, rows=False)
    assert units.unit_cohort is not None and rows.unit_cohort is None
    assert "_cohort" not in units.frame.columns
    per_unit = rows.frame.group_by("unit", maintain_order=True).agg(pl.col("_cohort").first(), pl.len())
    np.testing.assert_array_equal(units.unit_cohort, per_unit["_cohort"].to_numpy())
    np.testing.assert_array_equal(units.unit_rows, per_unit["len"].to_numpy())
    opts = dict(control="notyet", bootstrap=boot, biters=199, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unbalanced units dropped, reported the same way twice
        a, b = callaway_santanna(units, **opts), callaway_santanna(rows, **opts)
    _assert_same(_all_outputs(a), _all_outputs(b), EXACT_TOL)


def test_unit_level_prepare_rejects_bad_designs():
    df = sl.simulate.staggered(40, 6, start=1, cohorts=[3, 5], seed=1)
    off = df.with_columns(
        pl.when((pl.col("unit") == df.filter(pl.col("cohort") > 0)["unit"][0]) & (pl.col("time") == 6))
        .then(0.0).otherwise(pl.col("treat")).alias("treat"))
    with pytest.raises(sl.errors.TreatmentError, match="switches off for 1 unit"):
        cs(off, y="y", unit="unit", time="time", treat="treat")
    varying = df.with_columns(pl.when(pl.col("time") == 2).then(pl.col("cohort") + 1).otherwise(pl.col("cohort"))
                              .alias("cohort"))
    with pytest.raises(sl.errors.TreatmentError, match="varies within a unit"):
        cs(varying, y="y", unit="unit", time="time", cohort="cohort")
    with pytest.raises(sl.errors.TreatmentError, match="must be 0/1"):
        cs(df.with_columns(pl.col("treat") * 2), y="y", unit="unit", time="time", treat="treat")
    with pytest.raises(sl.errors.TreatmentError, match="never varies"):
        cs(df.with_columns(pl.lit(0.0).alias("treat")), y="y", unit="unit", time="time", treat="treat")


@pytest.mark.parametrize("cluster", [None, "cl"])
def test_influence_functions_reproduce_ses_and_vcov(cluster):
    """The influence functions are recomputed from the outcomes (never stored);
    the SEs and covariances come from a streaming pass over units in chunks.
    Both must agree with the materialized matrices: ``se = sqrt(sum S^2) / n``
    and ``vcov = S'S / n^2`` for the cluster sums S, whatever the chunking."""
    from staggerlab.inference.did.cs import CSTuning

    df = sl.simulate.staggered(100, 6, start=1, cohorts=[3, 4, 6], seed=9)
    df = df.with_columns((pl.col("unit") % 13).alias("cl"))
    res = cs(df, y="y", unit="unit", time="time", cohort="cohort", cluster=cluster, control="notyet",
             tuning=CSTuning(if_chunk=7))  # many chunks, a ragged last one
    n = res.n_units
    codes = np.unique(df.group_by("unit", maintain_order=True).agg(pl.col("cl").first())["cl"].to_numpy(),
                      return_inverse=True)[1] if cluster else np.arange(n)

    def sums(inf):
        out = np.zeros((codes.max() + 1, inf.shape[1]))
        np.add.at(out, codes, inf)
        return out

    s = sums(res.inf_gt)
    assert res.inf_gt.shape == (n, res.att_gt().height)
    np.testing.assert_allclose(res.att_gt()["se"].to_numpy(), np.sqrt((s**2).sum(0)) / n, rtol=1e-12)
    for kind in ("simple", "dynamic", "group", "calendar"):
        agg = res.aggregate(kind)
        s = sums(agg.inf)
        np.testing.assert_allclose(agg.vcov, s.T @ s / n**2, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(agg.ses, np.sqrt(np.diag(s.T @ s)) / n, rtol=1e-12)
        s1 = sums(agg.inf_overall[:, None])
        assert agg.se == pytest.approx(np.sqrt((s1**2).sum()) / n, rel=1e-12)
    # the dynamic influence functions are the cells' ones combined with the aggregation weights,
    # plus the weights' own term, which is constant within a cohort and zero for never-treated units
    dyn = res.aggregate("dynamic")
    g = df.group_by("unit", maintain_order=True).agg(pl.col("cohort").first())["cohort"].to_numpy()
    never = g == 0
    cells = res.att_gt()
    e = (cells["time"] - cells["cohort"]).to_numpy()
    for j, lab in enumerate(dyn.labels):
        keep = e == lab
        pg = np.array([(g == c).mean() for c in cells["cohort"].to_numpy()[keep]])
        combo = res.inf_gt[:, keep] @ (pg / pg.sum())
        np.testing.assert_allclose(dyn.inf[never, j], combo[never], rtol=1e-12, atol=1e-12)
        for c in np.unique(g[~never]):
            diff = dyn.inf[g == c, j] - combo[g == c]
            np.testing.assert_allclose(diff, diff[0], rtol=1e-10, atol=1e-12)


def test_bootstrap_draws_in_pieces_are_the_same_draws(mpdta):
    """Multipliers are drawn a few rows at a time for big panels (a block of
    128 draws x 1M clusters would be 1 GB); the stream, hence every bootstrap
    number, is the same as drawing a block at once."""
    from staggerlab.inference.did.cs import CSTuning

    sd = prepare(mpdta, y="lemp", unit="countyreal", time="year", cohort="first.treat", rows=False)
    for mult in ("rademacher", "mammen"):
        whole = callaway_santanna(sd, bootstrap=True, biters=300, seed=4, multipliers=mult)
        tuning = CSTuning(boot_multipliers=3 * whole.n_units - 1)  # 2 rows, ragged
        pieces = callaway_santanna(sd, bootstrap=True, biters=300, seed=4, multipliers=mult, tuning=tuning)
        np.testing.assert_array_equal(whole.se, pieces.se)
        assert whole.crit == pieces.crit
        np.testing.assert_array_equal(whole.att_gt()["se"].to_numpy(), pieces.att_gt()["se"].to_numpy())


def test_memory_does_not_hold_a_units_x_cells_matrix():
    """The estimator's own allocations (tracemalloc sees numpy's) stay well
    below one units x cells matrix of influence functions, which the SEs,
    covariances and aggregations used to be computed from."""
    import tracemalloc

    n_u, n_t = 200_000, 10
    rng = np.random.default_rng(0)
    coh = np.where(rng.random(n_u) < 0.5, 0, rng.integers(4, 9, n_u))
    df = pl.DataFrame({"unit": np.repeat(np.arange(n_u), n_t), "time": np.tile(np.arange(1, n_t + 1), n_u),
                       "cohort": np.repeat(coh, n_t), "y": rng.normal(size=n_u * n_t)})
    sd = prepare(df, y="y", unit="unit", time="time", cohort="cohort", rows=False)
    tracemalloc.start()
    try:
        res = callaway_santanna(sd)
        for kind in ("simple", "group", "calendar"):
            res.aggregate(kind)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_matrix = n_u * res.att_gt().height * 8  # 72 MB here
    assert peak < 0.5 * one_matrix, (peak / 1e6, one_matrix / 1e6)


# --------------------------------------------------------------------------- overall dynamic ATT (issue 16, item 6)
@pytest.mark.parametrize("window, min_e, max_e", [((-1, 1), -np.inf, np.inf), ((-5, 5), -2, 2), ((0, 1), 1, 3)])
def test_dynamic_overall_averages_all_event_times_unless_min_e_max_e(mpdta, window, min_e, max_e):
    # reference: csdid's aggte(typec="dynamic", min_e=, max_e=) (R did's convention): the overall
    # dynamic ATT averages every post event time in [min_e, max_e]; the window only selects the display
    ref = _csdid(mpdta.to_pandas(), "never", "varying")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg_ref = ref.aggte(typec="dynamic", bstrap=False, min_e=min_e, max_e=max_e).atte
    res = _cs(mpdta, window=window, min_e=min_e, max_e=max_e)
    dyn = res.aggregate("dynamic")
    assert dyn.estimate == pytest.approx(agg_ref["overall_att"], abs=1e-8)
    assert dyn.se == pytest.approx(agg_ref["overall_se"], abs=1e-8)
    e_ref = np.asarray(agg_ref["egt"], dtype=int)
    shown = (e_ref >= window[0]) & (e_ref <= window[1])
    np.testing.assert_array_equal(dyn.labels, e_ref[shown])
    np.testing.assert_allclose(dyn.estimates, np.asarray(agg_ref["att_egt"])[shown], rtol=0, atol=1e-8)
    np.testing.assert_allclose(dyn.ses, np.asarray(agg_ref["se_egt"], dtype=float)[shown], rtol=0, atol=1e-8)


def test_dynamic_window_does_not_change_the_overall(mpdta):
    # mpdta has event times -3..3: every window containing them gives R's published overall
    narrow = _cs(mpdta, window=(-1, 0)).aggregate("dynamic")
    assert narrow.estimate == pytest.approx(R_DYNAMIC_OVERALL, abs=R_TOL)
    np.testing.assert_array_equal(narrow.labels, [-1, 0])
    with pytest.raises(sl.errors.TreatmentError, match="min_e"):
        _cs(mpdta, max_e=-1).aggregate("dynamic")
    with pytest.raises(sl.errors.ArgumentError, match="min_e"):
        _cs(mpdta, min_e=2, max_e=1)


# --------------------------------------------------------------------------- few clusters (issue 16, item 7)
def test_df_clusters_uses_t_with_g_minus_1(mpdta):
    from scipy import stats

    normal = _cs(mpdta)
    tdist = _cs(mpdta, df="clusters")
    G = mpdta["countyreal"].n_unique()
    q = stats.t.ppf(0.975, G - 1)  # hand computation of the t_{G-1} quantile
    np.testing.assert_allclose(tdist.coef, normal.coef, rtol=0, atol=0)
    tab = tdist.tidy()
    np.testing.assert_allclose(tab["ci_high"].to_numpy(), tdist.coef + q * tdist.se, rtol=1e-13)
    np.testing.assert_allclose(normal.tidy()["ci_high"].to_numpy(),
                               normal.coef + stats.norm.ppf(0.975) * normal.se, rtol=1e-13)
    for kind in ("simple", "dynamic", "group"):
        a = tdist.aggregate(kind)
        row = a.tidy().filter(pl.col("term") == "overall")
        assert row["ci_low"].item() == pytest.approx(a.estimate - q * a.se, rel=1e-13)
    pt = tdist.pretrend_test()
    assert pt.pvalue == pytest.approx(stats.f.sf(pt.wald / pt.df1, pt.df1, G - 1), rel=1e-12)
    with pytest.raises(sl.errors.ArgumentError, match="df"):
        _cs(mpdta, df="t")


def test_dynamic_uniform_band_covers_every_event_time_whatever_the_window(mpdta):
    # did::aggte(type="dynamic") draws its sup-t band over every event time; the window only
    # selects the rows reported, so a narrow window reports the same band and bootstrap SEs
    wide = _cs(mpdta, bootstrap=True, biters=499, seed=3).aggregate("dynamic")
    narrow = _cs(mpdta, window=(-1, 1), bootstrap=True, biters=499, seed=3).aggregate("dynamic")
    assert narrow.crit == wide.crit
    keep = np.isin(wide.labels, [-1, 0, 1])
    np.testing.assert_array_equal(narrow.ses, wide.ses[keep])
    np.testing.assert_allclose(narrow.vcov, wide.vcov[np.ix_(keep, keep)], rtol=1e-13)
    assert narrow.inf.shape == (wide.inf.shape[0], 3)
    np.testing.assert_allclose(narrow.inf, wide.inf[:, keep], rtol=1e-13)
    assert (narrow.estimate, narrow.se) == (wide.estimate, wide.se)


# --------------------------------------------------------------------------- event-study bootstrap outputs
@pytest.mark.parametrize("base,band", [("varying", "post"), ("universal", "all")])
def test_event_study_boot_outputs_equal_brute_force_multiplier_bootstrap(mpdta, base, band):
    """The CS result's multiplier bootstrap in the event-study bootstrap's interface
    (``tidy`` with p-values, intervals and band; aggregates; bootstrap pre-trend test)
    equals the same bootstrap computed here: Rademacher multipliers of the seeded blocks
    of 128 draws (as did's mboot draws them, units as clusters) times the influence
    functions, IQR standard errors, percentile-t p-values and intervals, sup-t band."""
    from scipy import stats

    from staggerlab._seed import block_generator, resolve_entropy
    from staggerlab.inference.resampling.es_wildboot import event_study_wildboot

    res = _cs(mpdta, base_period=base, bootstrap=True, biters=499, seed=7, multipliers="rademacher")
    r = event_study_wildboot(res, draws=499, weights="rademacher", seed=7, band=band)
    # the public entry point dispatches a CS result to the same bootstrap
    assert sl.wildboot(res, draws=499, weights="rademacher", seed=7, band=band).tidy().equals(r.tidy())
    n = res.n_units
    ss = resolve_entropy(7)
    V = np.vstack([block_generator(ss, i).integers(0, 2, size=(min(128, 499 - 128 * i), n)) * 2.0 - 1.0
                   for i in range(4)])
    kinds = ["simple", "dynamic", "group", "calendar"]
    inf = np.column_stack([res.aggregate("dynamic").inf] + [res.aggregate(k).inf_overall for k in kinds])
    est = np.r_[res.coef, [res.aggregate(k).estimate for k in kinds]]
    d = V @ inf / n
    se = (np.quantile(d, 0.75, axis=0) - np.quantile(d, 0.25, axis=0)) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    k = res.rel_time.size
    ok = se > 1e-7
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.abs(d / se)
        p = (a >= np.abs(est / se) * (1 - 1e-10)).mean(axis=0)
    q = np.quantile(np.where(ok, a, 0.0), 0.95, axis=0)
    tab = r.tidy()
    assert tab.columns == ["rel_time", "estimate", "se", "pvalue", "ci_low", "ci_high", "band_low", "band_high"]
    np.testing.assert_allclose(r.se[ok[:k]], se[:k][ok[:k]], rtol=1e-10)
    np.testing.assert_allclose(r.pvalue[ok[:k]], p[:k][ok[:k]], atol=1e-12)
    np.testing.assert_allclose(r.ci_high[ok[:k]], (est + q * se)[:k][ok[:k]], rtol=1e-10)
    assert np.isnan(r.pvalue[~ok[:k]]).all() and (base == "universal") == (~ok[:k]).any()
    mask = (res.rel_time >= 0) if band == "post" else np.ones(k, dtype=bool)
    mask &= ok[:k]
    crit = max(np.quantile(a[:, :k][:, mask].max(axis=1), 0.95), stats.norm.ppf(0.975))
    assert r.band_crit == pytest.approx(crit, rel=1e-10)
    np.testing.assert_allclose(tab["band_high"].drop_nulls(), (res.coef + crit * se[:k])[mask], rtol=1e-10)
    for i, kind in enumerate(kinds):
        agg = r.aggregate(kind)
        assert agg.se == pytest.approx(se[k + i], rel=1e-10)
        assert agg.pvalue == pytest.approx(p[k + i], abs=1e-12)
        assert agg.confint[0] == pytest.approx(est[k + i] - q[k + i] * se[k + i], rel=1e-10)
        # the same draws as the fit's own bootstrap
        assert agg.se == pytest.approx(res.aggregate(kind).se, rel=1e-12)
    if band == "all":  # did's uniform band of the fit itself
        assert r.band_crit == pytest.approx(res.crit, rel=1e-12)
    lead = np.flatnonzero(res.rel_time < 0)
    Vp = np.linalg.pinv(res.vcov[np.ix_(lead, lead)])
    w = np.einsum("bi,ij,bj->b", d[:, lead], Vp, d[:, lead])
    w_obs = res.coef[lead] @ Vp @ res.coef[lead]
    assert r.pretrend_wald == pytest.approx(w_obs, rel=1e-10)
    assert r.pretrend_pvalue == pytest.approx(np.mean(w >= w_obs * (1 - 1e-10)), abs=1e-12)
    with pytest.raises(sl.errors.WildBootError, match="rademacher"):
        event_study_wildboot(res, draws=99, weights="webb")


def test_a_cohort_resting_on_one_cluster_is_flagged():
    # a cohort of one unit: its ATT(g,t) is that unit's own contrast, its influence-function
    # variance has no treated-side term (the unit is its cohort's mean), so it is flagged
    from staggerlab.errors import SingleClusterWarning

    df = sl.simulate.staggered(60, 8, n_controls=1, seed=4)
    keep = df.filter(pl.col("cohort") == 2017)["unit"][0]
    one = df.filter((pl.col("cohort") != 2017) | (pl.col("unit") == keep))
    with pytest.warns(SingleClusterWarning, match=r"cohort\(s\) \[2017\] have all their units in one cluster \('unit'\)"):
        r = sl.cs(one, y="y", unit="unit", time="time", cohort="cohort")
    assert r.single_cluster == [2017] and "cohort(s) [2017] rest on one cluster" in r.summary()
    # clusters of several units: a cohort whose units share one cluster is flagged, others not
    grp = df.with_columns((pl.col("unit") % 7).alias("grp"))
    lone = grp.filter(pl.col("cohort") == 2013)["grp"][0]
    grp = grp.filter((pl.col("cohort") != 2013) | (pl.col("grp") == lone))
    with pytest.warns(SingleClusterWarning, match=r"\[2013\].*\('grp'\)"):
        r = sl.cs(grp, y="y", unit="unit", time="time", cohort="cohort", cluster="grp")
    assert r.single_cluster == [2013]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleClusterWarning)
        assert sl.cs(df, y="y", unit="unit", time="time", cohort="cohort").single_cluster == []
