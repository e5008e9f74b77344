"""Rambachan-Roth sensitivity: the HonestDiD package's published Medicaid-expansion example."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyfixest as pf
import pytest
from scipy import stats

import staggerlab as sl
from staggerlab.errors import HonestGridWarning
from staggerlab.inference.did import honest_rm
from staggerlab.inference.did.cs import cs
from staggerlab.inference.did.honest import HonestDiDError, flci, honest, rm_ci

DATA = Path(__file__).parent / "data"
PUB_TOL = 1e-3  # the brief's bar; published values carry 3 significant digits
EXACT_TOL = 1e-9  # closed form vs the optimiser

# README.md of github.com/asheshrambachan/HonestDiD (commit 6813f02), "Sensitivity analysis
# using relative magnitudes restrictions": createSensitivityResults_relativeMagnitudes(betahat,
# sigma, numPrePeriods=5, numPostPeriods=2, Mbarvec=seq(0.5,2,by=0.5)) -> (lb, ub), method C-LF
PUB_RM = {0.5: (0.0241, 0.0673), 1.0: (0.0171, 0.0720), 1.5: (0.00859, 0.0796), 2.0: (-0.00107, 0.0883)}
# same README, "Sensitivity Analysis Using Smoothness Restrictions": createSensitivityResults(...,
# Mvec=seq(0, 0.05, by=0.01)) -> (lb, ub), method FLCI
PUB_SD = {
    0.00: (0.0259, 0.0607), 0.01: (0.0132, 0.0787), 0.02: (0.00286, 0.0907),
    0.03: (-0.00714, 0.101), 0.04: (-0.0171, 0.111), 0.05: (-0.0271, 0.121),
}


@dataclass
class EventStudy:
    rel_time: np.ndarray
    coef: np.ndarray
    vcov: np.ndarray
    ref: int = -1


@pytest.fixture(scope="module")
def medicaid() -> EventStudy:
    """The README's event study: TWFE of dins on year x D dummies (ref 2013) | stfips + year,
    clustered by stfips, years < 2016, states first treated in 2015 dropped, D = 1[yexp2 == 2014]."""
    df = pl.read_csv(DATA / "ehec.csv")
    df = df.filter((pl.col("year") < 2016) & (pl.col("yexp2").is_null() | (pl.col("yexp2") != 2015)))
    df = df.with_columns((pl.col("yexp2") == 2014).fill_null(False).cast(pl.Float64).alias("D"))
    years = [y for y in range(2008, 2016) if y != 2013]
    names = [f"D_{y}" for y in years]
    df = df.with_columns([((pl.col("year") == y).cast(pl.Float64) * pl.col("D")).alias(n) for y, n in zip(years, names)])
    fit = sl.feols("dins ~ " + " + ".join(names) + " | stfips + year", df, vcov={"CRV1": "stfips"})
    assert fit.coefnames == names
    return EventStudy(np.array(years) - 2014, np.asarray(fit.beta), np.asarray(fit.vcov()))


def test_smoothness_flci_reproduces_published(medicaid):
    res = honest(medicaid, method="smoothness", M=list(PUB_SD))
    tab = res.tidy()
    assert tab.columns == ["M", "ci_low", "ci_high"]
    for m, lo, hi in tab.iter_rows():
        plo, phi = PUB_SD[round(m, 2)]
        assert abs(lo - plo) <= PUB_TOL and abs(hi - phi) <= PUB_TOL, m
    # README: "the breakdown value for a significant effect is M ~ 0.03", read off its grid; the
    # published intervals put Rambachan-Roth's breakdown (largest significant M) in [0.02, 0.03)
    assert 0.02 <= res.breakdown < 0.03


def test_relative_magnitudes_reproduce_published(medicaid):
    res = honest(medicaid, method="relative_magnitude", Mbar=list(PUB_RM))
    tab = res.tidy()
    assert tab.columns == ["Mbar", "ci_low", "ci_high"]
    for mb, lo, hi in tab.iter_rows():
        plo, phi = PUB_RM[mb]
        assert abs(lo - plo) <= PUB_TOL and abs(hi - phi) <= PUB_TOL, mb
    # README: "the breakdown value for a significant effect is Mbar = 2", read off its grid; the
    # published intervals put Rambachan-Roth's breakdown (largest significant Mbar) in [1.5, 2)
    assert 1.5 <= res.breakdown < 2.0


def test_flci_at_zero_is_min_variance_linear_trend_estimator(medicaid):
    """Independent closed form: at M = 0 the FLCI is the minimum-variance estimator that is
    unbiased under exactly linear trends, +- z sd (the folded-normal quantile at 0 is z)."""
    b, V = medicaid.coef, medicaid.vcov
    n_pre, t_pre = 5, np.arange(-5, 0)
    for l_post in (np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([0.0, 1.0])):
        # min v'Vv over v = (p, l_post) s.t. t_pre'p + (1, 2)'l_post = 0 (KKT system)
        Vpp, Vpq = V[:n_pre, :n_pre], V[:n_pre, n_pre:]
        kkt = np.block([[2 * Vpp, t_pre[:, None]], [t_pre[None, :], np.zeros((1, 1))]])
        rhs = np.concatenate([-2 * Vpq @ l_post, [-(np.arange(1, 3) @ l_post)]])
        p = np.linalg.solve(kkt, rhs)[:n_pre]
        v = np.concatenate([p, l_post])
        centre, half = v @ b, stats.norm.ppf(0.975) * np.sqrt(v @ V @ v)
        lo, hi = flci(b, V, n_pre, l_post, 0.0)
        assert lo == pytest.approx(centre - half, abs=EXACT_TOL)
        assert hi == pytest.approx(centre + half, abs=EXACT_TOL)


def test_intervals_widen_with_the_restriction_and_contain_the_estimate(medicaid):
    sd = honest(medicaid, method="smoothness", M=[0.0, 0.005, 0.02], e="average")
    assert np.all(np.diff(sd.ci_high - sd.ci_low) > 0)
    rm = honest(medicaid, method="relative_magnitude", Mbar=[0.0, 1.0], e=1, grid_points=200)
    assert np.all(np.diff(rm.ci_high - rm.ci_low) >= 0)
    assert np.all((rm.ci_low <= rm.estimate) & (rm.estimate <= rm.ci_high))
    assert rm.estimate == pytest.approx(medicaid.coef[-1])


def test_plot_and_summary(medicaid, tmp_path):
    res = honest(medicaid, method="smoothness", M=[0.0, 0.01, 0.02])
    fig = res.plot(tmp_path / "sens.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "$M$" and ax.get_ylabel()
    assert (tmp_path / "sens.png").exists()
    assert "breakdown" in res.summary()


def test_callaway_santanna_input():
    df = sl.simulate.staggered(300, 8, start=1, cohorts=[4, 5, 6], seed=2)
    varying = cs(df, y="y", unit="unit", time="time", cohort="cohort")
    with pytest.raises(HonestDiDError, match="universal"):
        honest(varying, method="smoothness", M=[0.0])
    uni = cs(df, y="y", unit="unit", time="time", cohort="cohort", base_period="universal", window=(-3, 2))
    res = honest(uni, method="smoothness", M=[0.0, 0.1])
    assert res.tidy().height == 2 and np.all(res.ci_low < res.ci_high)


def test_bad_inputs(medicaid):
    gap = EventStudy(np.array([-5, -3, -2, 0, 1]), medicaid.coef[[0, 2, 3, 5, 6]],
                     medicaid.vcov[np.ix_([0, 2, 3, 5, 6], [0, 2, 3, 5, 6])])
    with pytest.raises(HonestDiDError, match="consecutive"):
        honest(gap, method="smoothness", M=[0.0])
    with pytest.raises(HonestDiDError, match="outside"):
        honest(medicaid, method="smoothness", M=[0.0], e=2)
    with pytest.raises(TypeError):
        honest(medicaid, method="smoothness", Mbar=[1.0])


# ------------------------------------------------------------------ breakdown values
def _significant(ci):
    return ci[0] > 0 or ci[1] < 0


@pytest.mark.parametrize("method", ["smoothness", "relative_magnitude"])
def test_breakdown_is_the_largest_significant_size(medicaid, method):
    """Independent check of the bisection: the robust CI computed directly just below the
    breakdown value excludes 0 and just above it (relative 2e-3 > the 1e-3 tolerance) contains 0."""
    b, V, l_post = medicaid.coef, medicaid.vcov, np.array([1.0, 0.0])
    if method == "smoothness":
        res = honest(medicaid, method=method, M=[0.0, 0.01, 0.02, 0.05])
        ci = lambda m: flci(b, V, 5, l_post, m)  # noqa: E731
    else:
        res = honest(medicaid, method=method, Mbar=[0.5, 1.0, 2.0])
        ci = lambda m: rm_ci(b, V, 5, l_post, m)  # noqa: E731
    bd = res.breakdown
    assert 0 < bd < np.inf
    assert _significant(ci(bd * (1 - 1e-6)))
    assert not _significant(ci(bd * (1 + 2e-3)))
    assert "remains significant at 95%" in res.summary()


@pytest.mark.parametrize("method, kw", [("smoothness", {"M": [0.0, 0.1]}), ("relative_magnitude", {"Mbar": [0.0, 1.0]})])
def test_breakdown_is_none_when_not_significant_at_zero(method, kw):
    es = EventStudy(np.array([-3, -2, 0, 1]), np.array([0.0, 0.0, 0.1, 0.1]), 0.01 * np.eye(4))  # t = 1
    res = honest(es, method=method, **kw)
    assert res.ci_low[0] < 0 < res.ci_high[0]  # not significant even at size 0
    assert res.breakdown is None
    assert "not significant" in res.summary()


# ------------------------------------------------------------------ relative magnitudes far from zero
@pytest.fixture(scope="module")
def df_het_parts():
    """pyfixest's df_het (shipped with pyfixest 0.60), dynamic TWFE event times -5..5 binned, CRV1 by
    state: the first post-period effect is 24.5 standard errors from zero."""
    from staggerlab.inference.did.event_study import event_study
    from staggerlab.inference.did.honest import _event_study_parts

    df = pd.read_csv(pf.__path__[0] + "/did/data/df_het.csv")
    es = event_study(df, y="dep_var", unit="unit", time="year", cohort="g", cluster="state", method="twfe")
    beta, sigma, n_pre, n_post = _event_study_parts(es)
    l_vec = np.eye(n_post)[0]
    assert l_vec @ beta[n_pre:] / np.sqrt(sigma[n_pre, n_pre]) > 24
    return beta, sigma, n_pre, l_vec


def _brute_force_rm(beta, sigma, n_pre, l_vec, Mbar, lo, hi, points):
    """Hull of the thetas accepted on a fixed fine grid by the union of the polyhedra's tests."""
    alpha = 0.05
    z = np.random.default_rng(np.random.SeedSequence(0)).standard_normal((10000, 2 * l_vec.size))
    thetas = np.linspace(lo, hi, points)
    acc = np.zeros(points, dtype=bool)
    for s in range(-(n_pre - 1), 1):
        for positive in (True, False):
            A = honest_rm._rm_constraints(n_pre, l_vec.size, Mbar, s, positive)
            acc |= honest_rm._RMTest(beta, sigma, A, n_pre, l_vec, alpha, "LF", z).accept(thetas)
    assert not acc[0] and not acc[-1]  # the brute-force grid covers the set
    return thetas[acc].min(), thetas[acc].max()


@pytest.mark.parametrize("Mbar", [0.0, 2.0])
def test_rm_far_from_zero_equals_brute_force_grid(df_het_parts, Mbar):
    """The old grid (+-20 SE around zero) returned nan at Mbar = 0 and cut the interval at Mbar = 2.
    Reference: a fixed 30,001-point grid over [0.5, 2.5] (step 6.7e-5); agreement to 1e-3 of the width."""
    beta, sigma, n_pre, l_vec = df_het_parts
    lo, hi = rm_ci(beta, sigma, n_pre, l_vec, Mbar)
    blo, bhi = _brute_force_rm(beta, sigma, n_pre, l_vec, Mbar, 0.5, 2.5, 30001)
    tol = 1e-3 * (bhi - blo)
    assert abs(lo - blo) <= tol and abs(hi - bhi) <= tol
    if Mbar == 0:  # the reference interval, to its 3 decimals
        assert lo == pytest.approx(1.259, abs=1e-3) and hi == pytest.approx(1.476, abs=1e-3)


def test_rm_grid_argument_and_edge_warning(df_het_parts):
    beta, sigma, n_pre, l_vec = df_het_parts
    full = rm_ci(beta, sigma, n_pre, l_vec, 2.0)
    with pytest.warns(HonestGridWarning, match="upper end"):  # HonestDiD's fixed grid: +-20 SE around 0
        cut = rm_ci(beta, sigma, n_pre, l_vec, 2.0, grid=(-20 * np.sqrt(sigma[n_pre, n_pre]),
                                                         20 * np.sqrt(sigma[n_pre, n_pre])))
    assert cut[1] < full[1]
    wide = rm_ci(beta, sigma, n_pre, l_vec, 2.0, grid=(0.0, 3.0))  # an expert grid covering the set
    np.testing.assert_allclose(wide, full, atol=1e-5)


@pytest.mark.parametrize("case", ["medicaid", "nine_post_periods"])
def test_vertex_statistic_equals_highs_linear_programs(medicaid, case):
    """Reference: the test statistic eta(y) = min{eta : y - X d <= sd eta} solved as a linear program
    by HiGHS, against the maximum over the enumerated dual vertices, at the data and at random y.
    Nine post periods: 48,620 bases, enumerated in chunks."""
    from scipy import optimize

    if case == "medicaid":
        b, V, n_pre, cases = medicaid.coef, medicaid.vcov, 5, ((0, 1.0), (-2, 0.5))
    else:
        rng = np.random.default_rng(5)
        n_pre, R = 2, rng.normal(size=(11, 11))
        b, V = rng.normal(size=11), (R @ R.T + np.eye(11)) / 100
        cases = ((0, 1.5),)
    l_post = np.eye(b.size - n_pre)[0]
    for s_loc, Mbar in cases:
        A = honest_rm._rm_constraints(n_pre, l_post.size, Mbar, s_loc, True)
        test = honest_rm._RMTest(b, V, A, n_pre, l_post, 0.05, "ARP", None)
        assert test.V is not None
        ys = np.vstack([test.Y, np.random.default_rng(3).multivariate_normal(test.Y, test.S, size=10)])
        c = np.zeros(test.W.shape[1])
        c[0] = 1.0
        for y in ys:
            lp = optimize.linprog(c, A_ub=-test.W, b_ub=-y, bounds=[(None, None)] * c.size, method="highs")
            assert (test.V @ y).max() == pytest.approx(lp.fun, abs=1e-9)


def test_truncated_normal_tail_equals_scipy():
    rng = np.random.default_rng(1)
    zlo = rng.normal(0, 8, 5000)
    zup = zlo + rng.exponential(3, zlo.size)
    zup[::5] = np.inf
    stat = zlo + rng.uniform(0, 1, zlo.size) * np.where(np.isinf(zup), 4, zup - zlo)
    ref = stats.truncnorm.sf(stat, zlo, zup)
    np.testing.assert_allclose(honest_rm._upper_prob(stat, zlo, zup), ref, rtol=1e-6, atol=1e-13)


def test_a_singular_event_study_covariance_is_refused():
    # 4 clusters behind 10 coefficients: the CRV1 covariance has rank 3, so some combination of
    # the coefficients would count as known exactly (the FLCI's root finder hit a NaN on it)
    import polars as pl

    df = sl.simulate.staggered(60, 10, seed=2).with_columns((pl.col("unit") % 4).alias("grp"))
    es = sl.event_study(df, y="y", unit="unit", time="time", cohort="cohort", cluster="grp")
    assert np.linalg.matrix_rank(es.vcov) <= 3 < es.coef.size
    for method in ("relative_magnitude", "smoothness"):
        with pytest.raises(sl.errors.HonestDiDError, match=r"covariance of its 10 coefficients has rank 3 .*"
                                                           r"3 degrees of freedom: 4 clusters"):
            sl.honest(es, method=method)
