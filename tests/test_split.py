"""split_difference: the permutation statistics equal brute-force refits."""

import numpy as np
import polars as pl
import pytest

import staggerlab as sl
from staggerlab._seed import block_generator, resolve_entropy
from staggerlab.panels.panel import factorize_column

pytestmark = pytest.mark.filterwarnings("ignore::staggerlab.errors.SingletonWarning")


@pytest.fixture(scope="module")
def panel():
    df = sl.simulate.paper_panel(seed=3, n_firms=300, n_treated=40)
    # drop some rows so units and the two groups see different periods
    rng = np.random.default_rng(0)
    return df.filter(pl.Series(rng.random(df.height) > 0.1))


def _slope(frame, controls):
    f = sl.feols("NQPF ~ IM + " + " + ".join(controls) + " | firm + year", frame)
    return f.coef()["IM"]


def test_permutation_statistics_equal_refits(panel):
    controls = ["Size", "Lev"]
    draws, seed = 6, 11
    r = sl.split_difference(panel, y="NQPF", param="IM", controls=controls, group="hightech",
                            unit="firm", time="year", draws=draws, seed=seed)
    # the same permutations of the unit labels, refitted with feols one by one
    ucodes = factorize_column(panel["firm"])
    g_unit = np.zeros(ucodes.max() + 1, dtype=bool)
    g_unit[ucodes] = (panel["hightech"] == r.levels[1]).to_numpy()
    rng = block_generator(resolve_entropy(seed), 0)
    for b in range(draws):
        perm = rng.permutation(g_unit)
        in1 = pl.Series(perm[ucodes])
        brute = _slope(panel.filter(in1), controls) - _slope(panel.filter(~in1), controls)
        assert r.statistics[b] == pytest.approx(brute, rel=1e-9, abs=1e-12)
    assert r.difference == pytest.approx(_slope(panel.filter(pl.col("hightech") == r.levels[1]), controls)
                                         - _slope(panel.filter(pl.col("hightech") == r.levels[0]), controls), rel=1e-12)


def test_same_numbers_for_any_n_jobs(panel):
    kw = dict(y="NQPF", param="IM", controls=["Size"], group="hightech", unit="firm", time="year", draws=250, seed=2)
    a = sl.split_difference(panel, n_jobs=1, **kw)
    b = sl.split_difference(panel, n_jobs=2, **kw)
    np.testing.assert_array_equal(a.statistics, b.statistics)
    assert a.pvalue == b.pvalue
