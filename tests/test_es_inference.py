"""Event-study inference: wild bootstrap of whole event studies (sup-t band,
aggregates, pre-trend test), pre-trend power, randomization inference.

References: ``sl.wildboot`` on each coefficient separately (same draws),
brute-force dummy-variable refits over all 2^G Rademacher sign vectors
(numpy lstsq), closed forms computed here with scipy, simulations.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import WildBootError


def _panel(n_units: int, n_periods: int, cohorts: list[int], seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), n_periods)
    time = np.tile(np.arange(1, n_periods + 1), n_units)
    coh = np.repeat(np.asarray(cohorts), n_periods)
    treated = (coh > 0) & (time >= coh)
    y = (rng.normal(size=n_units)[unit] + 0.3 * time + treated * (0.5 + 0.2 * (time - coh))
         + rng.normal(size=unit.size) * (1 + 0.5 * (unit % 3)))
    return pl.DataFrame({"unit": unit, "time": time, "cohort": coh, "y": y})


@pytest.fixture(scope="module")
def small():
    """8 clusters: 2^8 = 256 sign vectors, enumerated."""
    return _panel(8, 6, [3, 3, 4, 4, 5, 0, 0, 0], seed=5)


def _dummy_design(es, names):
    """``y`` and ``[cells, unit dummies, period dummies 2..T]`` of the event study's regression."""
    fit = es.extra["fit"]
    f = fit.design.frame
    unit = f["unit"].to_numpy()
    time = f["time"].to_numpy()
    U = (unit[:, None] == np.unique(unit)[None, :]).astype(float)
    T = (time[:, None] == np.unique(time)[None, 1:]).astype(float)
    X = np.column_stack([f[n].to_numpy() for n in names] + [U, T])
    return f["y"].to_numpy(), X, unit


def _crv(X, XtXi, u, cl):
    S = np.vstack([X[cl == g].T @ u[cl == g] for g in np.unique(cl)])
    return XtXi @ (S.T @ S) @ XtXi


def _brute(es, names, contrasts, h0=0.0):
    """Per contrast c (over ``names``): the WCR p-value of ``c'b = h0`` over all
    2^G sign vectors, and the WCU t's of every contrast (rows: draws)."""
    y, X, cl = _dummy_design(es, names)
    XtXi = np.linalg.inv(X.T @ X)
    b = XtXi @ X.T @ y
    u = y - X @ b
    G = np.unique(cl)
    V = _crv(X, XtXi, u, cl)
    C = np.zeros((len(contrasts), X.shape[1]))
    C[:, : len(names)] = contrasts
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=G.size)))
    pv = []
    for c in C:
        t_obs = (c @ b - h0) / np.sqrt(c @ V @ c)
        br = b - XtXi @ c * (c @ b - h0) / (c @ XtXi @ c)
        ur = y - X @ br
        ts = []
        for v in signs:
            ys = X @ br + ur * v[np.searchsorted(G, cl)]
            bs = XtXi @ X.T @ ys
            Vs = _crv(X, XtXi, ys - X @ bs, cl)
            ts.append((c @ bs - h0) / np.sqrt(c @ Vs @ c))
        pv.append(np.mean(np.abs(ts) >= abs(t_obs) * (1 - 1e-8)))
    tu, du = [], []
    for v in signs:
        ys = X @ b + u * v[np.searchsorted(G, cl)]
        bs = XtXi @ X.T @ ys
        Vs = _crv(X, XtXi, ys - X @ bs, cl)
        tu.append([(c @ (bs - b)) / np.sqrt(c @ Vs @ c) for c in C])
        du.append([c @ (bs - b) for c in C])
    return np.array(pv), np.array(tu), np.array(du), C @ V @ C.T


# ---------------------------------------------------------------- wild bootstrap
def test_es_wildboot_equals_wildboot_per_coefficient():
    df = _panel(40, 8, [3] * 8 + [4] * 8 + [6] * 8 + [0] * 16, seed=1)
    es = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(-3, 3))
    r = sl.wildboot(es, draws=499, seed=11)
    fit = es.extra["fit"]
    names = [n for n in fit.coefnames if n.startswith("_es_")]
    assert len(names) == es.rel_time.size
    for j, name in enumerate(names):
        wb = sl.wildboot(fit, param=name, draws=499, seed=11)
        assert r.pvalue[j] == wb.pvalue
        np.testing.assert_allclose([r.ci_low[j], r.ci_high[j]], wb.confint, rtol=1e-12)
        wu = sl.wildboot(fit, param=name, draws=499, seed=11, impose_null=False, confint=False)
        np.testing.assert_allclose(r.tstar[:, j], wu.statistics, rtol=1e-10)
    np.testing.assert_allclose(r.estimate, es.coef, rtol=1e-12)
    np.testing.assert_allclose(r.se, es.se, rtol=1e-10)
    for kind in ("simple", "dynamic"):
        assert r.aggregate(kind).estimate == pytest.approx(es.aggregate(kind).estimate, rel=1e-12)
        assert r.aggregate(kind).se == pytest.approx(es.aggregate(kind).se, rel=1e-10)
    tab = r.tidy()
    assert tab.columns[:2] == ["rel_time", "estimate"]
    assert {"pvalue", "ci_low", "ci_high", "band_low", "band_high"} <= set(tab.columns)
    assert tab.filter(pl.col("rel_time") < 0)["band_low"].null_count() == int((es.rel_time < 0).sum())


@pytest.mark.parametrize("typed", [False, True])
@pytest.mark.parametrize("method", ["twfe", "sunab"])
def test_es_wildboot_full_enumeration_equals_brute_force(small, method, typed, monkeypatch):
    import staggerlab.inference.resampling.es_wildboot as esw
    import staggerlab.inference.resampling.es_wildboot_types as est

    # typed: the per-design-type algebra (8 clusters, 4 types: forced by allowing a type per cluster)
    monkeypatch.setattr(est, "_TYPES_PER_CLUSTER", 1.0 if typed else 0.0)
    seen = []
    monkeypatch.setattr(esw, "cluster_types", lambda *a: seen.append(est.cluster_types(*a)) or seen[-1])
    es = sl.event_study(small, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 2), method=method)
    r = sl.wildboot(es, draws=9999, seed=0, band="all")
    assert (seen[0] is not None) == typed
    assert r.full_enumeration and r.draws == 256
    if method == "twfe":
        names = [n for n in es.extra["fit"].coefnames if n.startswith("_es_")]
        R = np.eye(len(names))
        kinds = ["simple", "dynamic"]
        agg = np.vstack([es.default_weights(k) for k in kinds])
    else:
        names, R = es.extra["cell_names"], es.extra["cell_R"]
        kinds = ["simple", "dynamic", "group"]
        agg = np.vstack([es.extra["cell_weights"](k) for k in kinds])
    contrasts = np.vstack([R, agg])
    pv, tu, du, V = _brute(es, names, contrasts)
    k = es.rel_time.size
    # the contrasts are the event study's own estimates (independent check of the weights)
    y, X, _ = _dummy_design(es, names)
    b = np.linalg.lstsq(X, y, rcond=None)[0][: len(names)]
    np.testing.assert_allclose(R @ b, es.coef, rtol=1e-8)
    for i, kind in enumerate(kinds):
        assert agg[i] @ b == pytest.approx(es.aggregate(kind).estimate, rel=1e-8)
        assert r.aggregate(kind).pvalue == pytest.approx(pv[k + i], abs=1e-12)
    np.testing.assert_allclose(r.pvalue, pv[:k], atol=1e-12)
    # sup-t band over all periods: the 95% quantile of max |t*| over the 256 WCU draws (t's with
    # the fit's CRV1 small-sample factor, read off its standard errors)
    adj = es.se[0] ** 2 / V[0, 0]
    tu = tu / np.sqrt(adj)
    np.testing.assert_allclose(np.sort(np.abs(r.tstar), axis=0), np.sort(np.abs(tu[:, :k]), axis=0), rtol=1e-8,
                               atol=1e-12)
    crit = np.quantile(np.abs(tu[:, :k]).max(axis=1), 0.95, method="inverted_cdf")
    assert r.band_crit == pytest.approx(crit, rel=1e-8)
    np.testing.assert_allclose(r.band_high - r.band_low, 2 * crit * es.se, rtol=1e-8)
    # joint pre-trend test: Wald form of the leads against its WCU distribution
    lead = np.flatnonzero(es.rel_time < 0)
    Vp = np.linalg.pinv(adj * V[np.ix_(lead, lead)])
    w_obs = es.coef[lead] @ Vp @ es.coef[lead]
    w = np.einsum("bi,ij,bj->b", du[:, lead], Vp, du[:, lead])
    assert r.pretrend_pvalue == pytest.approx(np.mean(w >= w_obs * (1 - 1e-8)), abs=1e-12)


def test_es_wildboot_interval_inverts_brute_force_test(small):
    es = sl.event_study(small, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 2))
    r = sl.wildboot(es, draws=9999, seed=0)
    names = [n for n in es.extra["fit"].coefnames if n.startswith("_es_")]
    j = int(np.flatnonzero(es.rel_time == 0)[0])
    c = np.eye(len(names))[j][None, :]
    eps = 1e-6 * es.se[j]
    for end, inward in ((r.ci_low[j], +1), (r.ci_high[j], -1)):
        assert _brute(es, names, c, h0=end + inward * eps)[0][0] >= 0.05
        assert _brute(es, names, c, h0=end - inward * eps)[0][0] < 0.05


def test_es_wildboot_n_jobs_invariant_and_wcu():
    df = _panel(30, 7, [3] * 8 + [5] * 8 + [0] * 14, seed=2)
    es = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 3), method="sunab")
    a = sl.wildboot(es, draws=9999, seed=4, weights="webb", n_jobs=1)
    b = sl.wildboot(es, draws=9999, seed=4, weights="webb", n_jobs=2, backend="threading")
    np.testing.assert_array_equal(a.tstar, b.tstar)
    np.testing.assert_array_equal(a.pvalue, b.pvalue)
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    assert a.band_crit == b.band_crit and a.pretrend_pvalue == b.pretrend_pvalue
    u = sl.wildboot(es, draws=999, seed=4, impose_null=False)
    # WCU p-values are the share of |t*| >= |t| of the band's own draws
    t = es.coef / es.se
    np.testing.assert_allclose(u.pvalue, [np.mean(np.abs(u.tstar[:, j]) >= abs(t[j]) * (1 - 1e-10))
                                          for j in range(t.size)], atol=1e-12)


def test_es_wildboot_strategies_agree(monkeypatch):
    """Per-design-type products, one wide product, and per-combination passes (no Gram table) and
    runners give the same numbers."""
    import staggerlab.inference.resampling.es_wildboot as esw
    import staggerlab.inference.resampling.wildboot_algebra as wa

    df = _panel(30, 7, [3] * 8 + [5] * 8 + [0] * 14, seed=6)
    es = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 3), method="sunab")
    ref = sl.wildboot(es, draws=299, seed=2, weights="mammen")  # 30 clusters of 3 design types: typed algebra
    monkeypatch.setattr(esw, "cluster_types", lambda *a: None)
    dense = sl.wildboot(es, draws=299, seed=2, weights="mammen")  # one wide product (BatchRunner)
    np.testing.assert_allclose(dense.tstar, ref.tstar, rtol=1e-9)
    np.testing.assert_allclose(dense.ci_high, ref.ci_high, rtol=1e-8)
    np.testing.assert_allclose(dense.pvalue, ref.pvalue)
    monkeypatch.setattr(wa, "GRAM_BUDGET", 0)
    monkeypatch.setattr(esw, "batchable", lambda algs: False)
    alt = sl.wildboot(es, draws=299, seed=2, weights="mammen")
    np.testing.assert_allclose(alt.tstar, ref.tstar, rtol=1e-9)
    np.testing.assert_allclose(alt.ci_low, ref.ci_low, rtol=1e-8)
    np.testing.assert_allclose(alt.pvalue, ref.pvalue)
    assert alt.band_crit == pytest.approx(ref.band_crit, rel=1e-9)


def test_es_wildboot_refusals(small):
    es = sl.event_study(small, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 2),
                        method="imputation", cluster="time")
    with pytest.raises(WildBootError, match="each unit inside one cluster"):
        sl.wildboot(es, draws=99)
    es = sl.event_study(small, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 2))
    with pytest.raises(WildBootError, match="param"):
        sl.wildboot(es, param="x")
    with pytest.raises(WildBootError, match="band"):
        sl.wildboot(es, band="pre")
    with pytest.raises(WildBootError, match="not available"):
        sl.wildboot(es, draws=99).aggregate("calendar")


def _imp_refit(df, y, kw):
    """Every statistic of an imputation event study refitted on outcome ``y``: (estimates, ses)."""
    es = sl.event_study(df.with_columns(pl.Series("_y", y)), y="_y", **kw)
    aggs = [es.aggregate(kind) for kind in ("simple", "dynamic", "group", "calendar")]
    return np.r_[es.coef, [a.estimate for a in aggs]], np.r_[es.se, [a.se for a in aggs]]


def _imp_residuals(df, es, u1, weights=None):
    """Each statistic's bootstrap residuals and its restricted shift (per unit of
    ``estimate - h0``), built from the first-stage residuals by polars (weighted) group means."""
    f = df.with_columns(pl.Series("u1", u1), pl.Series("code", es.extra["codes"]),
                        ((pl.col("cohort") > 0) & (pl.col("time") >= pl.col("cohort"))).alias("D"),
                        (pl.col(weights) if weights else pl.lit(1.0)).alias("_w"))
    D = f["D"].to_numpy()
    out = []

    def grouping(key, members):
        g = f.with_columns(pl.when(members).then(pl.col(key)).otherwise(None).alias("_g"))
        means = g.filter(pl.col("_g").is_not_null()).group_by("_g").agg(
            ((pl.col("u1") * pl.col("_w")).sum() / pl.col("_w").sum()).alias("m"), pl.col("_w").sum().alias("n"))
        g = g.join(means, on="_g", how="left", maintain_order="left")
        e = np.where(D, 0.0, u1)
        treated_in = D & g["_g"].is_not_null().to_numpy()
        e[treated_in] = u1[treated_in] - g["m"].to_numpy()[treated_in]
        return e, g["_g"].to_numpy(), dict(zip(means["_g"].to_list(), means["n"].to_list()))

    e_es, code, n_es = grouping("code", pl.col("code") >= 0)
    rel = es.rel_time
    for j in range(rel.size):  # coefficients: shift their own treated rows (leads: none)
        out.append((e_es, (code == j).astype(float) if rel[j] >= 0 else None))
    post = np.flatnonzero(rel >= 0)
    n = np.array([n_es[j] for j in post], float)
    pi = np.full(post.size, 1.0 / post.size)
    d = (pi / n) / (pi ** 2 @ (1 / n))
    out_dyn = (e_es, sum(dj * (code == j) for dj, j in zip(d, post)))
    e_s, _, _ = grouping("D", pl.col("D"))
    simple = (e_s, D.astype(float))
    aggs = [simple, out_dyn]
    for key in ("cohort", "time"):
        e_g, gcode, n_g = grouping(key, pl.col("D"))
        levels = sorted(n_g)
        if key == "cohort":
            units = f.filter(pl.col("D")).group_by("cohort").agg(pl.col("unit").n_unique())
            nu = dict(units.iter_rows())
            pi = np.array([nu[g] for g in levels], float)
        else:
            pi = np.ones(len(levels))
        pi /= pi.sum()
        n = np.array([n_g[g] for g in levels], float)
        d = (pi / n) / (pi ** 2 @ (1 / n))
        aggs.append((e_g, sum(dj * (gcode == g) for dj, g in zip(d, levels))))
    return out + aggs


def _imp_design(kind):
    """The panel and event-study options of the brute-force checks: a balanced panel clustered
    by unit, or an unbalanced one with a control, weights and clusters of two units."""
    df = _panel(12, 7, [3, 3, 3, 4, 4, 5, 5, 6, 0, 0, 0, 0], seed=8)
    kw = dict(unit="unit", time="time", cohort="cohort", window=(-2, 2), method="imputation")
    if kind == "plain":
        return df, kw, None, df["unit"].to_numpy()
    rng = np.random.default_rng(11)
    df = df.with_columns(pl.Series("x", rng.normal(size=df.height)), pl.Series("w", rng.uniform(0.5, 2, df.height)),
                         (pl.col("unit") // 2).alias("pair"))
    df = df.with_columns(pl.col("y") + 0.7 * pl.col("x")).filter(pl.Series(rng.uniform(size=df.height) > 0.08))
    kw.update(controls=["x"], weights="w", cluster="pair")
    return df, kw, "w", df["pair"].to_numpy()


@pytest.mark.parametrize("impose_null", [False, True])
@pytest.mark.parametrize("design", ["plain", "controls_weights_pairs"])
def test_es_wildboot_imputation_equals_brute_force_refits(impose_null, design):
    """Each draw's bootstrap t of every coefficient and aggregate of an imputation
    event study equals a refit of ``event_study(method="imputation")`` on
    ``y* = y - e + e v`` (WCU) or with the restricted residuals ``e + (estimate -
    h0) d`` at two null values (WCR), with ``e`` and ``d`` built here from the
    first-stage residuals; p-values and intervals follow from those t's."""
    from staggerlab.inference.resampling.es_wildboot_imputation import imputation_wildboot

    df, kw, weights, cl = _imp_design(design)
    es = sl.event_study(df, y="y", **kw)
    imp = es.extra["imputation"]
    assert imp.frame.height == df.height  # no row dropped: rows align
    G = int(cl.max()) + 1
    V = np.random.default_rng(3).choice([-1.0, 1.0], size=(G, 30))
    r = imputation_wildboot(es, 0, "rademacher", 0, (1, None), V, impose_null, [])
    est, se = _imp_refit(df, df["y"].to_numpy(), kw)
    np.testing.assert_allclose(r["estimate"], est, rtol=1e-12)
    assert r["kinds"] == ("simple", "dynamic", "group", "calendar") and r["n_boot"] == G
    y = df["y"].to_numpy()
    v = V[cl]
    resid = _imp_residuals(df, es, imp.u1, weights)
    assert r["restricted"] == [impose_null and d is not None for _, d in resid]
    for j, ((e, d), pc) in enumerate(zip(resid, r["pieces"])):
        for h0 in ((0.0, 0.7 * est[j] - 0.4) if r["restricted"][j] else (None,)):
            eR = e if h0 is None else e + (est[j] - h0) * d
            base = _imp_refit(df, y - eR, kw)[0][j]
            if h0 is not None:
                assert base == pytest.approx(h0, abs=1e-10)  # the restricted DGP satisfies the null
                n0, n1, a, b, c = pc
                dl = est[j] - h0
                tstar = (n0 + dl * n1) / np.sqrt(a + 2 * dl * b + dl * dl * c)
            else:
                tstar = pc[0] / np.sqrt(pc[1])
            for draw in range(0, 30, 6):
                bs, ses = _imp_refit(df, y - eR + eR * v[:, draw], kw)
                assert tstar[draw] == pytest.approx((bs[j] - base) / ses[j], rel=1e-8, abs=1e-10)


def test_es_wildboot_imputation_result():
    """The public result: p-values and intervals from the bootstrap t's, every aggregate, the study's size."""
    df = _panel(12, 7, [3, 3, 3, 4, 4, 5, 5, 6, 0, 0, 0, 0], seed=8)
    kw = dict(unit="unit", time="time", cohort="cohort", window=(-2, 2), method="imputation")
    es = sl.event_study(df, y="y", **kw)
    V = np.random.default_rng(3).choice([-1.0, 1.0], size=(12, 40))
    r = sl.wildboot(es, weight_matrix=V, impose_null=False)
    assert not r.impose_null and r.draws == 40
    t = np.abs(r.tstar)
    np.testing.assert_allclose(r.pvalue, np.mean(t >= np.abs(es.coef / es.se) * (1 - 1e-10), axis=0))
    q = np.quantile(t, 0.95, axis=0, method="inverted_cdf")
    np.testing.assert_allclose(r.ci_high - r.ci_low, 2 * q * es.se, rtol=1e-8)
    for kind in ("simple", "dynamic", "group", "calendar"):
        agg = r.aggregate(kind)
        assert agg.estimate == pytest.approx(es.aggregate(kind).estimate, rel=1e-12)
        assert 0 < agg.pvalue <= 1 and agg.confint[0] < agg.estimate < agg.confint[1]
    up = sl.wildboot(es, weight_matrix=V, impose_null=False, alternative="greater")
    np.testing.assert_allclose(up.pvalue, np.mean(r.tstar >= (es.coef / es.se) * (1 - 1e-10), axis=0))
    assert np.all(np.isinf(up.ci_high))
    wcr = sl.wildboot(es, draws=999, seed=4)
    assert wcr.impose_null and wcr.bootstrap_type == "WCR"
    post = es.rel_time >= 0
    # WCR intervals by test inversion: the p-value at each end is the level's complement
    for j in np.flatnonzero(post):
        for end in (wcr.ci_low[j], wcr.ci_high[j]):
            assert wcr.pvalue_at(int(es.rel_time[j]), end) == pytest.approx(0.05, abs=0.01)
    assert any("lead coefficients" in n for n in wcr.notes)
    # few clusters: every Rademacher vector enumerated, whatever the seed
    small = sl.event_study(_panel(8, 6, [3, 3, 4, 4, 5, 0, 0, 0], seed=5), y="y", **{k: v for k, v in kw.items()
                                                                                      if k != "window"}, window=(-2, 2))
    with warnings.catch_warnings():  # 5 treated of 8 clusters: some WCR intervals are unbounded
        warnings.simplefilter("ignore", sl.errors.UnboundedIntervalWarning)
        e1, e2 = sl.wildboot(small, draws=999, seed=1), sl.wildboot(small, draws=999, seed=2)
    assert e1.full_enumeration and e1.draws == 2**8
    np.testing.assert_array_equal(e1.pvalue, e2.pvalue)
    assert e1.aggregate("calendar").confint == e2.aggregate("calendar").confint
    # same numbers for any n_jobs / backend
    again = sl.wildboot(es, draws=999, seed=4, n_jobs=2, backend="threading")
    np.testing.assert_array_equal(again.pvalue, wcr.pvalue)
    assert again.aggregate("group").confint == wcr.aggregate("group").confint


# ---------------------------------------------------------------- pre-trend power
def _es(rel, V, ref=-1):
    from staggerlab.inference.did.event_study import EventStudyResult

    return EventStudyResult(rel, np.zeros(len(rel)), np.asarray(V), ref, "twfe", 100)


def test_pretrend_power_one_lead_closed_form():
    from scipy import stats

    # leads: -3 (one coefficient); posts 0, 1; reference -1
    V = np.array([[0.25, 0.10, 0.05], [0.10, 0.36, 0.12], [0.05, 0.12, 0.49]])
    pp = sl.pretrend_power(_es([-3, 0, 1], V))
    z = stats.norm.ppf(0.975)
    se = np.sqrt(np.diag(V))
    for slope in (0.0, 0.2, -0.35):
        m = slope * (-3 + 1) / se[0]
        assert pp.power(slope) == pytest.approx(stats.norm.sf(z - m) + stats.norm.cdf(-z - m), abs=1e-12)
    s80 = pp.slope(0.8)
    assert pp.power(s80) == pytest.approx(0.8, abs=1e-8) and s80 > 0
    # conditional bias and coverage of the post coefficients from the truncated bivariate normal
    slope = 0.3
    d = slope * (np.array([-3, 0, 1]) + 1)
    lo, hi = -z * se[0] - d[0], z * se[0] - d[0]  # e_pre range that passes
    e_pre = stats.truncnorm.mean(lo / se[0], hi / se[0], scale=se[0])
    ppass = stats.norm.cdf(hi / se[0]) - stats.norm.cdf(lo / se[0])
    tab = pp.conditional(slope, draws=400_000, seed=1)
    zc = stats.norm.ppf(0.975)
    for j, t in enumerate([0, 1]):
        bias = d[1 + j] + V[0, 1 + j] / V[0, 0] * e_pre
        C = V[np.ix_([0, 1 + j], [0, 1 + j])]
        box = stats.multivariate_normal.cdf([hi, zc * se[1 + j] - d[1 + j]], cov=C,
                                            lower_limit=[lo, -zc * se[1 + j] - d[1 + j]])
        row = tab.filter(pl.col("rel_time") == t)
        assert row["bias"][0] == pytest.approx(bias, abs=1e-2)
        assert row["coverage"][0] == pytest.approx(box / ppass, abs=1e-2)
    assert tab["pass_probability"][0] == pytest.approx(ppass, abs=1e-2)


@pytest.mark.parametrize("test", ["individual", "wald"])
def test_pretrend_power_matches_simulation(test):
    rng = np.random.default_rng(3)
    rel = [-4, -3, -2, 0, 1, 2]
    M = rng.normal(size=(6, 6))
    V = 0.04 * (M @ M.T / 6 + np.eye(6))
    pp = sl.pretrend_power(_es(rel, V), test=test)
    slope = pp.slope(0.5)
    assert pp.power(slope) == pytest.approx(0.5, abs=1e-7)
    b = rng.multivariate_normal(pp.trend(slope), V, size=200_000)
    pre = b[:, :3]
    if test == "individual":
        reject = (np.abs(pre / np.sqrt(np.diag(V))[:3]) > 1.959963984540054).any(axis=1)
    else:
        from scipy import stats

        reject = np.einsum("bi,ij,bj->b", pre, np.linalg.inv(V[:3, :3]), pre) > stats.chi2.ppf(0.95, 3)
    for s in (slope, 0.5 * slope, 2 * slope):
        r = reject if s == slope else None
        if r is None:
            bs = rng.multivariate_normal(pp.trend(s), V, size=200_000)[:, :3]
            r = ((np.abs(bs / np.sqrt(np.diag(V))[:3]) > 1.959963984540054).any(axis=1) if test == "individual"
                 else pp.passes(np.column_stack([bs, np.zeros((bs.shape[0], 3))])) == 0)
        assert pp.power(s) == pytest.approx(r.mean(), abs=1e-2)
    assert pp.tidy()["slope"][1] > pp.tidy()["slope"][0]
    pp.plot()


def test_pretrend_power_refusals():
    V = np.eye(3) * 0.1
    with pytest.raises(sl.errors.EventStudyError, match="no lead"):
        sl.pretrend_power(_es([0, 1, 2], V))
    with pytest.raises(sl.errors.ArgumentError, match="size"):
        sl.pretrend_power(_es([-2, 0, 1], V), level=0.95 + 0.1)
    with pytest.raises(sl.errors.ArgumentError, match="power"):
        sl.pretrend_power(_es([-2, 0, 1], V)).slope(0.01)


# ---------------------------------------------------------------- randomization inference
@pytest.mark.parametrize("scheme,method", [("units+timing", "twfe"), ("units", "twfe"), ("timing", "twfe"),
                                           ("units+timing", "sunab"), ("units", "sunab")])
def test_es_placebo_equals_brute_force_refits(scheme, method):
    from staggerlab.inference.resampling.es_placebo import event_study_placebo

    rng = np.random.default_rng(0)
    df = _panel(36, 8, [3] * 8 + [5] * 8 + [6] * 6 + [0] * 14, seed=3)
    df = df.with_columns(pl.Series("x", rng.normal(size=df.height))).filter(
        pl.Series(rng.random(df.height) > 0.08))  # unbalanced, with a control
    kw = dict(y="y", unit="unit", time="time", controls=["x"], window=(-3, 2), method=method)
    es = sl.event_study(df, cohort="cohort", **kw)
    r = event_study_placebo(es, draws=40, scheme=scheme, seed=5, keep_draws=True)
    checked = 0
    for i in range(8):
        g = dict(zip(r.units.tolist(), r.adoption[i].tolist()))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            e2 = sl.event_study(df.with_columns(pl.col("unit").replace_strict(g, return_dtype=pl.Int64)
                                                .alias("cohort")), cohort="cohort", **kw)
        if any("dropped" in str(w.message) for w in caught):  # Sun-Abraham dropped a cohort: left out
            assert not np.isfinite(r.statistics[i]).any()
            continue
        got = dict(zip(e2.rel_time.tolist(), e2.coef))
        for j, t in enumerate(es.rel_time.tolist()):
            if t in got:
                assert r.statistics[i, j] == pytest.approx(got[t], rel=1e-8, abs=1e-10)
            else:  # no unit reaches this event time in the draw
                assert np.isnan(r.statistics[i, j])
        for kind in r.aggregates:
            assert r.aggregates[kind][3][i] == pytest.approx(e2.aggregate(kind).estimate, rel=1e-8)
        checked += 1
    assert checked >= 4
    # p-values: (1 + count) / (1 + valid) of |placebo| >= |observed|
    s = r.statistics[:, 0]
    s = s[np.isfinite(s)]
    assert r.pvalue[0] == pytest.approx((1 + np.sum(np.abs(s) >= abs(es.coef[0]) * (1 - 1e-10))) / (1 + s.size))
    assert r.pvalue_ci[0, 0] <= r.pvalue[0] <= r.pvalue_ci[0, 1] + 1 / (1 + s.size)


def test_es_placebo_dispatch_jobs_and_fisher():
    df = _panel(40, 8, [3] * 10 + [5] * 10 + [0] * 20, seed=4)
    df = df.with_columns(pl.col("y") + 3.0 * ((pl.col("cohort") > 0) & (pl.col("time") >= pl.col("cohort"))))
    es = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 3))
    a = sl.placebo(es, draws=300, scheme="units", seed=1)
    b = sl.placebo(es, draws=300, scheme="units", seed=1, n_jobs=2, backend="threading")
    np.testing.assert_array_equal(a.statistics, b.statistics)
    # the Fisher test of the simple aggregate: the effect is large, permuted timing rarely matches it
    assert a.fisher_pvalue == a.aggregates["simple"][1] < 0.05
    assert set(a.tidy().columns) >= {"rel_time", "estimate", "pvalue", "pvalue_ci_low", "pvalue_ci_high"}
    with pytest.raises(sl.errors.ArgumentError, match="param"):
        sl.placebo(es, param="x")
    es_st = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", window=(-2, 3),
                           method="stacked")
    with pytest.raises(sl.errors.EventStudyError, match="imputation"):
        sl.placebo(es_st, draws=10)


@pytest.mark.parametrize("scheme", ["units+timing", "units", "timing"])
def test_es_placebo_imputation_equals_brute_force_refits(scheme):
    """Each draw's imputation event study and aggregates equal a refit of
    ``event_study(method="imputation")`` on the re-assigned data (unbalanced, a control)."""
    from staggerlab.inference.resampling.es_placebo import event_study_placebo

    rng = np.random.default_rng(1)
    df = _panel(36, 8, [3] * 8 + [5] * 8 + [7] * 6 + [0] * 14, seed=8)
    df = df.with_columns(pl.Series("x", rng.normal(size=df.height))).filter(
        pl.Series(rng.random(df.height) > 0.1))
    kw = dict(y="y", unit="unit", time="time", controls=["x"], window=(-3, 2), method="imputation")
    es = sl.event_study(df, cohort="cohort", **kw)
    r = event_study_placebo(es, draws=30, scheme=scheme, seed=2, keep_draws=True)
    left_out = 0
    for i in range(30):
        g = dict(zip(r.units.tolist(), r.adoption[i].tolist()))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            e2 = sl.event_study(df.with_columns(pl.col("unit").replace_strict(g, return_dtype=pl.Int64)
                                                .alias("cohort")), cohort="cohort", **kw)
        if not np.isfinite(r.aggregates["simple"][3][i]):  # a period without untreated rows: left out
            assert any("dropped" in str(w.message) for w in caught)
            left_out += 1
            continue
        got = dict(zip(e2.rel_time.tolist(), e2.coef))
        for j, t in enumerate(es.rel_time.tolist()):
            if t in got:
                assert r.statistics[i, j] == pytest.approx(got[t], rel=1e-10, abs=1e-10)
            else:
                assert np.isnan(r.statistics[i, j])
        for kind in ("simple", "dynamic"):
            assert r.aggregates[kind][3][i] == pytest.approx(e2.aggregate(kind).estimate, rel=1e-10, abs=1e-10)
    assert left_out < 10
    s = r.aggregates["simple"][3]
    s = s[np.isfinite(s)]
    est = es.aggregate("simple").estimate
    assert r.fisher_pvalue == pytest.approx((1 + np.sum(np.abs(s) >= abs(est) * (1 - 1e-10))) / (1 + s.size))


def test_es_placebo_imputation_leaves_out_draws_without_untreated_period():
    """Six of 12 units lack period 6 and only the 3 never-treated units keep it untreated:
    a draw giving them treated adoption times leaves period 6 without untreated rows,
    the refit drops its treated rows, and the draw is left out (every other draw is kept)."""
    from staggerlab.inference.resampling.es_placebo import event_study_placebo

    df = _panel(12, 6, [3] * 3 + [4] * 3 + [3] * 3 + [0] * 3, seed=4)
    df = df.filter(~((pl.col("unit") < 6) & (pl.col("time") == 6)))
    kw = dict(y="y", unit="unit", time="time", window=(-2, 2), method="imputation")
    es = sl.event_study(df, cohort="cohort", **kw)
    r = event_study_placebo(es, draws=60, scheme="units", seed=1, keep_draws=True)
    has6 = df.filter(pl.col("time") == 6)["unit"].unique().to_numpy()
    col = np.searchsorted(r.units, has6)
    expect_out = (r.adoption[:, col] > 0).all(axis=1)  # every unit observed in period 6 treated by then
    assert expect_out.any() and not expect_out.all()
    np.testing.assert_array_equal(~np.isfinite(r.aggregates["simple"][3]), expect_out)
    assert r.n_valid.max() <= 60 - expect_out.sum()
    i = int(np.flatnonzero(expect_out)[0])
    g = dict(zip(r.units.tolist(), r.adoption[i].tolist()))
    with pytest.warns(UserWarning, match="dropped"):
        sl.event_study(df.with_columns(pl.col("unit").replace_strict(g, return_dtype=pl.Int64).alias("cohort")),
                       cohort="cohort", **kw)


def test_es_placebo_imputation_refusals():
    df = _panel(20, 6, [3] * 6 + [0] * 14, seed=9).with_columns(w=pl.lit(2.0))
    kw = dict(y="y", unit="unit", time="time", cohort="cohort", window=(-2, 2), method="imputation")
    with pytest.raises(sl.errors.EventStudyError, match="weighted"):
        sl.placebo(sl.event_study(df, weights="w", **kw), draws=10)
    # a unit treated from its first period: the fit drops its rows, a refit per draw would differ
    early = df.with_columns(pl.when(pl.col("unit") == 0).then(1).otherwise(pl.col("cohort")).alias("cohort"))
    with pytest.warns(UserWarning, match="dropped"):
        es = sl.event_study(early, **kw)
    with pytest.raises(sl.errors.EventStudyError, match="dropped"):
        sl.placebo(es, draws=10)
