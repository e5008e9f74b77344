"""Rambachan-Roth sensitivity: the HonestDiD package's published Medicaid-expansion example."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

import staggerlab as sl
from staggerlab.inference.did.cs import cs
from staggerlab.inference.did.honest import HonestDiDError, flci, honest

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
    # README: "the breakdown value for a significant effect is M ~ 0.03"
    assert res.breakdown == pytest.approx(0.03)


def test_relative_magnitudes_reproduce_published(medicaid):
    res = honest(medicaid, method="relative_magnitude", Mbar=list(PUB_RM))
    tab = res.tidy()
    assert tab.columns == ["Mbar", "ci_low", "ci_high"]
    for mb, lo, hi in tab.iter_rows():
        plo, phi = PUB_RM[mb]
        assert abs(lo - plo) <= PUB_TOL and abs(hi - phi) <= PUB_TOL, mb
    # README: "the breakdown value for a significant effect is Mbar = 2"
    assert res.breakdown == 2.0


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
