"""Entropy balancing: moments, the primal optimum, weighted TWFE, infeasibility."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyfixest as pf
import pytest
from scipy import optimize

import staggerlab as sl
from staggerlab.errors import BalanceConvergenceError, CollinearityError
from staggerlab.inference.selection.ebalance import InfeasibleBalanceError, ebalance_weights, entropy_balance

#: the brief's contract on balanced moments
MOMENT_TOL = 1e-8
#: feols vs pyfixest on the same weighted sample
PEER_TOL = 1e-8
#: SLSQP on the primal stops at ~1e-9 in the objective; weights agree to about this
PRIMAL_TOL = 1e-5


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return sl.simulate.staggered(240, 8, never_share=0.7, n_controls=3, seed=11).with_columns(
        (pl.col("x3") > 0.3).cast(pl.Float64).alias("dummy")
    )


@pytest.mark.parametrize("moments", [1, 2])
def test_moments_match(panel, moments):
    cov = ["x1", "x2", "x3", "dummy"]
    res = entropy_balance(panel, y="y", treat="treat", unit="unit", time="time", covariates=cov, moments=moments)
    s = res.sample
    g = (s["cohort"] > 0).to_numpy()
    w = s["_ebw"].to_numpy()
    X = s.select(cov).to_numpy()
    wc = w[~g] / w[~g].sum()
    np.testing.assert_allclose(wc @ X[~g], X[g].mean(axis=0), rtol=0, atol=MOMENT_TOL)
    if moments == 2:
        var_c = wc @ (X[~g] - wc @ X[~g]) ** 2
        np.testing.assert_allclose(var_c, X[g].var(axis=0), rtol=0, atol=MOMENT_TOL)
        assert "dummy^2" not in res.constraints
    assert np.all(w[g] == 1.0) and abs(w[~g].sum() - g.sum()) < 1e-8 * g.sum()
    assert res.max_gap < MOMENT_TOL and res.n_iter >= 1
    bal = res.balance()
    assert (bal["smd_after"].abs() < 1e-8).all() and (bal["smd_before"].abs() > 0).any()
    assert "Newton iteration" in res.summary()


def test_binary_covariate_closed_form():
    # one 0/1 covariate: the max-entropy weights are uniform within each value,
    # with totals equal to the target shares
    x = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 0], dtype=float)
    m = 0.55
    sol = ebalance_weights(x[:, None], np.array([m]))
    expect = np.where(x == 1, m / x.sum(), (1 - m) / (x.size - x.sum()))
    np.testing.assert_allclose(sol.weights, expect, rtol=0, atol=1e-12)


def test_equals_primal_solution():
    rng = np.random.default_rng(2)
    C = np.column_stack([rng.normal(size=40), rng.gamma(2.0, size=40)])
    target = np.array([0.3, 2.4])
    sol = ebalance_weights(C, target)
    n = C.shape[0]
    cons = [
        {"type": "eq", "fun": lambda w: w @ C - target, "jac": lambda w: C.T},
        {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones((1, n))},
    ]
    primal = optimize.minimize(
        lambda w: np.sum(w * np.log(w * n)), np.full(n, 1.0 / n), jac=lambda w: np.log(w * n) + 1.0,
        constraints=cons, bounds=[(1e-12, 1.0)] * n, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500},
    )
    assert primal.success
    np.testing.assert_allclose(sol.weights, primal.x, atol=PRIMAL_TOL)
    assert np.sum(sol.weights * np.log(sol.weights * n)) <= primal.fun + 1e-10


def test_weighted_twfe_equals_pyfixest(panel):
    cov = ["x1", "x2"]
    res = entropy_balance(panel, y="y", treat="treat", unit="unit", time="time", covariates=cov, controls=["x3"])
    ref = pf.feols("y ~ treat + x3 | unit + time", res.sample.to_pandas(), vcov={"CRV1": "unit"}, weights="_ebw")
    np.testing.assert_allclose(res.fit.coef()["treat"], ref.coef()["treat"], rtol=PEER_TOL)
    np.testing.assert_allclose(res.fit.se()["treat"], ref.se()["treat"], rtol=PEER_TOL)
    assert res.tidy()["term"].to_list() == ["treat", "x3"]


def test_infeasible_range(panel):
    # the treated group's mean of z lies above every control's value
    df = panel.with_columns(pl.when(pl.col("cohort") > 0).then(5.0).otherwise(pl.col("x1").clip(-3, 3)).alias("z"))
    with pytest.raises(InfeasibleBalanceError, match="'z'.*outside"):
        entropy_balance(df, y="y", treat="treat", unit="unit", time="time", covariates=["x2", "z"])


def test_jointly_infeasible():
    # each target inside its column's range, but outside the controls' convex hull
    C = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.2], [0.2, 0.5]])
    with pytest.raises(InfeasibleBalanceError, match="convex hull"):
        ebalance_weights(C, np.array([0.6, 0.6]), maxiter=100)


def test_collinear_constraints():
    rng = np.random.default_rng(0)
    a = rng.normal(size=30)
    with pytest.raises(CollinearityError, match="collinear"):
        ebalance_weights(np.column_stack([a, 2 * a + 1]), np.array([0.1, 1.2]))


# ---------------------------------------------------------- degenerate input (#23)
def test_maxiter_is_non_convergence_not_infeasibility(panel):
    cov = ["x1", "x2", "x3"]
    with pytest.raises(BalanceConvergenceError, match=r"maxiter=1 .*attainable") as err:
        entropy_balance(panel, y="y", treat="treat", unit="unit", time="time", covariates=cov, maxiter=1)
    assert not isinstance(err.value, InfeasibleBalanceError)
    assert isinstance(err.value, sl.errors.ConvergenceError)
    # the same data converge with the default maxiter: the target was attainable
    entropy_balance(panel, y="y", treat="treat", unit="unit", time="time", covariates=cov)
    # outside the convex hull stays infeasible whatever maxiter
    C = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.2], [0.2, 0.5]])
    with pytest.raises(InfeasibleBalanceError, match="convex hull"):
        ebalance_weights(C, np.array([0.6, 0.6]), maxiter=1)


def test_tol_and_reported_gaps_in_stated_units():
    """tol bounds the gap in sd of each column (ddof=0); max_gap is the same gap in the
    columns' own units; both recomputed here from the weights."""
    rng = np.random.default_rng(4)
    C = np.column_stack([1000.0 * rng.normal(size=200), 0.001 * rng.gamma(2.0, size=200)])
    target = np.array([150.0, 0.0022])
    for tol in (1e-1, 1e-3):  # loose: Newton stops with visible gaps
        sol = ebalance_weights(C, target, tol=tol)
        raw = np.abs(sol.weights @ C - target)
        assert sol.max_std_gap <= tol
        np.testing.assert_allclose(sol.max_std_gap, np.max(raw / C.std(axis=0)), rtol=1e-6)
        np.testing.assert_allclose(sol.max_gap, raw.max(), rtol=1e-6)
    assert ebalance_weights(C, target, tol=1e-1).max_gap > 1e-1  # the raw gap of a wide column exceeds tol


def test_weight_underflow_is_refused():
    # an outlying control must get a weight below the smallest double to reach the target
    C = np.array([-1.0, 0.0, 1.0, 1000.0])[:, None]
    with pytest.raises(InfeasibleBalanceError, match="underflows to 0"):
        ebalance_weights(C, np.array([-0.5]))


@pytest.mark.parametrize("name", ["_ebw", "_cohort"])
def test_covariate_named_like_a_derived_column(panel, name):
    """The estimator's frame renames it: the clean name's result, under the user's name."""
    df = panel.with_columns(pl.col("x2").alias(name))
    res = entropy_balance(df, y="y", treat="treat", unit="unit", time="time", covariates=["x1", name])
    ref = entropy_balance(panel, y="y", treat="treat", unit="unit", time="time", covariates=["x1", "x2"])
    assert res.fit.coef()["treat"] == pytest.approx(ref.fit.coef()["treat"], rel=1e-12)
    np.testing.assert_allclose(res.weights, ref.weights, rtol=1e-12)
    assert name in res.sample.columns and res.fit.design.weights_name != name
