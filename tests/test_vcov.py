"""The covariance API of ``inference/regression/vcov.py``: factors, parts, parser, dispatch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import staggerlab as sl
from staggerlab.errors import VcovError
from staggerlab.inference.regression.vcov import (
    VcovSpec,
    cluster_parts,
    clustered_meat,
    fe_df,
    nested_in,
    parse_clusters,
    parse_vcov,
    residual_variance,
    sandwich,
    ssc_df_k,
    ssc_factor,
)

#: agreement with pyfixest's two-way CRV1 (different demeaners, same algebra)
PF_RTOL = 1e-10
#: one algebra evaluated two ways (dummy matrices against cluster sums)
ALGEBRA_RTOL = 1e-12


# ------------------------------------------------------------------ factors
@pytest.mark.parametrize("N,df_k,G", [(100, 3, 10), (7, 2, 2), (10_000_001, 57, 3_001), (50, 49, 50)])
def test_factors_equal_the_formulas(N, df_k, G):
    assert ssc_factor("CRV1", N, df_k, G) == (N - 1) / (N - df_k) * G / (G - 1)
    assert ssc_factor("CRV3", N, df_k, G) == (N - 1) / (N - df_k) * G / (G - 1)
    assert ssc_factor("hetero", N, df_k) == N / (N - df_k)
    assert ssc_factor("HC1", N, df_k) == N / (N - df_k)
    ssr = np.array([1.5, 3.25e7])
    np.testing.assert_array_equal(residual_variance(ssr, N, df_k), ssr / (N - df_k))


def test_factor_needs_a_kind_and_clusters():
    with pytest.raises(VcovError, match="residual_variance"):
        ssc_factor("iid", 10, 2)
    with pytest.raises(VcovError, match="number of clusters"):
        ssc_factor("CRV1", 10, 2)


# -------------------------------------------------------------------- parser
@pytest.mark.parametrize(
    "spec,cols",
    [("firm", ("firm",)), (" firm + year ", ("firm", "year")), ("firm^year", ("firm", "year")),
     (["firm", "year"], ("firm", "year")), (["firm+year"], ("firm", "year"))],
)
def test_parse_clusters(spec, cols):
    assert parse_clusters(spec) == cols


@pytest.mark.parametrize("spec", ["", "+", "a+b+c", ["a", "b", "c"]])
def test_parse_clusters_rejects(spec):
    with pytest.raises(VcovError, match="one or two columns"):
        parse_clusters(spec)


def test_parse_vcov_uses_the_cluster_parser():
    assert parse_vcov({"CRV1": "a^b"}) == VcovSpec("CRV1", ("a", "b"))
    assert parse_vcov({"crv3": "a"}) == VcovSpec("CRV3", ("a",))
    with pytest.raises(VcovError, match="one-way"):
        parse_vcov({"CRV3": "a+b"})


# --------------------------------------------------------------------- parts
def test_cluster_parts_one_and_two_way():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200), rng.integers(0, 3, 200)
    (c, s, g), = cluster_parts([a])
    assert c is a and s == 1.0 and g == 5
    parts = cluster_parts([a, b])
    assert [(s, g) for _, s, g in parts] == [(1.0, 5), (1.0, 3), (-1.0, 15)]
    inter = parts[2][0]
    # the intersection codes are dense and one-to-one with the (a, b) pairs
    pairs = {(x, y): z for x, y, z in zip(a, b, inter)}
    assert len(pairs) == len(set(pairs.values())) == int(inter.max()) + 1
    assert all(pairs[(x, y)] == z for x, y, z in zip(a, b, inter))
    with pytest.raises(VcovError):
        cluster_parts([a, b, a])


def test_clustered_meat_equals_dummy_algebra():
    rng = np.random.default_rng(1)
    N, k = 300, 3
    X, u = rng.normal(size=(N, k)), rng.normal(size=N)
    a, b = rng.integers(0, 12, N), rng.integers(0, 7, N)
    parts = cluster_parts([a, b])

    def dummy_meat(codes):
        D = np.zeros((N, int(codes.max()) + 1))
        D[np.arange(N), codes] = 1.0
        S = D.T @ (X * u[:, None])
        return S.T @ S

    ref = dummy_meat(a) + dummy_meat(b) - dummy_meat(parts[2][0])
    np.testing.assert_allclose(clustered_meat((X, u), parts), ref, rtol=ALGEBRA_RTOL)
    np.testing.assert_allclose(clustered_meat(X * u[:, None], parts), ref, rtol=ALGEBRA_RTOL)


# ---------------------------------------------------------------------- df_k
def test_ssc_df_k_nesting_rule():
    rng = np.random.default_rng(2)
    unit = np.repeat(np.arange(20), 5)
    time = np.tile(np.arange(5), 20)
    region = (np.arange(20) % 4)[unit]
    other = rng.integers(0, 3, 100)
    k = 3
    assert ssc_df_k(k) == k
    # no clusters: every FE counts, minus one per extra FE
    assert ssc_df_k(k, [unit, time]) == k + 20 + 5 - 1
    # unit nested in region: its levels drop out, one kept
    assert ssc_df_k(k, [unit, time], clusters=[region]) == fe_df(k, [20, 5], [True, False]) == k + 1 + 5 - 1
    # known nesting is taken on trust (no test)
    assert ssc_df_k(k, [unit, time], clusters=[other], known_nested=[True, False]) == k + 1 + 5 - 1
    assert not nested_in(unit, other)
    assert ssc_df_k(k, [unit, time], clusters=[other]) == k + 20 + 5 - 1
    # two-way: nested in the intersection counts too
    cell = unit * 5 + time
    assert ssc_df_k(k, [cell], clusters=[unit, time]) == k + 1


# ---------------------------------------------------------------- dispatch
def test_sandwich_dispatch_and_unscaled_meat():
    rng = np.random.default_rng(3)
    N, k = 120, 2
    X, u = rng.normal(size=(N, k)), rng.normal(size=N)
    bread = np.linalg.inv(X.T @ X)
    cl = rng.integers(0, 9, N)
    V, df_t, G = sandwich(bread, (X, u), "iid", [], N, k)
    np.testing.assert_array_equal(V, bread * (float(u @ u) / (N - k)))
    assert (df_t, G) == (N - k, None)
    sc = X * u[:, None]
    V, df_t, G = sandwich(bread, (X, u), VcovSpec("hetero"), [], N, k)
    np.testing.assert_array_equal(V, N / (N - k) * (bread @ (sc.T @ sc) @ bread))
    V0, _, _ = sandwich(bread, sc, "hetero", [], N, k, small_sample=False)
    np.testing.assert_array_equal(V0, bread @ (sc.T @ sc) @ bread)
    V, df_t, G = sandwich(bread, (X, u), "CRV1", [cl], N, k)
    V0, _, _ = sandwich(bread, (X, u), "CRV1", [cl], N, k, small_sample=False)
    assert (df_t, G) == (8, 9)
    np.testing.assert_array_equal(V, ssc_factor("CRV1", N, k, 9) * V0)
    with pytest.raises(VcovError):
        sandwich(bread, sc, "iid", [], N, k)
    with pytest.raises(VcovError):
        sandwich(bread, (X, u), "CRV3", [cl], N, k)
    with pytest.raises(VcovError, match="at least 2 clusters"):
        sandwich(bread, (X, u), "CRV1", [np.zeros(N, dtype=np.int64)], N, k)


@pytest.mark.parametrize(
    "fml,clusters",
    list(itertools.product(["Y ~ X1 + X2", "Y ~ X1 + X2 | f1 + f2", "Y ~ X1 | f3"], ["f1+f2", "f1+f3"])),
)
def test_two_way_parts_match_pyfixest(pf_data, pf_feols, fml, clusters):
    """The API's pieces, put together by hand on a fit's design, give pyfixest's two-way CRV1."""
    vc = {"CRV1": clusters}
    data = pf_data.dropna(subset=["Y", "X1", "X2", "f1", "f2", "f3"])  # pyfixest refuses missing clusters
    fit = sl.feols(fml, data, vcov=vc)
    d = fit.design
    names = parse_clusters(clusters)
    c1, c2 = (d.clusters[c] for c in names)
    df_k = ssc_df_k(len(d.regressors), d.absorber.codes, d.fe_levels, [c1, c2], [f in names for f in d.fixef])
    parts = cluster_parts([c1, c2])
    G = min(g for _, _, g in parts)
    V = ssc_factor("CRV1", d.nobs, df_k, G) * (d.bread @ clustered_meat((d.Xw, fit.uw), parts) @ d.bread)
    ref = pf_feols(fml, data, vcov=vc)
    np.testing.assert_allclose(V, np.asarray(ref._vcov), rtol=PF_RTOL, atol=0)
    assert G - 1 == int(ref._df_t)
    np.testing.assert_array_equal(V, fit.vcov())


def test_a_coefficient_on_one_treated_cluster_is_flagged():
    # one treated unit: CRV1's SE of the treatment omits that unit's own noise (its
    # residuals are fitted away); flagged for CRV1 and CRV3, by any cluster that holds
    # all its nonzero rows, and not for a treatment spread over clusters or an iid/HC1 fit
    import warnings

    import polars as pl

    import staggerlab as sl
    from staggerlab.errors import SingleClusterWarning

    df = sl.simulate.staggered(60, 8, n_controls=1, seed=4).with_columns((pl.col("unit") % 6).alias("grp"))
    u1 = df.filter(pl.col("cohort") > 0)["unit"][0]
    one = df.with_columns(pl.when(pl.col("unit") == u1).then(pl.col("treat")).otherwise(0).alias("treat"))
    for vcov in ({"CRV1": "unit"}, {"CRV3": "unit"}, {"CRV1": "grp"}, {"CRV1": "unit+time"}):
        with pytest.warns(SingleClusterWarning, match=r"coefficient\(s\) \['treat'\] rest on one cluster"):
            fit = sl.feols("y ~ treat + x1 | unit + time", one, vcov=vcov)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleClusterWarning)
        fit.with_vcov("hetero")
        sl.feols("y ~ treat + x1 | unit + time", one, vcov="iid")
        sl.feols("y ~ treat + x1 | unit + time", df, vcov={"CRV1": "unit"})
        sl.feols("y ~ treat + x1 | unit + time", df, vcov={"CRV1": "grp"})
    with pytest.warns(SingleClusterWarning, match="lies in one 'unit' cluster"):
        fit.with_vcov({"CRV1": "unit"})


def test_a_negative_two_way_variance_is_flagged_by_coefficient():
    # few clusters in one dimension: V1 + V2 - V12 gives 'treat' a negative variance; the SE is
    # undefined, as in pyfixest (the same matrix), and the fit says which coefficient and why
    import warnings

    import polars as pl
    import pyfixest as pf

    import staggerlab as sl
    from staggerlab.errors import StaggerlabWarning

    df = sl.simulate.staggered(30, 6, n_controls=2, seed=4).with_columns((pl.col("unit") % 4).alias("grp"))
    fml = "y ~ treat + x1 + x2 | unit + time"
    ref = pf.feols(fml, df.to_pandas(), vcov={"CRV1": "grp+time"}, fixef_tol=1e-13)
    with pytest.warns(StaggerlabWarning, match=r"two-way cluster variance of \['treat'\] is negative"):
        fit = sl.feols(fml, df, vcov={"CRV1": "grp+time"})
    order = [list(ref._coefnames).index(c) for c in fit.coefnames]
    V0 = np.asarray(ref._vcov)[np.ix_(order, order)]
    np.testing.assert_allclose(fit.vcov(), V0, rtol=1e-8, atol=1e-12 * np.abs(V0).max())
    assert fit.vcov()[0, 0] < 0 and np.isnan(fit.se()["treat"])
    # every variance positive (though V1 + V2 - V12 has a negative eigenvalue): no flag
    ok = sl.simulate.staggered(60, 6, n_controls=2, seed=1).with_columns((pl.col("unit") % 12).alias("grp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaggerlabWarning)
        sl.feols(fml, ok, vcov={"CRV1": "grp+time"})
