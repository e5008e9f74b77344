"""feols on partitioned panels (dask): equal to the in-memory fit at 1e-10.

The reference is the in-memory ``sl.feols`` on the same rows (itself tested
against pyfixest in test_feols*); the partitioned fit shares none of its
demeaning, solve or variance code paths (it sums per-unit blocks by
partition and maps scores with Frisch-Waugh-Lovell).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import (
    CollinearityWarning,
    MissingValueError,
    MissingValueWarning,
    PartitionedDesignError,
    PartitionError,
    SingletonWarning,
)

dd = pytest.importorskip("dask.dataframe")

FML = "NQPF ~ IM + Size + Lev | firm + year"
RTOL = 1e-10


def write_parts(frame: pl.DataFrame, path, n_parts: int, unit: str = "firm") -> str:
    """One parquet file per contiguous range of units."""
    path.mkdir(parents=True, exist_ok=True)
    units = np.sort(frame[unit].unique().to_numpy())
    for i, chunk in enumerate(np.array_split(units, n_parts)):
        frame.filter(pl.col(unit).is_in(chunk)).write_parquet(path / f"part{i:03d}.parquet")
    return str(path)


@pytest.fixture(scope="module")
def panel():
    return sl.simulate.paper_panel(seed=0)


@pytest.fixture(scope="module")
def parts(panel, tmp_path_factory):
    return write_parts(panel, tmp_path_factory.mktemp("pq"), 4)


@pytest.fixture(scope="module")
def small(panel, tmp_path_factory):
    """300 firms (CRV3 in memory refits every cluster: keep it small)."""
    sub = panel.filter(pl.col("firm") <= 300)
    return sub, write_parts(sub, tmp_path_factory.mktemp("pq_small"), 3)


def assert_same(a, b, rtol=RTOL):
    assert b.coefnames == a.coefnames
    np.testing.assert_allclose(b.beta, a.beta, rtol=rtol, atol=0)
    np.testing.assert_allclose(b.vcov(), a.vcov(), rtol=rtol, atol=1e-14 * np.abs(a.vcov()).max())
    assert b.df_t == a.df_t
    assert b.n_clusters == a.n_clusters
    assert b.nobs == a.nobs


@pytest.mark.parametrize("vcov", ["iid", "hetero", {"CRV1": "firm"}, {"CRV1": "industry"}, {"CRV1": "firm+year"},
                                  {"CRV1": "industry+year"}, {"CRV1": "year"}])
def test_equals_in_memory(panel, parts, vcov):
    assert_same(sl.feols(FML, panel, vcov=vcov), sl.feols(FML, parts, vcov=vcov))


@pytest.mark.parametrize("cl", ["firm", "city"])
def test_crv3_equals_in_memory(small, cl):
    frame, path = small
    assert_same(sl.feols(FML, frame, vcov={"CRV3": cl}), sl.feols(FML, path, vcov={"CRV3": cl}))


def test_tidy_summary_r2_with_vcov(panel, parts):
    a = sl.feols(FML, panel, vcov={"CRV1": "firm"})
    b = sl.feols(FML, parts, vcov={"CRV1": "firm"})
    assert b.tidy().columns == a.tidy().columns
    np.testing.assert_allclose(b.tidy()["pvalue"].to_numpy(), a.tidy()["pvalue"].to_numpy(), rtol=1e-8)
    assert b.r2 == pytest.approx(a.r2, rel=1e-10)
    assert b.r2_within == pytest.approx(a.r2_within, rel=1e-10)
    assert "partitioned" in b.summary()
    assert_same(a.with_vcov("hetero"), b.with_vcov("hetero"))


def test_dask_dataframe_input(panel, parts):
    ddf = dd.read_parquet(parts, split_row_groups=False)
    assert_same(sl.feols(FML, panel, vcov={"CRV1": "firm"}), sl.feols(FML, ddf, vcov={"CRV1": "firm"}))


def test_missing_singletons_collinear(panel, tmp_path):
    rng = np.random.default_rng(3)
    frame = panel.with_columns(
        pl.when(pl.Series(rng.random(panel.height) < 0.02)).then(None).otherwise(pl.col("Size")).alias("Size"),
        (2.0 * pl.col("Lev")).alias("Lev2"),
    )
    fml = "NQPF ~ IM + Size + Lev + Lev2 | firm + year"
    path = write_parts(frame, tmp_path, 3)
    with pytest.warns(MissingValueWarning), pytest.warns(SingletonWarning), pytest.warns(CollinearityWarning):
        a = sl.feols(fml, frame, vcov={"CRV1": "firm"})
    with pytest.warns(MissingValueWarning), pytest.warns(SingletonWarning), pytest.warns(CollinearityWarning):
        b = sl.feols(fml, path, vcov={"CRV1": "firm"})
    assert "Lev2" not in b.coefnames
    assert_same(a, b)


def test_keep_singletons_and_na_raise(panel, tmp_path):
    frame = pl.concat([panel, panel[:1].with_columns(pl.lit(10_000, dtype=pl.Int64).alias("firm"))])  # a one-row firm
    path = write_parts(frame, tmp_path, 3)
    for vcov in ("iid", {"CRV1": "firm"}):
        assert_same(sl.feols(FML, frame, vcov=vcov, fixef_rm="none"), sl.feols(FML, path, vcov=vcov, fixef_rm="none"))
    holes = write_parts(panel.with_columns(pl.when(pl.col("year") == 2015).then(None).otherwise(pl.col("Lev"))
                                           .alias("Lev")), tmp_path / "holes", 2)
    with pytest.raises(MissingValueError, match="'Lev'"):
        sl.feols(FML, holes, na="raise")


def test_unit_in_two_partitions_is_refused_and_repartitioned(panel, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    sorted_ = panel.sort("firm", "year")
    half = sorted_.height // 2
    sorted_[:half].write_parquet(d / "a.parquet")
    sorted_[half:].write_parquet(d / "b.parquet")
    split_firm = sorted_["firm"][half]
    assert sorted_["firm"][half - 1] == split_firm  # the cut goes through a firm
    with pytest.raises(PartitionError, match=rf"unit {split_firm}\b.*repartition_by_unit"):
        sl.feols(FML, str(d), vcov={"CRV1": "firm"})
    fixed = sl.repartition_by_unit(str(d), "firm", npartitions=3)
    assert_same(sl.feols(FML, panel, vcov={"CRV1": "firm"}), sl.feols(FML, fixed, vcov={"CRV1": "firm"}))


def test_designs_without_exact_partitioned_solve(parts):
    with pytest.raises(PartitionedDesignError, match="third high-dimensional FE"):
        sl.feols("NQPF ~ IM + Size | firm + year + city", parts)
    with pytest.raises(PartitionedDesignError, match="unweighted"):
        sl.feols(FML, parts, weights="Size")
    with pytest.raises(PartitionedDesignError, match="one outcome"):
        sl.feols("NQPF + N_TFP ~ IM | firm + year", parts)
    with pytest.raises(PartitionedDesignError, match="plain column terms"):
        sl.feols("NQPF ~ IM + log(Size) | firm + year", parts)


def test_crv3_needs_clusters_containing_units(small):
    with pytest.raises(PartitionedDesignError, match="whole units"):
        sl.feols(FML, small[1], vcov={"CRV3": "year"})


def test_import_does_not_import_dask():
    code = "import sys, staggerlab; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow  # ~30 s: two worker processes start and import numba
def test_local_cluster(panel, parts):
    """On a 2-worker LocalCluster: the bit-identical route (rows gathered from
    the workers) and the partitioned algebra with its tables placed on the
    workers by units."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        b = sl.feols(FML, parts, vcov={"CRV1": "firm+year"})
        fit = sl.feols(FML, parts, vcov={"CRV1": "firm"})
        ri = sl.placebo(fit, param="IM", draws=100, seed=5)
        wb = sl.wildboot(fit, param="IM", draws=99, seed=5)
        ri_alg = sl.placebo(fit.with_exact("never"), param="IM", draws=100, seed=5)
        wb_alg = sl.wildboot(fit.with_exact("never"), param="IM", draws=99, seed=5)
        es_kw = dict(y="NQPF", unit="firm", time="year", treat="IM", controls=["Size"])
        ess = {m: sl.event_study(parts, method=m, **es_kw) for m in ("twfe", "sunab", "imputation")}
    assert_same(sl.feols(FML, panel, vcov={"CRV1": "firm+year"}), b)
    mem = sl.feols(FML, panel, vcov={"CRV1": "firm"})
    ra = sl.placebo(mem, param="IM", draws=100, seed=5)
    wa = sl.wildboot(mem, param="IM", draws=99, seed=5)
    assert ri.method == "partitioned-exact" and ri_alg.method == "partitioned"
    assert np.array_equal(ri.statistics, ra.statistics) and np.array_equal(wb.statistics, wa.statistics)
    np.testing.assert_allclose(ri_alg.statistics, ra.statistics, rtol=0, atol=1e-9 * np.abs(ra.statistics).max())
    np.testing.assert_allclose(wb_alg.statistics, wa.statistics, rtol=0, atol=1e-12 * np.abs(wa.statistics).max())
    for m, es in ess.items():
        _same_es(sl.event_study(panel, method=m, **es_kw), es)


# ------------------------------------------------------------ event study
def _same_es(a, b, rtol=RTOL):
    assert a.rel_time.tolist() == b.rel_time.tolist() and a.ref == b.ref and a.nobs == b.nobs and a.df == b.df
    np.testing.assert_allclose(b.coef, a.coef, rtol=rtol, atol=rtol * np.abs(a.coef).max())
    np.testing.assert_allclose(b.vcov, a.vcov, rtol=rtol, atol=rtol * np.abs(a.vcov).max())
    np.testing.assert_allclose(b.extra["n_rel"], a.extra["n_rel"])
    for kind in ("simple", "dynamic"):
        assert b.aggregate(kind).estimate == pytest.approx(a.aggregate(kind).estimate, rel=rtol)
        assert b.aggregate(kind).se == pytest.approx(a.aggregate(kind).se, rel=rtol)
    assert b.pretrend_test().wald == pytest.approx(a.pretrend_test().wald, rel=1e-8)


@pytest.mark.parametrize("kw", [dict(treat="IM"), dict(cohort="first_year", ref=-2),
                                dict(treat="IM", controls=["Size", "Lev"], window=(-3, 3), bin_endpoints=False),
                                dict(treat="IM", ref=[-1, -5], cluster="industry")])
def test_event_study_twfe_equals_in_memory(panel, parts, kw):
    """The dynamic TWFE event study of a parquet directory equals the in-memory
    one: coefficients, CRV1 variance, aggregates, pre-trend test."""
    args = dict(y="NQPF", unit="firm", time="year", **kw)
    _same_es(sl.event_study(panel, **args), sl.event_study(parts, **args))


def _unbalanced_with_missing(panel, seed):
    """The panel with 10% of its rows dropped and 3% of the remaining outcomes missing."""
    rng = np.random.default_rng(seed)
    df = panel.filter(pl.Series(rng.uniform(size=panel.height) > 0.1))
    y = df["NQPF"].to_numpy().copy()
    y[rng.uniform(size=y.size) < 0.03] = np.nan
    return df.with_columns(pl.Series("NQPF", y))


def test_event_study_unbalanced_dask_frame_with_missing_values(panel, tmp_path):
    """Rows dropped, missing outcomes; a dask DataFrame repartitioned by unit and a parquet directory."""
    df = _unbalanced_with_missing(panel, 2)
    args = dict(y="NQPF", unit="firm", time="year", treat="IM", controls=["Size"])
    with pytest.warns(MissingValueWarning):
        a = sl.event_study(df, **args)
    # integer years stored as floats, as pandas does
    ddf = sl.repartition_by_unit(dd.from_pandas(df.with_columns(pl.col("year").cast(pl.Float64)).to_pandas(),
                                                npartitions=3), "firm")
    with pytest.warns(MissingValueWarning):
        _same_es(a, sl.event_study(ddf, **args))
    with pytest.warns(MissingValueWarning):
        _same_es(a, sl.event_study(write_parts(df, tmp_path / "pq", 3), **args))


def test_event_study_partitioned_refusals(panel, parts):
    with pytest.raises(PartitionedDesignError, match="'twfe', 'sunab' and 'imputation'"):
        sl.event_study(parts, y="NQPF", unit="firm", time="year", treat="IM", method="cs")
    with pytest.raises(PartitionedDesignError, match="unweighted"):
        sl.event_study(parts, y="NQPF", unit="firm", time="year", treat="IM", weights="Size")
    half = sl.repartition_by_unit(dd.from_pandas(panel.with_columns(pl.col("year") + 0.5).to_pandas(),
                                                 npartitions=2), "firm")
    with pytest.raises(sl.errors.EventStudyError, match="integer periods"):
        sl.event_study(half, y="NQPF", unit="firm", time="year", treat="IM")


def test_event_study_imputation_refuses_a_unit_split_across_partitions(panel):
    """The per-unit algebra needs every unit in one partition (no silent wrong answer)."""
    rows = panel.sort("year", "firm").to_pandas()  # a firm's years spread over every partition
    with pytest.raises(PartitionError):
        sl.event_study(dd.from_pandas(rows, npartitions=3, sort=False), y="NQPF", unit="firm", time="year",
                       treat="IM", method="imputation")


def test_event_study_partitioned_bootstrap_and_placebo_bit_identical(panel, parts):
    """wildboot(es) and placebo(es) of a partitioned event study: the rows gathered to the
    client give the in-memory event study's numbers exactly; above the budget, a refusal."""
    kw = dict(y="NQPF", unit="firm", time="year", treat="IM", controls=["Size"])
    es = sl.event_study(parts, **kw)
    mem = sl.event_study(panel.sort("firm", "year"), **kw)
    a, b = sl.wildboot(es, draws=199, seed=3), sl.wildboot(mem, draws=199, seed=3)
    assert np.array_equal(a.tstar, b.tstar) and np.array_equal(a.ci_low, b.ci_low)
    assert a.aggregate("simple").confint == b.aggregate("simple").confint
    assert any("gathered" in n for n in a.notes)
    p, q = sl.placebo(es, draws=99, seed=3), sl.placebo(mem, draws=99, seed=3)
    assert p.tidy().equals(q.tidy()) and p.fisher_pvalue == q.fisher_pvalue
    imp_kw = dict(kw, method="imputation")
    ei, mi = sl.event_study(parts, **imp_kw), sl.event_study(panel.sort("firm", "year"), **imp_kw)
    assert sl.placebo(ei, draws=49, seed=2).tidy().equals(sl.placebo(mi, draws=49, seed=2).tidy())
    assert np.array_equal(sl.wildboot(ei, draws=99, seed=2).tstar, sl.wildboot(mi, draws=99, seed=2).tstar)
    es.extra["partitioned"]["client_budget"] = 1000
    with pytest.raises(sl.errors.ClientMemoryError, match="partitioned event study"):
        sl.wildboot(es, draws=99)
    with pytest.raises(sl.errors.ClientMemoryError, match="partitioned event study"):
        sl.placebo(es, draws=99)


def _same_imputation(a, b, rtol=RTOL):
    _same_es(a, b, rtol)
    for kind in ("group", "calendar"):
        x, y = a.aggregate(kind), b.aggregate(kind)
        assert y.estimate == pytest.approx(x.estimate, rel=rtol) and y.se == pytest.approx(x.se, rel=rtol)
        assert y.components["level"].to_list() == x.components["level"].to_list()
        np.testing.assert_allclose(y.components["estimate"].to_numpy(), x.components["estimate"].to_numpy(),
                                   rtol=rtol, atol=rtol * np.abs(x.components["estimate"].to_numpy()).max())


@pytest.mark.parametrize("kw", [dict(treat="IM"), dict(cohort="first_year", window=(-3, 3)),
                                dict(treat="IM", controls=["Size", "Lev"], cluster="industry", window=(-4, 4),
                                     bin_endpoints=False)])
def test_event_study_imputation_equals_in_memory(panel, parts, kw):
    """The imputation event study of a parquet directory equals the in-memory one:
    coefficients, GMM variance, the four aggregates and their components."""
    args = dict(y="NQPF", unit="firm", time="year", method="imputation", **kw)
    _same_imputation(sl.event_study(panel, **args), sl.event_study(parts, **args))


def test_event_study_imputation_unbalanced_and_resampled(panel, tmp_path):
    """Rows dropped and missing outcomes (a dask frame); wildboot(es) and placebo(es) gather the rows."""
    df = _unbalanced_with_missing(panel, 5)
    args = dict(y="NQPF", unit="firm", time="year", treat="IM", controls=["Size"], method="imputation")
    with pytest.warns(MissingValueWarning):
        a = sl.event_study(df, **args)
    ddf = sl.repartition_by_unit(dd.from_pandas(df.to_pandas(), npartitions=3), "firm")
    with pytest.warns(MissingValueWarning):
        b = sl.event_study(ddf, **args)
    _same_imputation(a, b)
    with pytest.warns(MissingValueWarning):
        mem = sl.event_study(df.sort("firm", "year"), **args)
    with pytest.warns(MissingValueWarning):
        wb = sl.wildboot(b, draws=99, seed=1)
    assert np.array_equal(wb.tstar, sl.wildboot(mem, draws=99, seed=1).tstar)


@pytest.mark.parametrize("kw", [dict(treat="IM"), dict(cohort="first_year", window=(-3, 3), ref=-2),
                                dict(treat="IM", controls=["Size"], cluster="industry", window=(-4, 4),
                                     bin_endpoints=False),
                                dict(treat="IM", ref=-6, window=(-6, 4))])  # cohorts 2015, 2016 dropped
def test_event_study_sunab_equals_in_memory(panel, parts, kw):
    """The Sun-Abraham event study of a parquet directory equals the in-memory one:
    cohort-weighted coefficients, CRV1 variance, the simple, dynamic and group aggregates."""
    args = dict(y="NQPF", unit="firm", time="year", method="sunab", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped cohorts, in both
        a, b = sl.event_study(panel, **args), sl.event_study(parts, **args)
    _same_es(a, b)
    x, y = a.aggregate("group"), b.aggregate("group")
    assert y.estimate == pytest.approx(x.estimate, rel=RTOL) and y.se == pytest.approx(x.se, rel=RTOL)


def test_event_study_sunab_last_cohort_control_and_resampling(panel, tmp_path):
    """Without never-treated units the last cohort is the control (periods before it adopts);
    wildboot(es) of the partitioned event study gathers the rows (bit-identical)."""
    treated = panel.filter(pl.col("first_year") > 0)
    args = dict(y="NQPF", unit="firm", time="year", treat="IM", method="sunab")
    with pytest.warns(UserWarning, match="last treated"):
        a = sl.event_study(treated, **args)
    folder = write_parts(treated, tmp_path / "pq", 3)
    with pytest.warns(UserWarning, match="last treated"):
        b = sl.event_study(folder, **args)
    _same_es(a, b)
    with pytest.warns(UserWarning, match="last treated"):
        mem = sl.event_study(treated.sort("firm", "year"), **args)
    with pytest.warns(UserWarning, match="last treated"):
        wb = sl.wildboot(b, draws=99, seed=1)
    assert np.array_equal(wb.tstar, sl.wildboot(mem, draws=99, seed=1).tstar)
