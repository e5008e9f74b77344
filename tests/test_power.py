"""Design-based power (``sl.power``): the exact TWFE curve and the refit
shortcuts against brute-force refits (re-assign, add the effect, refit), the
design's size at zero effect, the MDE's interpolation and its refusals."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import ArgumentError, PowerError
from staggerlab.inference.did.cs import cs
from staggerlab.inference.did.event_study import EventStudyTuning, event_study
from staggerlab.inference.studies.power_result import PowerResult, curve_rows

EXACT = 1e-10  # the exact TWFE algebra vs a refit (the contract)
SHORTCUT = 1e-8  # refit-estimator shortcuts vs a refit at every size


def _panel(seed: int = 3, drop: float = 0.0) -> pl.DataFrame:
    df = sl.simulate.staggered(80, 7, n_controls=1, never_share=0.4, drop_share=drop, seed=seed)
    # clusters coarser than units (CRV1 by group of units)
    return df.with_columns((pl.col("unit") % 23).alias("grp"))


def _brute(df, y, unit, time, controls, cluster, adopt_U, units, path, delta):
    """Re-assign, add the effect path at size delta, refit with feols: (coef, t, truth)."""
    amap = dict(zip(units.tolist(), adopt_U.tolist()))
    g = df[unit].replace_strict(amap, return_dtype=pl.Int64, default=0)
    t = df[time]
    D = ((g > 0) & (t >= g)).cast(pl.Float64)
    per = np.unique(df[time].to_numpy())
    e = np.searchsorted(per, t.to_numpy()) - np.searchsorted(per, g.to_numpy())
    h = np.where(D.to_numpy() == 1, path(e, g.to_numpy(), df[unit].to_numpy()), 0.0)
    frame = df.with_columns(D.alias("_D"), (pl.col(y) + delta * pl.Series(h)).alias("_y"))
    fit = sl.feols(f"_y ~ {' + '.join(['_D', *controls])} | {unit} + {time}", frame, vcov={"CRV1": cluster})
    return fit.coef()["_D"], fit.tstat()["_D"], delta * h[D.to_numpy() == 1].mean()


def _ramp_scale(df):
    # the ramp preset's normalization: 1 + mean event time of the observed treated cells
    per = np.unique(df["time"].to_numpy())
    tr = df.filter((pl.col("cohort") > 0) & (pl.col("time") >= pl.col("cohort")))
    e = np.searchsorted(per, tr["time"].to_numpy()) - np.searchsorted(per, tr["cohort"].to_numpy())
    return 1.0 + e.mean()


@pytest.mark.parametrize("effects", ["homogeneous", "ramp", "custom"])
@pytest.mark.parametrize("drop", [0.0, 0.25])
def test_twfe_exact_matches_refits(effects, drop):
    df = _panel(drop=drop)
    sizes = [0.0, 0.3, -0.7, 1.5]
    if effects == "homogeneous":
        spec, path = "homogeneous", (lambda e, g, u: np.ones(e.size))
    elif effects == "ramp":
        scale = _ramp_scale(df)
        spec, path = "ramp", (lambda e, g, u: (1.0 + e) / scale)
    else:
        def spec(e, g, u):  # by event time, cohort and unit
            return 1.0 + 0.3 * e - 0.001 * (g - 2011) + 0.01 * (u % 3)
        path = spec
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="cohort", controls=["x1"], cluster="grp",
                  effects=spec, sizes=sizes, draws=12, seed=5)
    assert pw.tidy()["method"][0].startswith("exact")
    A = pw.assignments
    for b in range(0, 12, 3):
        for k, d in enumerate(pw.sizes):
            coef, t, _ = _brute(df, "y", "unit", "time", ["x1"], "grp", A[b], pw.units, path, d)
            assert pw.estimates["twfe"][b, k] == pytest.approx(coef, rel=EXACT, abs=EXACT)
            assert pw.tstats["twfe"][b, k] == pytest.approx(t, rel=EXACT, abs=EXACT)


def test_truth_bias_and_coverage_follow_the_draws():
    df = _panel()
    scale = _ramp_scale(df)
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="cohort", effects="ramp", sizes=[0.0, 1.0],
                  draws=8, seed=2)
    A = pw.assignments
    truth = np.array([_brute(df, "y", "unit", "time", [], "unit", A[b], pw.units,
                             lambda e, g, u: (1.0 + e) / scale, 1.0)[2] for b in range(8)])
    row = pw.tidy().filter(pl.col("effect") == 1.0)
    assert row["mean_truth"][0] == pytest.approx(truth.mean(), rel=1e-12)
    assert row["bias"][0] == pytest.approx((pw.estimates["twfe"][:, 1] - truth).mean(), rel=1e-10)


@pytest.mark.parametrize("method,effects", [("imputation", "heterogeneous"), ("cs", "homogeneous"),
                                            ("sunab+crv1", "homogeneous")])
def test_refit_shortcuts_match_refits(method, effects):
    df = _panel()
    sizes = [0.0, 0.4, 1.1]
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="cohort", controls=["x1"], cluster="grp",
                  estimators=[method], effects=effects, sizes=sizes, draws=4, seed=7)
    mode = pw.tidy()["method"][0]
    assert mode == ("shift" if effects == "homogeneous" else "quadratic")
    A = pw.assignments
    amap = pw.units
    gvals = np.unique(df["cohort"].to_numpy()[df["cohort"].to_numpy() > 0])
    raw = np.linspace(1.5, 0.5, gvals.size)
    for b in (0, 3):
        g = df["unit"].replace_strict(dict(zip(amap.tolist(), A[b].tolist())), return_dtype=pl.Int64, default=0)
        treated = ((g > 0) & (df["time"] >= g)).to_numpy()
        if effects == "homogeneous":
            h = treated.astype(float)
        else:  # heterogeneous preset: 1.5 .. 0.5 by cohort, mean 1 on the observed treated cells
            obs = df.filter((pl.col("cohort") > 0) & (pl.col("time") >= pl.col("cohort")))["cohort"].to_numpy()
            norm = raw[np.searchsorted(gvals, obs)].mean()
            h = np.where(treated, raw[np.searchsorted(gvals, np.maximum(g.to_numpy(), gvals[0]))] / norm, 0.0)
        for k, d in enumerate(pw.sizes):
            frame = df.with_columns(g.alias("_g"), (pl.col("y") + d * pl.Series(h)).alias("_y"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if method == "cs":
                    agg = cs(frame, y="_y", unit="unit", time="time", cohort="_g", cluster="grp").aggregate("simple")
                else:
                    agg = event_study(frame, y="_y", unit="unit", time="time", cohort="_g", controls=["x1"],
                                      cluster="grp", method=method.removesuffix("+crv1")).aggregate("simple")
            assert pw.estimates[method][b, k] == pytest.approx(agg.estimate, rel=SHORTCUT, abs=1e-10)
            assert pw.tstats[method][b, k] == pytest.approx(agg.estimate / agg.se, rel=SHORTCUT, abs=1e-9)


def _sunab_crv3_refit(frame, y, cluster):
    """Sun-Abraham's simple ATT and its CRV3 s.e. by brute force: the event study's cells,
    then feols with the periods as dummies and CRV3 (one refit per left-out cluster)."""
    es = event_study(frame, y=y, unit="unit", time="time", cohort="_g", controls=["x1"], cluster=cluster,
                     method="sunab")
    cells, w = es.extra["cell_names"], es.extra["cell_weights"]("simple")
    inner = es.extra["fit"]  # its frame holds the cell columns (and the outcome under its own name)
    fit = sl.feols(f"{inner.depvar} ~ {' + '.join(cells)} + x1 + i(time) | unit", inner.design.frame,
                   vcov={"CRV3": cluster})
    idx = [list(fit.coefnames).index(c) for c in cells]
    return w @ fit.beta[idx], np.sqrt(w @ fit.vcov()[np.ix_(idx, idx)] @ w)


@pytest.mark.parametrize("n_groups", [23, 6])  # clusters of ~24 rows, then ~90 (more rows than columns)
def test_sunab_default_test_is_crv3_against_jackknife_refits(n_groups):
    df = _panel().with_columns((pl.col("unit") % n_groups).alias("grp"))
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="cohort", controls=["x1"], cluster="grp",
                  estimators=["sunab"], sizes=[0.0, 0.9], draws=3, seed=4)
    assert pw.tidy()["method"][0] == "shift" and "CRV3" in pw.hypotheses["sunab"] and "CRV3" in pw.summary()
    for b in (0, 2):
        g = df["unit"].replace_strict(dict(zip(pw.units.tolist(), pw.assignments[b].tolist())),
                                      return_dtype=pl.Int64, default=0)
        treated = ((g > 0) & (df["time"] >= g)).cast(pl.Float64)
        for k, d in enumerate(pw.sizes):
            frame = df.with_columns(g.alias("_g"), (pl.col("y") + d * treated).alias("y_shifted"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est, se = _sunab_crv3_refit(frame, "y_shifted", "grp")
            assert pw.estimates["sunab"][b, k] == pytest.approx(est, rel=SHORTCUT, abs=1e-10)
            assert pw.tstats["sunab"][b, k] == pytest.approx(est / se, rel=SHORTCUT, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_sunab_cells_are_the_event_studys(seed):
    """The power study's Sun-Abraham cells and weights (formed without the event study's fit)
    equal the event study's, on random adoption draws of an unbalanced panel; where the event
    study would leave rows out (a cohort never seen at the reference period, no never-treated
    unit) they are refused instead."""
    from staggerlab.errors import VcovError
    from staggerlab.inference.studies.power_sunab import sunab_cells

    df = _panel(seed=seed, drop=0.15)
    rng = np.random.default_rng(seed)
    units = np.unique(df["unit"].to_numpy())
    periods = np.unique(df["time"].to_numpy())
    checked = refused = 0
    for _ in range(8):
        adopt = np.where(rng.random(units.size) < 0.5, rng.choice(periods[1:], units.size), 0)
        if rng.random() < 0.15:
            adopt = rng.choice(periods[1:], units.size)  # no never-treated unit
        g = df["unit"].replace_strict(dict(zip(units.tolist(), adopt.tolist())), return_dtype=pl.Int64)
        frame = df.with_columns(g.alias("_g"))
        try:
            cell_g, cell_r, j_N, rows, n_c = sunab_cells(frame["_g"].to_numpy(), frame["time"].to_numpy())
        except VcovError:
            refused += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    es = event_study(frame, y="y", unit="unit", time="time", cohort="_g", method="sunab")
                except ValueError:
                    continue  # the event study refuses it too
            assert es.nobs < frame.height  # rows left out: the jackknife could not use every row
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es = event_study(frame, y="y", unit="unit", time="time", cohort="_g", method="sunab",
                             tuning=EventStudyTuning(lean_bytes=0))
        cells = es.extra["cells"]
        assert es.nobs == frame.height
        np.testing.assert_array_equal(cell_g, cells["cohort"].to_numpy())
        np.testing.assert_array_equal(cell_r, cells["rel_time"].to_numpy())
        np.testing.assert_array_equal(n_c, cells["n"].to_numpy())
        w = np.where(cell_r >= 0, n_c, 0.0)
        np.testing.assert_allclose(w / w.sum(), es.extra["cell_weights"]("simple"), rtol=1e-15)
        # every treated row outside the reference period is in its own cell
        rel = np.clip(frame["time"].to_numpy()[rows] - frame["_g"].to_numpy()[rows], -5, 5)
        assert np.array_equal(cell_g[j_N], frame["_g"].to_numpy()[rows]) and np.array_equal(cell_r[j_N], rel)
        checked += 1
    assert checked >= 3


def test_sunab_crv3_refuses_clusters_that_split_units():
    from staggerlab.errors import VcovError
    from staggerlab.inference.studies.power_sunab import sunab_crv3

    df = _panel().with_columns((pl.col("time") % 2).alias("half"))
    with pytest.raises(VcovError, match="within one cluster"):
        sunab_crv3(df, "y", "unit", "time", "cohort", (), "half")
    with pytest.raises(ArgumentError, match="sunab\\+crv1"):
        sl.power(df, y="y", unit="unit", time="time", cohort="cohort", cluster="half", estimators=["sunab"], draws=3)


def test_same_numbers_for_any_n_jobs():
    df = _panel()
    kw = dict(y="y", unit="unit", time="time", cohort="cohort", estimators=["twfe", "imputation"],
              effects="ramp", sizes=[0.0, 1.0], draws=30, seed=1)
    a = sl.power(df, **kw)
    b = sl.power(df, n_jobs=2, backend="threading", **kw)
    assert a.tidy().equals(b.tidy())


def test_size_at_zero_twfe_on_the_built_in_panel():
    # the study's panel: the exact TWFE curve is instant, so the size check uses 1,000 draws
    df = sl.simulate.paper_panel(seed=0)
    pw = sl.power(df, y="NQPF", unit="firm", time="year", treat="IM", draws=1000, seed=0)
    s, se = pw.size("twfe")
    assert abs(s - 0.05) <= 2 * se
    m = pw.mde("twfe")
    assert 0 < m.low <= m.estimate <= m.high < np.inf


def test_size_at_zero_quick_on_the_built_in_panel():
    # the default run's check (few draws, so a loose bound: 3 MC s.e. at the nominal level); the
    # slow tests below hold each estimator to 2 MC s.e. with more draws
    df = sl.simulate.paper_panel(seed=0)
    n = 60
    pw = sl.power(df, y="NQPF", unit="firm", time="year", treat="IM", estimators=["twfe", "imputation", "sunab", "cs"],
                  sizes=[0.0], draws=n, seed=11)
    for name in pw.estimators:
        s, _ = pw.size(name)
        assert abs(s - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / n), (name, s)


@pytest.fixture(scope="module")
def paper_sizes():
    df = sl.simulate.paper_panel(seed=0)
    return sl.power(df, y="NQPF", unit="firm", time="year", treat="IM", controls=["Size", "Lev"],
                    estimators=["twfe", "imputation", "sunab", "sunab+crv1", "cs", "event_study"], sizes=[0.0],
                    draws=500, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "twfe", "imputation", "cs", "event_study", "sunab",
    # measured: 0.078 (MC s.e. 0.012) at 500 draws with these controls, 0.067 (0.006) at 2,000 draws
    # without: the CRV1 t test of the Sun-Abraham aggregate over-rejects on this design (84 treated
    # firms in 4 cohorts, ~21 treated clusters per cohort x event-time cell); "sunab" (CRV3) does not
    pytest.param("sunab+crv1", marks=pytest.mark.xfail(reason="Sun-Abraham's CRV1 t test is oversized on "
                                                              "this design (see comment)", strict=False)),
])
def test_size_at_zero_every_estimator_on_the_built_in_panel(paper_sizes, name):
    s, se = paper_sizes.size(name)
    assert abs(s - 0.05) <= 2 * se, (name, s, se)


@pytest.mark.slow
def test_size_at_zero_resampling_tests():
    df = sl.simulate.paper_panel(seed=0)
    pw = sl.power(df, y="NQPF", unit="firm", time="year", treat="IM", estimators=["twfe+wildboot", "twfe+placebo"],
                  sizes=[0.0], draws=200, boot_draws=99, inner_draws=99, seed=0)
    for name in pw.estimators:
        s, se = pw.size(name)
        assert abs(s - 0.05) <= 2 * max(se, np.sqrt(0.05 * 0.95 / 200)), (name, s, se)


def test_resampling_tests_small():
    df = _panel()
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="cohort", estimators=["twfe+wildboot", "twfe+placebo"],
                  sizes=[0.0, 3.0], draws=4, boot_draws=49, inner_draws=49, seed=0)
    t = pw.tidy()
    assert t.filter(pl.col("estimator") == "twfe+placebo")["coverage"].null_count() == 2
    # a large effect is detected by both
    assert (t.filter(pl.col("effect") == 3.0)["power"] == 1.0).all()


def _result(effect, power, n=400):
    p = np.asarray(power, float)
    est = np.zeros((n, len(effect)))
    rows = curve_rows("x", np.asarray(effect, float), est, np.vstack([np.arange(n) < round(q * n) for q in p]).T,
                      None, est, "test")
    return PowerResult(pl.DataFrame(rows, schema_overrides={"coverage": pl.Float64}), 0.95, n, "units", "h", "y")


def test_mde_interpolates_and_refuses():
    r = _result([0.0, 1.0, 2.0, 3.0], [0.05, 0.5, 0.9, 1.0])
    m = r.mde("x")
    assert m.estimate == pytest.approx(1.0 + 0.3 / 0.4)
    se = np.sqrt(np.array([0.05 * 0.95, 0.25, 0.09, 0.0]) / 400)
    lo_curve, hi_curve = np.array([0.05, 0.5, 0.9, 1.0]) + 1.959964 * se, np.array([0.05, 0.5, 0.9, 1.0]) - 1.959964 * se
    assert m.low == pytest.approx(1.0 + (0.8 - lo_curve[1]) / (lo_curve[2] - lo_curve[1]), rel=1e-6)
    assert m.high == pytest.approx(1.0 + (0.8 - hi_curve[1]) / (hi_curve[2] - hi_curve[1]), rel=1e-6)
    assert not m.censored
    with pytest.raises(PowerError, match="at most 0.700"):
        _result([0.0, 1.0], [0.05, 0.7]).mde("x")
    m = _result([0.0, 1.0], [0.05, 0.8]).mde("x")
    assert m.censored and m.high == np.inf and m.estimate == pytest.approx(1.0)
    with pytest.raises(ArgumentError):
        r.mde("nope")


def test_arguments_and_outputs():
    df = _panel()
    with pytest.raises(ArgumentError, match="unknown estimator"):
        sl.power(df, y="y", unit="unit", time="time", cohort="cohort", estimators=["ols"])
    with pytest.raises(ArgumentError, match="effects must be"):
        sl.power(df, y="y", unit="unit", time="time", cohort="cohort", effects="bumpy")
    with pytest.raises(ArgumentError, match="one finite number"):
        sl.power(df, y="y", unit="unit", time="time", cohort="cohort", effects=lambda e, g, u: np.ones(2),
                 sizes=[1.0], draws=3)
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="cohort", effects=[0.5, 1.0], draws=20)
    assert pw.tidy().columns[:6] == ["estimator", "effect", "power", "power_mcse", "bias", "coverage"]
    assert pw.sizes.tolist() == [0.0, 0.5, 1.0]  # zero is always added
    assert "MDE" in pw.summary() and "H0:" in pw.summary()
    import matplotlib

    matplotlib.use("Agg")
    fig = pw.plot()
    assert len(fig.axes[0].lines) >= 1


def test_strata_keep_the_treated_count_per_stratum():
    df = _panel().with_columns((pl.col("unit") % 2).alias("half"))
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="cohort", strata="half", scheme="units",
                  sizes=[1.0], draws=20, seed=3)
    units = pw.units
    observed = df.group_by("unit").agg(pl.col("cohort").first()).sort("unit")
    obs = dict(zip(observed["unit"].to_list(), observed["cohort"].to_list()))
    for half in (0, 1):
        cols = units % 2 == half
        want = sorted(obs[u] for u in units[cols].tolist())
        for a in pw.assignments:  # scheme "units": the cohorts are permuted within each stratum
            assert sorted(a[cols].tolist()) == want


def test_battery_section(tmp_path):
    from staggerlab.battery import BatterySpec, SharedFits, section_power, validate

    df = _panel()
    spec = BatterySpec(unit="unit", time="time", outcomes=["y"], treat=None, cohort="cohort", controls=["x1"],
                       draws=50, power_draws=5, out=str(tmp_path))
    frame = validate(df, spec)
    (tmp_path / "figures").mkdir()
    sec = section_power(frame, spec, "_treat", tmp_path, SharedFits(frame, spec, "_treat"))
    assert sec.title.endswith("Design power") and (tmp_path / "figures" / "power.png").exists()
    tab = sec.tables["power"]
    assert tab["draws"].to_list() == [50, 5, 5, 5]
    # the baseline TWFE row is the exact curve's MDE
    twfe = sl.power(frame, y="y", unit="unit", time="time", cohort="_cohort", controls=["x1"], draws=50,
                    sizes=np.linspace(0.0, 2.0 * sl.power(frame, y="y", unit="unit", time="time", cohort="_cohort",
                                                           controls=["x1"], draws=50).sizes.max(), 17))
    assert tab["mde_80"][0] == pytest.approx(twfe.mde("twfe").estimate, rel=1e-12)


def test_cluster_level_assignment_and_missing_cohorts():
    df = _panel()
    # adoption at the level of groups of units (the cohort of the group's first unit), never = null
    first = df.group_by("grp").agg(pl.col("cohort").sort_by("unit").first().alias("gc"))
    df = df.join(first, on="grp").with_columns(pl.when(pl.col("gc") > 0).then(pl.col("gc")).alias("gc"))
    pw = sl.power(df, y="y", unit="unit", time="time", cohort="gc", assign_by="grp", sizes=[1.0], draws=15, seed=2)
    grp = dict(zip(*df.select("unit", "grp").unique().sort("unit").to_dict(as_series=False).values()))
    g_of_unit = np.array([grp[u] for u in pw.units.tolist()])
    for a in pw.assignments:
        for g in np.unique(g_of_unit):
            assert np.unique(a[g_of_unit == g]).size == 1  # one assignment per group
    assert pw.tidy()["valid_draws"].min() == 15


def test_jackknife_nested_matches_pyfixest_crv3():
    # the closed-form leave-one-cluster-out changes vs pyfixest's CRV3 (one refit per cluster)
    import pyfixest as pf

    from staggerlab.errors import VcovError
    from staggerlab.inference.regression.absorb import Absorber
    from staggerlab.inference.regression.vcov import jackknife_nested, ssc_factor

    df = _panel().with_columns(((pl.col("cohort") > 0) & (pl.col("time") >= pl.col("cohort")))
                                        .cast(pl.Float64).alias("D"))
    ref = pf.feols("y ~ D + x1 + C(time) | unit", df.to_pandas(), vcov={"CRV3": "grp"})
    names = list(ref._coefnames)
    ucode = df["unit"].rank("dense").cast(pl.Int64).to_numpy() - 1
    times = np.unique(df["time"].to_numpy())
    X = np.column_stack([df["D"].to_numpy(), df["x1"].to_numpy()]
                        + [(df["time"].to_numpy() == t).astype(float) for t in times[1:]])
    within = Absorber([ucode])
    Xd, yd = within.demean(X), within.demean(df["y"].to_numpy())
    bread = np.linalg.inv(Xd.T @ Xd)
    beta = bread @ (Xd.T @ yd)
    cl = df["grp"].rank("dense").cast(pl.Int64).to_numpy() - 1
    D = jackknife_nested(Xd, yd - Xd @ beta, bread, cl)
    G, k = D.shape[0], X.shape[1]
    V = ssc_factor("CRV3", df.height, k + 1, G) * D.T @ D  # the unit FE, nested, counts once
    order = [names.index(n) for n in ["D", "x1"]]
    np.testing.assert_allclose(V[:2, :2], ref._vcov[np.ix_(order, order)], rtol=1e-9)
    # the changes of contrasts only (the power study's aggregate): the same as D @ contrasts, and
    # the variance of a combination of pyfixest's coefficients
    C = np.zeros((k, 2))
    C[:2] = [[0.3, 1.0], [-1.2, 0.0]]
    DC = jackknife_nested(Xd, yd - Xd @ beta, bread, cl, contrasts=C)
    np.testing.assert_allclose(DC, D @ C, rtol=1e-10, atol=1e-14 * np.abs(D).max())
    c = C[:2, 0]
    var_ref = c @ ref._vcov[np.ix_(order, order)] @ c
    np.testing.assert_allclose(ssc_factor("CRV3", df.height, k + 1, G) * np.sum(DC[:, 0] ** 2), var_ref, rtol=1e-9)
    # a column carried by one cluster alone has no leave-it-out estimate
    lone = (cl == 0).astype(float) * np.arange(df.height) % 3
    Xl = within.demean(np.column_stack([X, lone]))
    bl = np.linalg.inv(Xl.T @ Xl)
    with pytest.raises(VcovError, match="one cluster alone"):
        jackknife_nested(Xl, yd - Xl @ (bl @ (Xl.T @ yd)), bl, cl)


def test_an_invalid_first_draw_does_not_force_refits():
    """A draw that does not fit at zero effect picks no mode (the block's next valid draw
    does): it used to switch its whole block to one refit per effect size (17x the work)."""
    from staggerlab.inference.studies import power_refit

    calls = []

    class Invalid:
        def fit(self, delta):
            calls.append(delta)
            return (np.nan, np.nan, None)

    assert power_refit._pick_mode(Invalid(), None, 1.0) is None
    assert calls == [0.0]
