"""Wild cluster bootstrap: against the ``wildboottest`` package, against a
brute-force per-draw refit with explicit dummies, and its own contracts
(test inversion, reproducibility across n_jobs, errors)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import ArgumentError, StaggerlabError, VcovError
from staggerlab.inference.resampling.wildboot import (
    CI_XTOL,
    WildBootError,
    draw_weights,
    enumeration_weights,
    wildboot,
)
from staggerlab.inference.resampling.wildboot_design import cluster_codes

#: bootstrap t's and p-values against wildboottest / the brute-force reference
EXACT_TOL = 1e-10
#: the CI endpoint is probed this many root-finder tolerances away
CI_PROBE = 20.0


# ------------------------------------------------------------------ data
def _panel(n_units: int, n_periods: int, seed: int) -> pl.DataFrame:
    df = sl.simulate.staggered(n_units, n_periods, n_controls=2, seed=seed, cohort_shares=None)
    rng = np.random.default_rng(seed)
    return df.with_columns(
        state=(pl.col("unit").rank("dense") - 1) // 2,  # two units per state
        w=pl.Series(rng.uniform(0.5, 3.0, df.height)),
    )


def _with_dummies(df: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Add explicit unit and time dummies (first level of each dropped)."""
    units = sorted(df["unit"].unique().to_list())
    times = sorted(df["time"].unique().to_list())
    cols = [(pl.col("unit") == u).cast(pl.Float64).alias(f"u_{u}") for u in units[1:]]
    cols += [(pl.col("time") == t).cast(pl.Float64).alias(f"t_{t}") for t in times[1:]]
    out = df.with_columns(cols)
    return out, [c.meta.output_name() for c in cols]


def _wbt(X, y, cl, j, *, impose_null, B=9999, V=None, weights_type="rademacher"):
    """Run wildboottest's WildboottestCL step by step (optionally with injected weights)."""
    from wildboottest.wildboottest import WildboottestCL

    R = np.zeros(X.shape[1])
    R[j] = 1.0
    wb = WildboottestCL(X=X, Y=y, cluster=cl, R=R, B=B, seed=1, parallel=False)
    wb.get_scores(bootstrap_type="11", impose_null=impose_null)
    if V is None:
        wb.get_weights(weights_type=weights_type)
    else:
        wb.v, wb.B = V, V.shape[1]
    wb.get_numer()
    wb.get_denom()
    wb.get_tboot()
    wb.get_vcov()
    wb.get_tstat()
    wb.get_pvalue(pval_type="two-tailed")
    return wb


def _ssc_factor(fit, n_cols_wbt: int) -> float:
    """wildboottest's CRV1 uses (N-1)/(N-k) with k = its number of columns;
    pyfixest/staggerlab use (N-1)/(N-df_k). t's scale by sqrt of the ratio
    (p-values are scale-invariant)."""
    N = fit.nobs
    df_k = fit.design.df_k(fit.vcov_spec)
    return math.sqrt((N - df_k) / (N - n_cols_wbt))


def _assert_same_pvalue(wb, ref):
    """Symmetric p-values agree. Under WCR the sign vectors v = +-1 reproduce
    +-t exactly, so those draws tie with the observed t and wildboottest's
    strict ``<`` counts them or not depending on rounding; staggerlab counts
    ties as extreme. Away from ties the p-values are identical."""
    tb, t = np.abs(ref.t_boot), abs(float(ref.t_stat))
    ties = np.isclose(tb, t, rtol=1e-9, atol=0.0)
    p_conservative = np.mean((tb > t) | ties)
    assert abs(wb.pvalue - p_conservative) < EXACT_TOL
    assert abs(wb.pvalue - ref.pvalue) <= ties.mean() + EXACT_TOL
    if not ties.any():
        assert abs(wb.pvalue - ref.pvalue) < EXACT_TOL


@pytest.fixture(scope="module")
def small():
    """8 clusters (units), 6 periods: 2^8 = 256 sign vectors."""
    df, dummies = _with_dummies(_panel(8, 6, seed=3))
    return df, dummies


# ------------------------------------------- full enumeration vs wildboottest
@pytest.mark.parametrize("impose_null", [True, False])
def test_enumeration_matches_wildboottest_two_way_fe(small, impose_null):
    """unit + time FE, clustered by unit (time not nested): absorbed fit, explicit-dummy
    fit and wildboottest on the explicit dummies all agree."""
    df, dummies = small
    absorbed = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})
    explicit = sl.feols("y ~ treat + x1 + x2 + " + " + ".join(dummies), df, vcov={"CRV1": "unit"})
    wa = wildboot(absorbed, param="treat", impose_null=impose_null, confint=False)
    we = wildboot(explicit, param="treat", impose_null=impose_null, confint=False)
    assert wa.full_enumeration and wa.draws == 2**8 and "full enumeration" in wa.note

    X = np.column_stack([np.ones(df.height)] + [df[c].to_numpy().astype(float) for c in ["treat", "x1", "x2", *dummies]])
    cl = absorbed.design.clusters["unit"]
    ref = _wbt(X, df["y"].to_numpy(), cl, 1, impose_null=impose_null)
    assert ref.full_enumeration

    fa, fe = _ssc_factor(absorbed, X.shape[1]), _ssc_factor(explicit, X.shape[1])
    np.testing.assert_allclose(wa.statistics, ref.t_boot * fa, rtol=EXACT_TOL, atol=EXACT_TOL)
    np.testing.assert_allclose(we.statistics, ref.t_boot * fe, rtol=EXACT_TOL, atol=EXACT_TOL)
    assert abs(wa.tstat - float(ref.t_stat) * fa) < EXACT_TOL
    assert abs(wa.tstat - absorbed.tstat()["treat"]) < EXACT_TOL
    _assert_same_pvalue(wa, ref)
    _assert_same_pvalue(we, ref)
    if impose_null:  # the tie draws are there: v = +-1 reproduce +-t
        assert np.isclose(np.abs(wa.statistics), abs(wa.tstat), rtol=1e-9).sum() == 2
    # the two staggerlab fits differ only by the small-sample factor of their df_k
    np.testing.assert_allclose(wa.statistics / fa, we.statistics / fe, rtol=EXACT_TOL, atol=EXACT_TOL)


@pytest.mark.parametrize("impose_null", [True, False])
def test_enumeration_matches_wildboottest_on_fwl_data_nested_fe(small, impose_null):
    """Unit FE nested in the unit clusters: wildboottest on the FWL-demeaned data is exact."""
    df, dummies = small
    fit = sl.feols("y ~ treat + x1 + x2 | unit", df, vcov={"CRV1": "unit"})
    wb = wildboot(fit, param="treat", impose_null=impose_null, confint=False)
    d = fit.design
    ref = _wbt(d.Xw, fit.yw, d.clusters["unit"], 0, impose_null=impose_null)
    f = _ssc_factor(fit, d.Xw.shape[1])
    np.testing.assert_allclose(wb.statistics, ref.t_boot * f, rtol=EXACT_TOL, atol=EXACT_TOL)
    _assert_same_pvalue(wb, ref)
    # and with explicit unit dummies
    udum = [c for c in dummies if c.startswith("u_")]
    X = np.column_stack([np.ones(df.height)] + [df[c].to_numpy().astype(float) for c in ["treat", "x1", "x2", *udum]])
    ref2 = _wbt(X, df["y"].to_numpy(), d.clusters["unit"], 1, impose_null=impose_null)
    np.testing.assert_allclose(wb.statistics, ref2.t_boot * _ssc_factor(fit, X.shape[1]), rtol=EXACT_TOL, atol=EXACT_TOL)
    _assert_same_pvalue(wb, ref2)


def test_fwl_shortcut_is_not_exact_when_fe_not_nested(small):
    """Why non-nested FEs stay regressors: bootstrapping the FWL-demeaned data
    (what a plain wildboottest call on demeaned data does) changes the
    bootstrap variance when the time FE is not nested in the clusters."""
    df, _ = small
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})
    wb = wildboot(fit, param="treat", confint=False)
    d = fit.design
    ref = _wbt(d.Xw, fit.yw, d.clusters["unit"], 0, impose_null=True)
    f = _ssc_factor(fit, d.Xw.shape[1])
    assert np.max(np.abs(wb.statistics - ref.t_boot * f)) > 1e-4


@pytest.mark.parametrize("weights_type", ["rademacher", "mammen", "webb", "norm"])
@pytest.mark.parametrize("impose_null", [True, False])
def test_injected_weights_match_wildboottest(small, weights_type, impose_null):
    """Same weight matrix (drawn by wildboottest's own samplers) -> same bootstrap t's."""
    from wildboottest.weights import draw_weights as wbt_draw

    df, dummies = small
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})
    V, B = wbt_draw(weights_type, False, 8, 300, np.random.default_rng(7))
    wb = wildboot(fit, param="treat", impose_null=impose_null, confint=False, weight_matrix=V)
    X = np.column_stack([np.ones(df.height)] + [df[c].to_numpy().astype(float) for c in ["treat", "x1", "x2", *dummies]])
    ref = _wbt(X, df["y"].to_numpy(), fit.design.clusters["unit"], 1, impose_null=impose_null, V=V)
    f = _ssc_factor(fit, X.shape[1])
    np.testing.assert_allclose(wb.statistics, ref.t_boot * f, rtol=EXACT_TOL, atol=EXACT_TOL)
    _assert_same_pvalue(wb, ref)


# ----------------------------------------- brute force: refit every draw
def _brute_force(df, fit, *, param, h0, impose_null, boot, parts, V, weights=None):
    """Per draw: build y*, refit with explicit unit/time dummies by least squares,
    compute CRV1 (one- or two-way) with the fit's small-sample factor."""
    units = np.unique(df["unit"].to_numpy(), return_inverse=True)[1]
    times = np.unique(df["time"].to_numpy(), return_inverse=True)[1]
    names = ["treat", "x1", "x2"]
    X = np.column_stack(
        [df[c].to_numpy().astype(float) for c in names]
        + [np.ones(df.height)]
        + [(units == u).astype(float) for u in range(1, units.max() + 1)]
        + [(times == t).astype(float) for t in range(1, times.max() + 1)]
    )
    y = df["y"].to_numpy().astype(float)
    sw = np.sqrt(df[weights].to_numpy()) if weights else np.ones(df.height)
    Xs, ys = X * sw[:, None], y * sw
    p = names.index(param)
    bhat = np.linalg.lstsq(Xs, ys, rcond=None)[0]
    if impose_null:
        others = [j for j in range(X.shape[1]) if j != p]
        g = np.linalg.lstsq(Xs[:, others], ys - Xs[:, p] * h0, rcond=None)[0]
        b0 = np.zeros(X.shape[1])
        b0[others], b0[p] = g, h0
    else:
        b0 = bhat
    u = ys - Xs @ b0
    bread = np.linalg.inv(Xs.T @ Xs)
    N = df.height
    df_k = fit.design.df_k(fit.vcov_spec)
    G = min(int(c.max()) + 1 for c, _ in parts)
    adj = (N - 1) / (N - df_k) * G / (G - 1)
    center = h0 if impose_null else bhat[p]
    out = np.empty(V.shape[1])
    for b in range(V.shape[1]):
        ystar = Xs @ b0 + u * V[boot, b]
        bb = bread @ (Xs.T @ ystar)
        ub = ystar - Xs @ bb
        sc = Xs * ub[:, None]
        meat = np.zeros((X.shape[1], X.shape[1]))
        for codes, sign in parts:
            S = np.zeros((codes.max() + 1, X.shape[1]))
            np.add.at(S, codes, sc)
            meat += sign * S.T @ S
        var = adj * (bread @ meat @ bread)[p, p]  # two-way CRV1 can be negative
        out[b] = (bb[p] - center) / math.sqrt(var) if var > 0 else math.nan
    return out


@pytest.fixture(scope="module")
def medium():
    return _panel(12, 5, seed=8)


@pytest.mark.parametrize("impose_null", [True, False])
def test_brute_force_weighted_h0(medium, impose_null):
    df = medium
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"}, weights="w")
    V = draw_weights("webb", 12, 60, np.random.default_rng(1))
    wb = wildboot(fit, param="treat", h0=0.4, impose_null=impose_null, confint=False, weight_matrix=V)
    cl = fit.design.clusters["unit"]
    ref = _brute_force(df, fit, param="treat", h0=0.4, impose_null=impose_null, boot=cl, parts=[(cl, 1.0)],
                       V=V, weights="w")
    np.testing.assert_allclose(wb.statistics, ref, rtol=EXACT_TOL, atol=EXACT_TOL)


def test_brute_force_subcluster_bootstrap(medium):
    """Variance clustered by state (units nested), weights drawn by unit."""
    df = medium
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "state"})
    V = draw_weights("rademacher", 12, 60, np.random.default_rng(2))
    wb = wildboot(fit, param="x1", bootcluster="unit", confint=False, weight_matrix=V)
    d = fit.design
    boot = cluster_codes(fit, "unit")
    ref = _brute_force(df, fit, param="x1", h0=0.0, impose_null=True, boot=boot,
                       parts=[(d.clusters["state"], 1.0)], V=V)
    np.testing.assert_allclose(wb.statistics, ref, rtol=EXACT_TOL, atol=EXACT_TOL)
    assert abs(wb.tstat - fit.tstat()["x1"]) < EXACT_TOL


def test_brute_force_no_fe_nested(medium):
    """Clusters cutting across units and periods: both FEs enter the bootstrap as dummies."""
    df = medium.with_columns(region=pl.Series(np.random.default_rng(9).integers(0, 7, medium.height)))
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "region"})
    V = draw_weights("normal", 7, 60, np.random.default_rng(4))
    wb = wildboot(fit, param="treat", confint=False, weight_matrix=V)
    assert "'unit'" in wb.note and "'time'" in wb.note
    cl = fit.design.clusters["region"]
    ref = _brute_force(df, fit, param="treat", h0=0.0, impose_null=True, boot=cl, parts=[(cl, 1.0)], V=V)
    np.testing.assert_allclose(wb.statistics, ref, rtol=EXACT_TOL, atol=EXACT_TOL)


def test_brute_force_two_way_clustering(medium):
    """Two-way CRV1 (unit + time) in every draw, weights by unit."""
    from staggerlab.inference.regression.vcov import combine_codes

    df = medium
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit+time"})
    V = draw_weights("mammen", 12, 60, np.random.default_rng(3))
    wb = wildboot(fit, param="treat", confint=False, weight_matrix=V)
    c1, c2 = fit.design.clusters["unit"], fit.design.clusters["time"]
    parts = [(c1, 1.0), (c2, 1.0), (combine_codes(c1, c2), -1.0)]
    ref = _brute_force(df, fit, param="treat", h0=0.0, impose_null=True, boot=c1, parts=parts, V=V)
    ok = np.isfinite(wb.statistics)
    np.testing.assert_array_equal(ok, np.isfinite(ref))
    np.testing.assert_allclose(wb.statistics[ok], ref[ok], rtol=EXACT_TOL, atol=EXACT_TOL)
    assert abs(wb.tstat - fit.tstat()["treat"]) < EXACT_TOL
    assert "two-way" in wb.note


# ---------------------------------------------------------- test inversion
@pytest.fixture(scope="module")
def fit20():
    df = _panel(20, 6, seed=4)
    return sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})


@pytest.mark.parametrize(
    "impose_null,alternative",
    [(True, "two-sided"), (True, "equal-tailed"), (False, "two-sided"), (True, "greater")],
)
def test_ci_endpoints_have_pvalue_one_minus_level(fit20, impose_null, alternative):
    level = 0.9
    alpha = 1 - level
    wb = wildboot(fit20, param="treat", draws=999, impose_null=impose_null, alternative=alternative,
                  level=level, seed=5)
    lo, hi = wb.confint
    assert lo < wb.estimate < hi
    eps = CI_PROBE * CI_XTOL * wb.se
    for end, outward in ((lo, -1), (hi, +1)):
        if not math.isfinite(end):
            assert alternative == "greater" and outward == +1
            continue
        assert wb.pvalue_at(end + outward * eps) < alpha <= wb.pvalue_at(end - outward * eps)
        # an independent recomputation with the null imposed at the probe points
        out = wildboot(fit20, param="treat", draws=999, impose_null=impose_null, alternative=alternative,
                       h0=end + outward * eps, confint=False, seed=5)
        inn = wildboot(fit20, param="treat", draws=999, impose_null=impose_null, alternative=alternative,
                       h0=end - outward * eps, confint=False, seed=5)
        assert out.pvalue < alpha <= inn.pvalue


def test_quad_pieces_equal_direct_statistics(fit20):
    """The per-draw pieces used for test inversion give the direct t's at any h0."""
    a = wildboot(fit20, param="treat", draws=500, h0=0.3, seed=2)
    b = wildboot(fit20, param="treat", draws=500, h0=0.3, seed=2, confint=False)
    np.testing.assert_allclose(a.statistics, b.statistics, rtol=1e-9, atol=1e-12)
    assert a.pvalue == b.pvalue


# ---------------------------------------------------------- reproducibility
def test_n_jobs_and_backend_do_not_change_results(fit20):
    # G = 20 -> 4,096 draws per block: 9,999 draws are 3 blocks
    kw = dict(param="treat", draws=9999, weights="webb", confint=False, seed=11)
    one = wildboot(fit20, n_jobs=1, **kw)
    two = wildboot(fit20, n_jobs=2, **kw)
    thr = wildboot(fit20, n_jobs=2, backend="threading", **kw)
    np.testing.assert_array_equal(one.statistics, two.statistics)
    np.testing.assert_array_equal(one.statistics, thr.statistics)
    assert one.pvalue == two.pvalue == thr.pvalue
    other = wildboot(fit20, n_jobs=1, **{**kw, "seed": 12})
    assert not np.array_equal(one.statistics, other.statistics)


def test_enumeration_order_and_weight_moments():
    G = 5
    ref = np.array(list(itertools.product([-1, 1], repeat=G))).T
    np.testing.assert_array_equal(enumeration_weights(G, 0, 2**G), ref)
    np.testing.assert_array_equal(enumeration_weights(G, 7, 19), ref[:, 7:19])
    n = 200_000
    tol = 6 / math.sqrt(n)  # 6 MC standard errors (all moments below have variance <= ~2)
    for kind in ("rademacher", "mammen", "webb", "normal"):
        v = draw_weights(kind, 1, n, np.random.default_rng(0)).ravel()
        assert abs(v.mean()) < tol and abs((v**2).mean() - 1) < 2 * tol
    assert set(np.unique(draw_weights("rademacher", 3, 10, np.random.default_rng(0)))) <= {-1.0, 1.0}


def test_pyfixest_fit_is_accepted(fit20):
    import pyfixest as pf

    df = fit20.design.frame.to_pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pfit = pf.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})
    a = wildboot(pfit, param="treat", draws=300, confint=False, seed=1)
    b = wildboot(fit20, param="treat", draws=300, confint=False, seed=1)
    np.testing.assert_allclose(a.statistics, b.statistics, rtol=1e-8)
    assert abs(a.tstat - float(pfit.tstat()["treat"])) < 1e-8


# ------------------------------------------------------------------- errors
def test_errors(fit20):
    with pytest.raises(WildBootError, match="not a coefficient"):
        wildboot(fit20, param="nope")
    with pytest.raises(WildBootError, match="weights"):
        wildboot(fit20, weights="uniform")
    with pytest.raises(ArgumentError, match="alternative"):  # the shared option check
        wildboot(fit20, alternative="bigger")
    iid = fit20.with_vcov("iid")
    with pytest.raises(VcovError, match="not clustered"):
        wildboot(iid, draws=99)
    df = fit20.design.frame.with_columns(one=pl.lit(1))
    fit1 = sl.feols("y ~ treat + x1 | unit + time", df, vcov={"CRV1": "unit"})
    with pytest.raises(VcovError, match="at least 2 clusters"):
        wildboot(fit1, cluster="one", draws=99)
    with pytest.raises(StaggerlabError, match="not in the data"):
        wildboot(fit20, cluster="nothere", draws=99)
    # a cluster not in the fit's vcov is fine when it is a column of the data
    wb = wildboot(iid, cluster="unit", draws=99, confint=False)
    assert abs(wb.tstat - fit20.tstat()["treat"]) < EXACT_TOL


# ------------------------------------------------------------ result object
def test_tidy_summary_plot(fit20, tmp_path):
    wb = wildboot(fit20, param="treat", draws=499, seed=3)
    t = wb.tidy()
    assert t.columns[:8] == ["term", "estimate", "se", "h0", "tstat", "pvalue", "ci_low", "ci_high"]
    assert t["pvalue"][0] == wb.pvalue and t["ci_low"][0] == wb.confint[0]
    s = wb.summary()
    assert "WCR" in s and "treat" in s
    fig = wb.plot(path=str(tmp_path / "wb.png"))
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() == "density"
    assert (tmp_path / "wb.png").stat().st_size > 0


# ------------------------------------------------------- chunked computation
def test_packed_rademacher_block_equals_drawn_weights():
    """Rademacher blocks kept as bits serve, range by range, the weights the
    same generator draws (G not a multiple of 8: rows start mid-byte)."""
    from staggerlab.inference.resampling.wildboot_weights import draws, rademacher_block

    G, B = 37, 11
    wb = rademacher_block(G, B, np.random.default_rng(5))
    dense = draws("rademacher", G, B, np.random.default_rng(5))
    for g0, g1 in [(0, G), (0, 1), (3, 20), (29, G)]:
        np.testing.assert_array_equal(wb.cols(g0, g1), dense[:, g0:g1])


@pytest.mark.parametrize(
    "fml,vcov,extra",
    [
        ("y ~ treat + x1 | unit + time", {"CRV1": "unit"}, {}),
        ("y ~ treat + x1 | unit + time", {"CRV1": "unit"}, {"weights": "w"}),
        ("y ~ treat + x1 | unit + time", {"CRV1": "unit+time"}, {}),
        ("y ~ treat + x1 | unit + time", {"CRV1": "state"}, {"bootcluster": "unit"}),
    ],
)
def test_row_and_cluster_chunks_do_not_change_results(fml, vcov, extra):
    """Tiny row chunks (the dummy block rebuilt per chunk of units), tiny
    cluster ranges in the draw blocks, and shuffled rows (chunks gathered by
    unit) give the same bootstrap as one chunk."""
    from staggerlab.inference.resampling.wildboot import WildBootTuning

    df = _panel(60, 6, seed=9)
    weights = extra.pop("weights", None)
    kw = dict(param="treat", draws=199, seed=3, **extra)
    ref = [wildboot(sl.feols(fml, df, vcov=vcov, weights=weights), weights=wt, **kw) for wt in ("rademacher", "webb")]
    tiny = WildBootTuning(chunk_rows=50, chunk_weights=300)
    for data in (df, df.sample(fraction=1.0, shuffle=True, seed=2)):
        fit = sl.feols(fml, data, vcov=vcov, weights=weights)
        for r, wt in zip(ref, ("rademacher", "webb")):
            got = wildboot(fit, weights=wt, tuning=tiny, **kw)
            np.testing.assert_allclose(got.statistics, r.statistics, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(got.confint, r.confint, rtol=1e-9)
            assert got.pvalue == r.pvalue


# ------------------------------------------- ties, Mammen enumeration, unbounded sets (issue 16, item 5)
def _mammen_all(G: int) -> tuple[np.ndarray, np.ndarray]:
    """Every Mammen weight vector (G x 2^G) and its probability, by hand from the definition."""
    import itertools

    s5 = math.sqrt(5.0)
    low, high, p_high = -(s5 - 1) / 2, (s5 + 1) / 2, (s5 - 1) / (2 * s5)
    V = np.array(list(itertools.product([low, high], repeat=G))).T
    prob = np.prod(np.where(V == high, p_high, 1 - p_high), axis=0)
    return V, prob


@pytest.mark.parametrize("h0", [0.0, 0.5, 1.0])
def test_mammen_full_enumeration_matches_brute_force_probabilities(small, h0):
    """Reference: every one of the 2^8 Mammen draws refitted by least squares, each
    weighted by its probability; ties (|t*| = |t| to 1e-9) count as extreme."""
    df, _ = small
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})
    wb = wildboot(fit, param="treat", weights="mammen", draws=9999, h0=h0, confint=False)
    assert wb.full_enumeration and wb.draws == 256 and "Mammen" in wb.note
    cl = fit.design.clusters["unit"]
    V, prob = _mammen_all(8)
    tb = _brute_force(df, fit, param="treat", h0=h0, impose_null=True, boot=cl, parts=[(cl, 1.0)], V=V)
    np.testing.assert_allclose(wb.statistics, tb, rtol=1e-8, atol=1e-8)
    extreme = np.abs(tb) >= abs(wb.tstat) * (1 - 1e-9)
    assert wb.pvalue == pytest.approx(prob @ extreme, abs=1e-12)


def test_rademacher_enumeration_pvalue_differs_from_wildboottest_by_two_ties(small):
    """With full enumeration under WCR the all-+1 and all--1 draws reproduce +-t:
    staggerlab counts them, wildboottest (strict >) does not, so p differs by 2/2^G."""
    df, dummies = small
    fit = sl.feols("y ~ treat + x1 + x2 + " + " + ".join(dummies), df, vcov={"CRV1": "unit"})
    wb = wildboot(fit, param="treat", confint=False)
    X = np.column_stack([np.ones(df.height)] + [df[c].to_numpy().astype(float) for c in ["treat", "x1", "x2", *dummies]])
    ref = _wbt(X, df["y"].to_numpy(), fit.design.clusters["unit"], 1, impose_null=True)
    assert ref.full_enumeration and wb.full_enumeration
    t, tb = abs(float(ref.t_stat)), np.abs(ref.t_boot)
    strict = np.mean(tb > t * (1 + 1e-9))  # wildboottest's rule, with the two tying draws kept out
    assert wb.pvalue == pytest.approx(strict + 2 / 2**8, abs=1e-12)
    assert ref.pvalue <= wb.pvalue  # its own rounding may or may not count a tie


def test_mammen_with_eight_clusters_gives_an_unbounded_interval(small):
    """8% of the Mammen draws (all weights equal: probability p^8 + (1-p)^8, by hand) tie
    with t at every null, so no null is rejected at 5%: the set is the whole line."""
    df, _ = small
    fit = sl.feols("y ~ treat + x1 + x2 | unit + time", df, vcov={"CRV1": "unit"})
    _, prob = _mammen_all(8)
    tie_mass = prob[0] + prob[-1]
    assert tie_mass > 0.05
    with pytest.warns(sl.errors.UnboundedIntervalWarning, match="webb"):
        wb = wildboot(fit, param="treat", weights="mammen", draws=9999)
    assert wb.confint == (-math.inf, math.inf) and wb.unbounded
    assert wb.tidy()["unbounded"].item() and "unbounded" in wb.summary()
    # brute force far from the estimate: the p-value is the tie mass, above 5%
    cl = fit.design.clusters["unit"]
    V, _ = _mammen_all(8)
    far = wb.estimate + 1e4 * wb.se
    tb = _brute_force(df, fit, param="treat", h0=far, impose_null=True, boot=cl, parts=[(cl, 1.0)], V=V)
    t_far = (wb.estimate - far) / wb.se
    assert prob @ (np.abs(tb) >= abs(t_far) * (1 - 1e-6)) >= tie_mass - 1e-12
    assert wb.pvalue_at(far) == pytest.approx(tie_mass, abs=1e-12)
    # Rademacher and Webb bound the same interval
    for w in ("rademacher", "webb"):
        r = wildboot(fit, param="treat", weights=w, draws=999)
        assert np.isfinite(r.confint).all() and not r.unbounded
