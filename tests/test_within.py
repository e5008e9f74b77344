"""The shared unit + period within solver and the package's rank rule."""

import numpy as np
import pytest

from staggerlab.inference.regression.rank import (
    COLLIN_TOL,
    independent_columns,
    is_full_rank,
    psd_pinv,
    scaled_cholesky,
)
from staggerlab.inference.regression.within import UnitPeriodWithin

LSQ_RTOL = 1e-10  # normal equations on per-unit blocks vs dense dummy-variable least squares


def _panel(seed: int, n_units: int = 40, n_periods: int = 7, K: int = 2, drop: float = 0.2):
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), n_periods)
    per = np.tile(np.arange(n_periods), n_units)
    keep = rng.random(unit.size) > drop
    keep[::n_periods] = True  # every unit keeps a row; period 0 keeps rows
    keep[:n_periods] = True  # every period keeps rows
    unit, per = unit[keep], per[keep]
    # rows in no particular order: the solver must not rely on grouping
    order = rng.permutation(unit.size)
    unit, per = unit[order], per[order]
    X = rng.normal(size=(unit.size, K))
    y = rng.normal(size=n_units)[unit] + 0.3 * per + X @ rng.normal(size=K) + rng.normal(size=unit.size)
    return unit, per, X, y


def _dummy_ols(unit, per, X, y, n_units, n_periods):
    D = np.zeros((unit.size, n_units + n_periods - 1 + X.shape[1]))
    D[np.arange(unit.size), unit] = 1.0
    t = per > 0
    D[np.flatnonzero(t), n_units + per[t] - 1] = 1.0
    D[:, n_units + n_periods - 1:] = X
    coef, *_ = np.linalg.lstsq(D, y, rcond=None)
    return coef[n_units:], float(np.sum((y - D @ coef) ** 2))


@pytest.mark.parametrize("K", [0, 1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_within_solver_matches_dummy_variable_ols(seed, K):
    U, T = 40, 7
    unit, per, X, y = _panel(seed, U, T, K)
    wi = UnitPeriodWithin(unit.astype(np.int32), U, per.astype(np.int8), T, X, y)
    C, Fy = wi.normal_equations()
    assert wi.factor(C)
    theta = wi.solve(Fy)
    ref, rss = _dummy_ols(unit, per, X, y, U, T)
    np.testing.assert_allclose(theta, ref, rtol=LSQ_RTOL, atol=LSQ_RTOL * np.abs(ref).max())
    assert wi.resid_ss(theta) == pytest.approx(rss, rel=LSQ_RTOL)
    np.testing.assert_allclose(wi.inverse() @ C, np.eye(wi.M), atol=1e-10)


def test_within_solver_refuses_a_control_collinear_with_the_period_effects():
    U, T = 20, 5
    unit, per, X, y = _panel(3, U, T, 1)
    X = np.column_stack([X[:, 0], 2.0 * per + 1.0])  # period trend: in the span of the period dummies
    wi = UnitPeriodWithin(unit, U, per.astype(np.int8), T, X, y)
    assert not wi.factor(wi.normal_equations()[0])


def test_independent_columns_drops_the_later_of_collinear_columns():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    X = np.column_stack([X, X[:, 0] + X[:, 2], X[:, 1]])
    assert independent_columns(X.T @ X) == [0, 1, 2]
    assert is_full_rank(X[:, :3].T @ X[:, :3])
    assert not is_full_rank(X.T @ X)
    G = X[:, :3].T @ X[:, :3]
    G[1, 1] = np.nan
    assert not is_full_rank(G)
    assert scaled_cholesky(X.T @ X) is None


def test_independent_columns_scale_and_ties():
    G = np.diag([1.0, 1e-12])
    # relative to its own diagonal the second column is fine; relative to a
    # large scale (its variation before the FEs) it is absorbed
    assert independent_columns(G) == [0, 1]
    assert independent_columns(G, scale=np.array([1.0, 1e4])) == [0]
    # ties drop: residual exactly tol * scale
    assert independent_columns(np.diag([1.0, COLLIN_TOL]), scale=np.ones(2)) == [0]
    assert independent_columns(np.zeros((2, 2))) == []


def test_psd_pinv_matches_numpy_on_singular_and_stacked_matrices():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(6, 4))
    H = A @ A.T  # rank 4
    P, r = psd_pinv(H, return_rank=True)
    assert r == 4
    np.testing.assert_allclose(P, np.linalg.pinv(H, hermitian=True), atol=1e-12)
    stack = np.stack([H, 2.0 * H, np.eye(6)])
    np.testing.assert_allclose(psd_pinv(stack), np.stack([psd_pinv(m) for m in stack]), atol=1e-12)
