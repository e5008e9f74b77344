"""The chunked kernels of the within algebra and of the lean event-study
regression: the same bits for one or two threads on a panel big enough to
run in parallel, and equal to dense numpy algebra."""

import numpy as np
import pytest

from staggerlab.inference.regression.within import UnitPeriodWithin
from staggerlab.kernels import _jit
from staggerlab.kernels.dummies import dummy_meat, dummy_moments

RTOL = 1e-10  # per-unit sums in chunks vs dense numpy products of the same 50k rows


def _panel(seed: int = 0, U: int = 2500, T: int = 25, K: int = 3, k: int = 8):
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(U), T)
    per = np.tile(np.arange(T), U)
    keep = rng.random(unit.size) > 0.2
    keep[::T] = True  # every unit keeps a row
    keep[:T] = True  # every period keeps a row
    unit, per = unit[keep], per[keep]
    order = rng.permutation(unit.size)  # rows in no particular order
    unit, per = unit[order], per[order]
    X = rng.normal(size=(unit.size, K))
    y = rng.normal(size=U)[unit] + 0.1 * per + X @ rng.normal(size=K) + rng.normal(size=unit.size)
    j = rng.integers(-1, k, size=unit.size).astype(np.int32)  # at most one active dummy per row
    return unit, per.astype(np.int8), X, y, j


def _unit_demean(A, unit, U):
    """``M_u A``: each column minus its unit mean (numpy, independent of the kernels)."""
    n = np.bincount(unit, minlength=U).astype(float)
    A = A.reshape(unit.size, -1)
    means = np.stack([np.bincount(unit, weights=A[:, c], minlength=U) / n for c in range(A.shape[1])], axis=1)
    return A - means[unit]


def _dense(unit, per, X, y, j, U, T, k):
    P = np.zeros((unit.size, T - 1))
    t = per > 0
    P[np.flatnonzero(t), per[t] - 1] = 1.0
    F = _unit_demean(np.hstack([P, X]), unit, U)
    D = np.zeros((unit.size, k))
    D[np.flatnonzero(j >= 0), j[j >= 0]] = 1.0
    return F, _unit_demean(D, unit, U), _unit_demean(y, unit, U)[:, 0]


def _in_threads(monkeypatch, n, fn):
    monkeypatch.setenv("STAGGERLAB_NUM_THREADS", str(n))
    return fn()


def test_the_panel_crosses_the_parallel_threshold():
    unit, per, X, y, j = _panel()
    M = 24 + X.shape[1]
    # the smallest work any of the tests' kernels reports (resid_ss: rows x M)
    assert unit.size * M >= _jit._PARALLEL_WORK


def test_within_sums_same_bits_for_any_thread_count_and_match_numpy(monkeypatch):
    U, T = 2500, 25
    unit, per, X, y, j = _panel()
    wi = UnitPeriodWithin(unit, U, per, T, X, y)
    theta = np.random.default_rng(1).normal(size=wi.M)

    def run():
        return wi.unit_sums(), wi.unit_rows(), wi.resid_ss(theta)

    one = _in_threads(monkeypatch, 1, run)
    for _ in range(3):
        two = _in_threads(monkeypatch, 2, run)
        for a, b in zip(one, two):
            assert np.array_equal(a, b)
    F, _, yu = _dense(unit, per, X, y, j, U, T, 8)
    C, Fy = wi.normal_equations()
    np.testing.assert_allclose(C, F.T @ F, rtol=RTOL, atol=RTOL * np.abs(F.T @ F).max())
    np.testing.assert_allclose(Fy, F.T @ yu, rtol=RTOL, atol=RTOL * np.abs(F.T @ yu).max())
    np.testing.assert_allclose(one[1].sum(axis=0), one[0][0], rtol=RTOL, atol=RTOL * np.abs(one[0]).max())
    e = yu - F @ theta
    assert one[2] == pytest.approx(e @ e, rel=RTOL)


def test_dummy_moments_and_meat_same_bits_for_any_thread_count_and_match_numpy(monkeypatch):
    U, T, k = 2500, 25, 8
    unit, per, X, y, j = _panel()
    wi = UnitPeriodWithin(unit, U, per, T, X, y)
    rng = np.random.default_rng(2)
    beta, gamma = rng.normal(size=k), rng.normal(size=wi.M)
    Theta = np.ascontiguousarray(rng.normal(size=(wi.M, k)))
    cl_U = np.arange(U) // 5  # clusters of five units
    cl_order = np.argsort(cl_U, kind="stable").astype(np.int64)
    G = int(cl_U.max()) + 1
    cl_starts = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(np.bincount(cl_U, minlength=G), out=cl_starts[1:])

    def run():
        mom = dummy_moments(*wi.cols, wi.max_rows, j, k)
        meat = dummy_meat(*wi.cols, wi.max_rows, j, beta, gamma, Theta, cl_order, cl_starts)
        return (*mom, meat)

    one = _in_threads(monkeypatch, 1, run)
    for _ in range(3):
        two = _in_threads(monkeypatch, 2, run)
        for a, b in zip(one, two):
            assert np.array_equal(a, b)
    F, Du, yu = _dense(unit, per, X, y, j, U, T, k)
    u = yu - Du @ beta - F @ gamma
    R = Du - F @ Theta
    S = np.stack([np.bincount(cl_U[unit], weights=R[:, a] * u, minlength=G) for a in range(k)], axis=1)
    refs = (F.T @ F, F.T @ yu, F.T @ Du, Du.T @ Du, Du.T @ yu, S.T @ S)
    for got, ref in zip(one, refs):
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * np.abs(ref).max())


@pytest.mark.parametrize("P", [6, 18])  # clusters of 12-25 rows: the P x P route (Woodbury) only, then both
def test_jackknife_rows_same_bits_for_any_thread_count_and_match_numpy(monkeypatch, P):
    from staggerlab.kernels.cluster import jackknife_rows

    U = 2500
    unit, per, X, y, j = _panel()
    rng = np.random.default_rng(3)
    # small entries: I - Q_g Q_g' stays positive definite
    Q = np.ascontiguousarray(0.3 / np.sqrt(P) * rng.normal(size=(unit.size, P)))
    A = np.ascontiguousarray(rng.normal(size=(unit.size, 2)))
    u = rng.normal(size=unit.size)
    order = np.argsort(unit, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(unit, minlength=U))]
    sizes = np.diff(starts)
    assert (sizes > P).any() and (sizes <= P).any() == (P == 18)
    assert float(np.sum(sizes * np.minimum(sizes, P) ** 2)) >= _jit._PARALLEL_WORK  # two threads do run
    one = _in_threads(monkeypatch, 1, lambda: jackknife_rows(Q, A, u, order, starts))
    for _ in range(3):
        two = _in_threads(monkeypatch, 2, lambda: jackknife_rows(Q, A, u, order, starts))
        assert all(np.array_equal(a, b) for a, b in zip(one, two))
    for g in np.r_[0, 7, U - 1, np.flatnonzero(sizes <= P)[:2], np.flatnonzero(sizes > P)[:2]]:
        rows = order[starts[g]:starts[g + 1]]
        Mg = np.eye(rows.size) - Q[rows] @ Q[rows].T  # numpy's dense solve, cluster by cluster
        np.testing.assert_allclose(one[0][g], -A[rows].T @ np.linalg.solve(Mg, u[rows]), rtol=1e-10)
        # the pivot is that of the matrix factored: T x T, or P x P for a cluster longer than P
        small = Mg if rows.size <= P else np.eye(P) - Q[rows].T @ Q[rows]
        assert one[1][g] == pytest.approx(np.min(np.diag(np.linalg.cholesky(small)) ** 2), rel=1e-10)
