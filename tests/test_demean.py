"""Property tests of the demeaner against a dense dummy-variable regression.

The reference is the textbook definition: the within transformation of ``x``
is the (weighted) least-squares residual of ``x`` on every FE's dummies,
computed here with ``numpy.linalg.lstsq`` on explicit indicator matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import dummies, fe_design

from staggerlab.errors import ConvergenceError
from staggerlab.inference.regression.absorb import Absorber, drop_singletons
from staggerlab.kernels import demean as kd

#: agreement with the dense reference, relative to the column's scale (max |x|, at least 1)
REF_RTOL = 1e-8
#: idempotence / orthogonality / permutation: same scale, machine-precision algebra
PROP_RTOL = 1e-9
METHODS = ["exact", "iterative"]
N_FE = [1, 2, 3]


def dense_within(x: np.ndarray, codes: list[np.ndarray], w: np.ndarray | None) -> np.ndarray:
    """Weighted residuals of ``x`` on all FE dummies (explicit lstsq)."""
    D = np.hstack([dummies(c) for c in codes])
    sw = np.ones(x.shape[0]) if w is None else np.sqrt(w)
    b = np.linalg.lstsq(D * sw[:, None], x * sw[:, None], rcond=None)[0]
    return x - D @ b


def scale(x: np.ndarray) -> float:
    return max(1.0, float(np.abs(x).max()))


def absorb(case: dict, method: str) -> Absorber:
    return Absorber(case["codes"], case["weights"], method=method)


@pytest.mark.parametrize("n_fe", N_FE)
@pytest.mark.parametrize("method", METHODS)
@given(data=st.data())
def test_equals_dummy_regression(method, n_fe, data):
    case = data.draw(fe_design(n_fe=n_fe))
    got = absorb(case, method).demean(case["x"])
    ref = dense_within(case["x"], case["codes"], case["weights"])
    np.testing.assert_allclose(got, ref, rtol=0, atol=REF_RTOL * scale(case["x"]))


@pytest.mark.parametrize("n_fe", N_FE)
@pytest.mark.parametrize("method", METHODS)
@given(data=st.data())
def test_idempotent(method, n_fe, data):
    case = data.draw(fe_design(n_fe=n_fe))
    ab = absorb(case, method)
    once = ab.demean(case["x"])
    twice = ab.demean(once)
    np.testing.assert_allclose(twice, once, rtol=0, atol=PROP_RTOL * scale(case["x"]))


@pytest.mark.parametrize("n_fe", N_FE)
@pytest.mark.parametrize("method", METHODS)
@given(data=st.data())
def test_orthogonal_to_every_fe(method, n_fe, data):
    case = data.draw(fe_design(n_fe=n_fe))
    x, w = case["x"], case["weights"]
    w = np.ones(x.shape[0]) if w is None else w
    r = absorb(case, method).demean(x)
    for c in case["codes"]:
        D = dummies(c)
        # D' W r is a sum of up to N terms of size |w x|: scale the tolerance by that sum
        bound = PROP_RTOL * max(1.0, float((w[:, None] * np.abs(x)).sum()))
        np.testing.assert_allclose(D.T @ (w[:, None] * r), 0.0, rtol=0, atol=bound)


@pytest.mark.parametrize("n_fe", N_FE)
@pytest.mark.parametrize("method", METHODS)
@given(data=st.data())
def test_row_order_invariant(method, n_fe, data):
    case = data.draw(fe_design(n_fe=n_fe))
    n = case["x"].shape[0]
    perm = data.draw(st.permutations(range(n)))
    perm = np.asarray(perm)
    w = case["weights"]
    permuted = Absorber([c[perm] for c in case["codes"]], None if w is None else w[perm], method=method)
    got = permuted.demean(case["x"][perm])
    ref = absorb(case, method).demean(case["x"])[perm]
    np.testing.assert_allclose(got, ref, rtol=0, atol=PROP_RTOL * scale(case["x"]))


@pytest.mark.parametrize("method", METHODS)
@given(case=fe_design(n_fe=2, max_cols=2))
def test_vector_equals_matrix_column(method, case):
    ab = absorb(case, method)
    full = ab.demean(case["x"])
    col = ab.demean(case["x"][:, 0])
    assert col.shape == (case["x"].shape[0],)
    np.testing.assert_allclose(col, full[:, 0], rtol=0, atol=PROP_RTOL * scale(case["x"]))


@given(case=fe_design(n_fe=(2, 3)), mask_seed=st.integers(0, 2**32 - 1))
def test_subset_equals_fresh_absorber(case, mask_seed):
    n = case["x"].shape[0]
    mask = np.random.default_rng(mask_seed).random(n) < 0.7
    mask[:2] = True
    ab = Absorber(case["codes"], case["weights"])
    w = case["weights"]
    fresh = Absorber([c[mask] for c in case["codes"]], None if w is None else w[mask])
    np.testing.assert_allclose(
        ab.subset(mask).demean(case["x"][mask]),
        fresh.demean(case["x"][mask]),
        rtol=0,
        atol=PROP_RTOL * scale(case["x"]),
    )


def test_no_fixed_effect_is_identity():
    x = np.arange(12.0).reshape(6, 2)
    out = Absorber([], nobs=6).demean(x)
    np.testing.assert_array_equal(out, x)
    assert out is not x


def test_wrong_row_count_raises():
    ab = Absorber([np.array([0, 0, 1, 1])])
    with pytest.raises(ValueError, match="expected 4 rows, got 3"):
        ab.demean(np.ones(3))


def test_auto_picks_exact_for_small_second_fe():
    rng = np.random.default_rng(0)
    unit = np.repeat(np.arange(200), 6)
    time = np.tile(np.arange(6), 200)
    ab = Absorber([unit, time])
    assert ab.algorithm == "exact"
    big = Absorber([rng.integers(0, 3000, 20_000), rng.integers(0, 3000, 20_000)])
    assert big.algorithm == "iterative"


def test_iterative_reports_non_convergence():
    # an unbalanced, weakly connected two-way design needs many sweeps
    rng = np.random.default_rng(1)
    n = 400
    a = rng.integers(0, 40, n)
    b = rng.integers(0, 40, n)
    x = rng.normal(size=(n, 2))
    ab = Absorber([a, b], method="iterative", maxiter=1, tol=1e-14)
    with pytest.raises(ConvergenceError, match=r"did not converge for \d+ column\(s\) in 1 iterations"):
        ab.demean(x)
    # the same problem converges with the default cap
    ok = Absorber([a, b], method="iterative", tol=1e-14)
    np.testing.assert_allclose(ok.demean(x), dense_within(x, [a, b], None), rtol=0, atol=REF_RTOL * scale(x))
    assert ok.last_iterations > 1


# ------------------------------------------------------------------ kernels
@given(case=fe_design(n_fe=1, weighted=True))
def test_kernel_group_weights_and_sweep_one(case):
    codes = np.unique(case["codes"][0], return_inverse=True)[1].astype(np.int64)
    w = case["weights"]
    G = int(codes.max()) + 1
    sumw = kd.group_weights(codes, w, G)
    np.testing.assert_allclose(sumw, np.bincount(codes, weights=w, minlength=G), rtol=1e-13)
    x = np.ascontiguousarray(case["x"])
    means = np.stack([np.bincount(codes, weights=w * x[:, k], minlength=G) for k in range(x.shape[1])], 1) / sumw[:, None]
    np.testing.assert_allclose(kd.sweep_one(x, codes, w, sumw), x - means[codes], rtol=0, atol=PROP_RTOL * scale(x))


@given(case=fe_design(n_fe=(2, 3), weighted=True))
def test_kernel_cross_hessian(case):
    codes = [np.unique(c, return_inverse=True)[1].astype(np.int64) for c in case["codes"]]
    w = case["weights"]
    A, small = codes[0], codes[1:]
    n_small = [int(c.max()) + 1 for c in small]
    offs = np.cumsum([0, *n_small])
    codes_NQ = np.ascontiguousarray(np.column_stack([c + o for c, o in zip(small, offs)]))
    order = np.argsort(A, kind="stable").astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(np.bincount(A)))).astype(np.int64)
    H = kd.cross_hessian(order, starts, codes_NQ, w, int(offs[-1]))
    # dense reference: B' W M_A B with M_A the weighted within-A residual maker
    B = np.hstack([dummies(c) for c in small])
    DA = dummies(A)
    W = np.diag(w)
    MA = np.eye(A.size) - DA @ np.linalg.solve(DA.T @ W @ DA, DA.T @ W)
    np.testing.assert_allclose(H, B.T @ W @ MA @ B, rtol=0, atol=1e-9 * max(1.0, w.sum()))


@given(case=fe_design(n_fe=(2, 3), weighted=True))
def test_kernel_level_counts_gives_the_same_normal_matrix(case):
    """The dense-count route to H (used for modest level counts) equals the row-pair loop."""
    codes = [np.unique(c, return_inverse=True)[1].astype(np.int64) for c in case["codes"]]
    w = case["weights"]
    A, small = codes[0], codes[1:]
    n_small = [int(c.max()) + 1 for c in small]
    offs = np.cumsum([0, *n_small])
    codes_NQ = np.ascontiguousarray(np.column_stack([c + o for c, o in zip(small, offs)]))
    order = np.argsort(A, kind="stable").astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(np.bincount(A)))).astype(np.int64)
    U, m = int(A.max()) + 1, int(offs[-1])
    C, BWB = kd.level_counts(A, codes_NQ, w, U, m)
    H = BWB - (C / np.bincount(A, weights=w, minlength=U)[:, None]).T @ C
    np.testing.assert_allclose(H, kd.cross_hessian(order, starts, codes_NQ, w, m), rtol=0,
                               atol=1e-9 * max(1.0, w.sum()))


@given(case=fe_design(n_fe=(1, 1), weighted=True))
def test_kernel_centred_ss(case):
    x = np.ascontiguousarray(case["x"])
    w = case["weights"]
    mean = (w @ x) / w.sum()
    np.testing.assert_allclose(kd.centred_ss(x, w), w @ (x - mean) ** 2, rtol=1e-10, atol=1e-12)


def test_kernel_centred_ss_chunked_same_bits_for_any_thread_count():
    """Above one chunk of rows: equal to numpy's two-pass sums, and the same bits on one thread."""
    from staggerlab.kernels._jit import limit_threads

    rng = np.random.default_rng(4)
    x = np.ascontiguousarray(rng.normal(3.0, 2.0, size=(120_000, 5)))
    w = rng.uniform(0.5, 2.0, x.shape[0])
    got = kd.centred_ss(x, w)
    mean = (w @ x) / w.sum()
    np.testing.assert_allclose(got, w @ (x - mean) ** 2, rtol=1e-12)
    with limit_threads(1):
        np.testing.assert_array_equal(kd.centred_ss(x, w), got)


@given(case=fe_design(n_fe=(2, 3), min_rows=8))
def test_kernel_map_demean_flags(case):
    codes = [np.unique(c, return_inverse=True)[1].astype(np.int64) for c in case["codes"]]
    w = np.ones(codes[0].size) if case["weights"] is None else case["weights"]
    levels = [int(c.max()) + 1 for c in codes]
    offs = np.cumsum([0, *levels]).astype(np.int64)
    codes_NQ = np.ascontiguousarray(np.column_stack([c + o for c, o in zip(codes, offs)]))
    sumw = np.concatenate([kd.group_weights(c, w, g) for c, g in zip(codes, levels)])
    x = np.ascontiguousarray(case["x"])
    out, conv, iters = kd.map_demean(x, codes_NQ, w, sumw, offs, 1e-13, 100_000)
    assert conv.shape == iters.shape == (x.shape[1],)
    assert conv.all() and (iters >= 1).all() and (iters <= 100_000).all()
    np.testing.assert_allclose(out, dense_within(x, codes, case["weights"]), rtol=0, atol=REF_RTOL * scale(x))


# ---------------------------------------------------------------- singletons
def drop_singletons_slow(codes: list[np.ndarray]) -> np.ndarray:
    """Reference: remove one singleton row at a time until none is left."""
    keep = np.ones(codes[0].size, dtype=bool)
    while True:
        for c in codes:
            vals, counts = np.unique(c[keep], return_counts=True)
            lone = set(vals[counts == 1].tolist())
            hit = np.flatnonzero(keep & np.isin(c, list(lone)))
            if hit.size:
                keep[hit[0]] = False
                break
        else:
            return keep


@given(case=fe_design(n_fe=(1, 3), singletons=True))
def test_drop_singletons_matches_one_at_a_time(case):
    got = drop_singletons(case["codes"])
    np.testing.assert_array_equal(got, drop_singletons_slow(case["codes"]))
    kept = [c[got] for c in case["codes"]]
    for c in kept:
        if c.size:
            assert np.unique(c, return_counts=True)[1].min() >= 2


def test_iterative_accuracy_on_chain_design():
    # staircase FE graph (a = i // 2, b = (i + 1) // 2): the worst case for alternating projections
    i = np.arange(300)
    a, b = i // 2, (i + 1) // 2
    x = np.random.default_rng(0).normal(size=i.size)
    ab = Absorber([a, b], method="iterative")
    np.testing.assert_allclose(ab.demean(x), dense_within(x[:, None], [a, b], None)[:, 0], rtol=0, atol=REF_RTOL)


# ------------------------------------------------------ threads (run_chunks)
def _large_panel(n_units=6_000, n_periods=12, n_cols=3, seed=3):
    """An unbalanced unit x period panel above the chunking threshold (rows in
    shuffled order, so the exact path's row order is exercised too)."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), n_periods)
    time = np.tile(np.arange(n_periods), n_units)
    keep = rng.random(unit.size) > 0.1
    perm = rng.permutation(int(keep.sum()))
    unit, time = unit[keep][perm], time[keep][perm]
    x = rng.standard_normal((unit.size, n_cols)) * 100 + unit[:, None] * 0.01
    w = rng.uniform(0.5, 2.0, unit.size)
    return unit, time, x, w


@pytest.mark.parametrize("method", ["one-way", "exact", "iterative"])
def test_same_bits_for_one_and_two_threads(monkeypatch, method):
    unit, time, x, w = _large_panel()
    assert x.shape[0] > kd._MIN_CHUNK_ROWS  # several chunks, above run_chunks' work threshold
    codes = [unit] if method == "one-way" else [unit, time]
    ab = Absorber(codes, w, method="iterative" if method == "iterative" else "auto", tol=1e-10)
    got = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("STAGGERLAB_NUM_THREADS", threads)
        got[threads] = ab.demean(x)
    np.testing.assert_array_equal(got["1"], got["2"])
    # and it is the within transformation: one-way against bincount group means,
    # two-way against orthogonality to both FEs' dummies (D' W r = 0)
    r = got["1"]
    scale_w = float((w[:, None] * np.abs(x)).sum())
    for c in codes:
        G = int(c.max()) + 1
        for k in range(x.shape[1]):
            assert np.abs(np.bincount(c, weights=w * r[:, k], minlength=G)).max() <= 1e-9 * scale_w
    if method == "one-way":
        sw = np.bincount(unit, weights=w)
        for k in range(x.shape[1]):
            m = np.bincount(unit, weights=w * x[:, k]) / sw
            np.testing.assert_allclose(r[:, k], x[:, k] - m[unit], rtol=0, atol=1e-9 * np.abs(x).max())


def test_in_place_demean_equals_fresh_result():
    unit, time, x, w = _large_panel(n_units=800)
    ab = Absorber([unit, time], w)
    ref = ab.demean(x)
    y = np.ascontiguousarray(x.copy())
    out = ab.demean(y, out=y)
    assert np.shares_memory(out, y)
    np.testing.assert_array_equal(out, ref)
