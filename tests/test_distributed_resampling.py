"""placebo and wildboot on partitioned fits (dask).

Below the fit's client budget (the default on these small panels) the rows
are gathered to the client and the statistics are bit-identical (``==``) to
the in-memory procedure's, whatever the partitioning and the row order in
the files. The partitioned algebra (``with_exact("never")``, or above the
budget) uses the same draws for the same seed, gives statistics equal to
the in-memory fast engine's at 1e-9 of their scale (not bit-identical: the
in-memory engine partials out the fit's two-way demeaned controls and sums
units in its kernels' chunk order; the partitioned path partials out the
unit-demeaned raw controls and sums by partition), and so the same p-values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab.errors import ArgumentError, ClientMemoryError, PartitionedDesignError

pytest.importorskip("dask.dataframe")

FML = "NQPF ~ IM + Size + Lev | firm + year"


@pytest.fixture(scope="module")
def panel():
    return sl.simulate.paper_panel(seed=0)


@pytest.fixture(scope="module")
def parts(panel, tmp_path_factory):
    path = tmp_path_factory.mktemp("pq")
    units = np.sort(panel["firm"].unique().to_numpy())
    for i, chunk in enumerate(np.array_split(units, 4)):
        panel.filter(pl.col("firm").is_in(chunk)).write_parquet(path / f"part{i}.parquet")
    return str(path)


@pytest.fixture(scope="module")
def shuffled(panel, tmp_path_factory):
    """Units dealt to 3 files at random, rows shuffled within each file."""
    path = tmp_path_factory.mktemp("pq_shuffled")
    units = np.random.default_rng(1).permutation(panel["firm"].unique().to_numpy())
    for i, chunk in enumerate(np.array_split(units, 3)):
        panel.filter(pl.col("firm").is_in(chunk)).sample(fraction=1.0, shuffle=True, seed=i).write_parquet(
            path / f"part{i}.parquet")
    return str(path)


@pytest.mark.parametrize("vcov,stat,scheme", [("iid", "coef", "units+timing"), ({"CRV1": "firm"}, "t", "units"),
                                              ({"CRV1": "firm"}, "t", "timing")])
def test_placebo_bit_identical(panel, shuffled, vcov, stat, scheme):
    """The in-memory fit's rows come in the panel's order (sorted by firm and
    year), the partitioned ones shuffled across and within files."""
    a = sl.placebo(sl.feols(FML, panel, vcov=vcov), param="IM", draws=300, stat=stat, scheme=scheme, seed=7)
    fit = sl.feols(FML, shuffled, vcov=vcov).with_exact("require")
    b = sl.placebo(fit, param="IM", draws=300, stat=stat, scheme=scheme, seed=7)
    assert b.method == "partitioned-exact"
    assert np.array_equal(b.statistics, a.statistics, equal_nan=True)
    assert (b.observed, b.count, b.n_valid, b.pvalue) == (a.observed, a.count, a.n_valid, a.pvalue)


@pytest.mark.parametrize("cl,kw", [("firm", {}), ("industry", {"weights": "webb", "impose_null": False})])
def test_wildboot_bit_identical(panel, shuffled, cl, kw):
    a = sl.wildboot(sl.feols(FML, panel, vcov={"CRV1": cl}), param="IM", draws=999, seed=2, **kw)
    fit = sl.feols(FML, shuffled, vcov={"CRV1": cl}).with_exact("require")
    b = sl.wildboot(fit, param="IM", draws=999, seed=2, **kw)
    assert np.array_equal(b.statistics, a.statistics)
    assert (b.tstat, b.pvalue, b.confint, b.se) == (a.tstat, a.pvalue, a.confint, a.se)
    assert any("bit-identical" in n for n in b.notes)


def test_client_budget(parts):
    """Above the budget: refused with exact='require', the partitioned algebra
    (flagged) with 'auto'."""
    fit = sl.feols(FML, parts, vcov={"CRV1": "firm"})
    with pytest.raises(ClientMemoryError, match="client_budget"):
        sl.placebo(fit.with_exact("require", client_budget=1000), param="IM", draws=10)
    with pytest.raises(ClientMemoryError, match="client_budget"):
        sl.wildboot(fit.with_exact("require", client_budget=1000), param="IM", draws=99)
    low = fit.with_exact(client_budget=1000)
    assert sl.placebo(low, param="IM", draws=10).method == "partitioned"
    assert any("not bit-identical" in n for n in sl.wildboot(low, param="IM", draws=99).notes)
    with pytest.raises(ArgumentError, match="exact"):
        fit.with_exact("always")


@pytest.mark.parametrize("vcov,stat,scheme", [("iid", "coef", "units+timing"), ("iid", "t", "units"),
                                              ({"CRV1": "firm"}, "t", "units+timing"),
                                              ({"CRV1": "firm"}, "t", "timing")])
def test_equals_in_memory(panel, parts, vcov, stat, scheme):
    a = sl.placebo(sl.feols(FML, panel, vcov=vcov), param="IM", draws=300, stat=stat, scheme=scheme, seed=7)
    b = sl.placebo(sl.feols(FML, parts, vcov=vcov).with_exact("never"), param="IM", draws=300, stat=stat,
                   scheme=scheme, seed=7)
    assert a.method == "fast" and b.method == "partitioned"
    scale = np.abs(a.statistics).max()
    np.testing.assert_allclose(b.statistics, a.statistics, rtol=0, atol=1e-9 * scale)
    assert (b.count, b.n_valid, b.pvalue) == (a.count, a.n_valid, a.pvalue)
    assert b.observed == pytest.approx(a.observed, rel=1e-10)
    np.testing.assert_array_equal(b.assignments, a.assignments)  # the same draws


def test_refused_options(parts):
    fit = sl.feols(FML, parts, vcov={"CRV1": "industry"})
    with pytest.raises(PartitionedDesignError, match="CRV1 by the unit"):
        sl.placebo(fit, param="IM", draws=10)
    with pytest.raises(PartitionedDesignError, match="strata"):
        sl.placebo(fit, param="IM", draws=10, stat="coef", strata="industry")
    with pytest.raises(PartitionedDesignError, match="scheme"):
        sl.placebo(fit, param="IM", draws=10, stat="coef", scheme="iid")


@pytest.mark.parametrize("cl,kw", [("firm", {}), ("firm", {"impose_null": False}), ("industry", {"weights": "webb"})])
def test_wildboot_equals_in_memory(panel, parts, cl, kw):
    """The same weights for the same seed; statistics at 1e-12 of their scale
    (the partitioned bootstrap design is [X_u, D_u], the in-memory one [Xw, D_u]:
    the same column space and tested coefficient, other rounding)."""
    a = sl.wildboot(sl.feols(FML, panel, vcov={"CRV1": cl}), param="IM", draws=999, seed=2, **kw)
    b = sl.wildboot(sl.feols(FML, parts, vcov={"CRV1": cl}).with_exact("never"), param="IM", draws=999, seed=2,
                    **kw)
    np.testing.assert_allclose(b.statistics, a.statistics, rtol=0, atol=1e-12 * np.abs(a.statistics).max())
    assert b.pvalue == a.pvalue
    assert b.tstat == pytest.approx(a.tstat, rel=1e-12)
    np.testing.assert_allclose(b.confint, a.confint, rtol=1e-12)
    assert (b.n_clusters, b.n_bootclusters) == (a.n_clusters, a.n_bootclusters)


def test_wildboot_refuses_two_way(parts):
    fit = sl.feols(FML, parts, vcov={"CRV1": "firm+year"})
    with pytest.raises(PartitionedDesignError, match="one-way CRV1"):
        sl.wildboot(fit, param="IM", draws=99)


@pytest.mark.parametrize("gram_ratio", [1e-6, 1e6])
def test_meat_strategies(panel, parts, gram_ratio):
    """Both meat strategies (treated corrections to a Gram quadratic form; every
    unit's score by a matrix product) give the in-memory statistics."""
    from staggerlab.inference.resampling.placebo import PlaceboTuning

    a = sl.placebo(sl.feols(FML, panel, vcov={"CRV1": "firm"}), param="IM", draws=100, seed=3)
    b = sl.placebo(sl.feols(FML, parts, vcov={"CRV1": "firm"}).with_exact("never"), param="IM", draws=100, seed=3,
                   tuning=PlaceboTuning(gram_ratio=gram_ratio))
    np.testing.assert_allclose(b.statistics, a.statistics, rtol=0, atol=1e-9 * np.abs(a.statistics).max())


def test_assign_workers_balances_units():
    """The placement of the placebo tables against a brute-force optimum:
    every worker within one partition of an equal share, and within Graham's
    LPT bound (4/3 - 1/(3W)) of the best assignment."""
    import itertools

    from staggerlab.inference.distributed.partitions import assign_workers

    rng = np.random.default_rng(0)
    for _ in range(40):
        W = int(rng.integers(2, 4))
        w = rng.integers(1, 1000, size=int(rng.integers(1, 8))).tolist()
        workers = [f"tcp://w{j}" for j in range(W)]
        where = assign_workers(w, workers)
        load = [sum(x for x, a in zip(w, where) if a == k) for k in workers]
        best = min(max(sum(x for x, j in zip(w, js) if j == k) for k in range(W))
                   for js in itertools.product(range(W), repeat=len(w)))
        assert max(load) <= sum(w) / W + max(w)
        assert max(load) <= (4 / 3 - 1 / (3 * W)) * best + 1e-9
    # the 10-file benchmark panel on 2 workers: 5 and 5 partitions
    assert sorted(assign_workers([100] * 10, ["a", "b"]).count(x) for x in "ab") == [5, 5]
