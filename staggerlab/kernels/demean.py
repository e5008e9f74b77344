"""Within transformation (demeaning) on 1..F fixed effects.

Buffer names carry their shapes: ``_N`` observations, ``_K`` columns,
``_Q`` fixed-effect dimensions, ``_G`` levels of one FE, ``_M`` levels of all
"small" FEs stacked (see below). Kernels trust their input: contiguous
float64 values, int64 codes in ``[0, n_levels)``, positive weights. The
validation happens once, in ``staggerlab.inference.regression.design``.

Two algorithms:

* **Exact** (default whenever all FEs but the largest have few levels in
  total, e.g. years in a firm-year panel). Sweep out the largest FE ``A`` in
  one pass, ``r = M_A x``; the remaining FEs' dummies ``B`` (``M`` columns)
  enter through the normal equations ``H g = B' W r`` with
  ``H = B' W M_A B``, built once per design and pseudo-inverted once. Then
  ``M x = r - M_A B g``. No tolerance, machine precision, O(N Q) per column.
  With a single FE it is the one-pass group demeaning.
* **Iterative** alternating projections with Irons-Tuck acceleration, for
  designs where no FE is small. Returns a convergence flag and the number of
  iterations per column; the caller turns failure into ``ConvergenceError``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._jit import jit, pjit, prange, readonly

__all__ = [
    "group_weights",
    "centred_ss",
    "sweep_one",
    "cross_hessian",
    "level_counts",
    "exact_demean",
    "map_demean",
]


@jit
def _group_weights(codes_N, w_N, n_groups):
    """Sum of weights per level of one FE."""
    sumw_G = np.zeros(n_groups)
    for n in range(codes_N.shape[0]):
        sumw_G[codes_N[n]] += w_N[n]
    return sumw_G


@jit
def _centred_ss(x_NK, w_N):
    """Weighted sum of squares of each column around its weighted mean (two passes)."""
    N, K = x_NK.shape
    mean_K = np.zeros(K)
    wsum = 0.0
    for n in range(N):
        wn = w_N[n]
        wsum += wn
        for k in range(K):
            mean_K[k] += wn * x_NK[n, k]
    mean_K /= wsum
    ss_K = np.zeros(K)
    for n in range(N):
        wn = w_N[n]
        for k in range(K):
            d = x_NK[n, k] - mean_K[k]
            ss_K[k] += wn * d * d
    return ss_K


@jit
def _chunk_bounds(N, n_chunks):
    bounds = np.empty(n_chunks + 1, dtype=np.int64)
    for c in range(n_chunks + 1):
        bounds[c] = (N * c) // n_chunks
    return bounds


def _n_chunks(N):
    # below ~50k rows a second thread costs more than it saves; the serial
    # path then calls the range kernels directly (no parallel machinery)
    return 1 if N < 50_000 else nb.get_num_threads()


# Each kernel below is a serial "range" kernel working on rows (or units)
# [lo, hi); a parallel wrapper splits the range in chunks, one accumulator per
# chunk, so threads never write to shared memory.


@jit
def _group_sums_range(x_NK, codes_N, w_N, acc_GK, lo, hi):
    K = x_NK.shape[1]
    for n in range(lo, hi):
        g = codes_N[n]
        wn = w_N[n]
        for k in range(K):
            acc_GK[g, k] += wn * x_NK[n, k]


@pjit
def _group_sums_par(x_NK, codes_N, w_N, part_CGK, bounds):
    for c in prange(part_CGK.shape[0]):
        _group_sums_range(x_NK, codes_N, w_N, part_CGK[c], bounds[c], bounds[c + 1])


@jit
def _subtract_range(x_NK, codes_N, means_GK, out_NK, lo, hi):
    K = x_NK.shape[1]
    for n in range(lo, hi):
        g = codes_N[n]
        for k in range(K):
            out_NK[n, k] = x_NK[n, k] - means_GK[g, k]


@pjit
def _subtract_par(x_NK, codes_N, means_GK, out_NK, bounds):
    for c in prange(bounds.shape[0] - 1):
        _subtract_range(x_NK, codes_N, means_GK, out_NK, bounds[c], bounds[c + 1])


def sweep_one(x_NK, codes_N, w_N, sumw_G):
    """Return ``x`` minus its weighted group means for one FE (exact, one pass)."""
    x_NK, w_N = readonly(x_NK), readonly(w_N)
    N, K = x_NK.shape
    nc = _n_chunks(N)
    out_NK = np.empty_like(x_NK)
    if nc == 1:
        sums_GK = np.zeros((sumw_G.shape[0], K))
        _group_sums_range(x_NK, codes_N, w_N, sums_GK, 0, N)
        _subtract_range(x_NK, codes_N, sums_GK / sumw_G[:, None], out_NK, 0, N)
        return out_NK
    bounds = _chunk_bounds(N, nc)
    part_CGK = np.zeros((nc, sumw_G.shape[0], K))
    _group_sums_par(x_NK, codes_N, w_N, part_CGK, bounds)
    _subtract_par(x_NK, codes_N, part_CGK.sum(axis=0) / sumw_G[:, None], out_NK, bounds)
    return out_NK


@jit(inline="always")
def _row(order_N, p):
    """Row at position ``p`` of the rows grouped by the large FE; an empty
    ``order_N`` means they already are (no N-sized identity permutation)."""
    return order_N[p] if order_N.shape[0] else p


@jit
def _cross_hessian(order_N, starts_U, codes_NQ, w_N, n_small):
    """``H = B' W M_A B`` for the stacked small-FE dummies ``B``.

    ``order_N`` sorts rows by the large FE ``A`` and ``starts_U`` (length
    ``U + 1``) delimits each level's rows in that order. ``codes_NQ`` holds the
    small FEs' codes already offset into ``[0, n_small)``.
    """
    Q = codes_NQ.shape[1]
    H_MM = np.zeros((n_small, n_small))
    U = starts_U.shape[0] - 1
    for u in range(U):
        lo = starts_U[u]
        hi = starts_U[u + 1]
        wsum = 0.0
        for p in range(lo, hi):
            n = _row(order_N, p)
            wn = w_N[n]
            wsum += wn
            for q1 in range(Q):
                b1 = codes_NQ[n, q1]
                for q2 in range(Q):
                    H_MM[b1, codes_NQ[n, q2]] += wn
        # subtract the projection on this level's indicator: outer(v, v) / W_u
        for p1 in range(lo, hi):
            n1 = _row(order_N, p1)
            c1 = w_N[n1] / wsum
            for p2 in range(lo, hi):
                n2 = _row(order_N, p2)
                c = c1 * w_N[n2]
                for q1 in range(Q):
                    b1 = codes_NQ[n1, q1]
                    for q2 in range(Q):
                        H_MM[b1, codes_NQ[n2, q2]] -= c
    return H_MM


@jit
def _level_counts(codeA_N, codes_NQ, w_N, n_large, n_small):
    """Dense weighted counts ``C[a, b]`` (large x small levels) and ``B' W B``.

    With them ``H = B'WB - C' diag(1/W_A) C`` is one BLAS product; used
    instead of :func:`cross_hessian` when ``n_large * n_small`` is modest.
    """
    Q = codes_NQ.shape[1]
    C_UM = np.zeros((n_large, n_small))
    BWB_MM = np.zeros((n_small, n_small))
    for n in range(codeA_N.shape[0]):
        a = codeA_N[n]
        wn = w_N[n]
        for q1 in range(Q):
            b1 = codes_NQ[n, q1]
            C_UM[a, b1] += wn
            for q2 in range(Q):
                BWB_MM[b1, codes_NQ[n, q2]] += wn
    return C_UM, BWB_MM


@jit
def _exact_pass1_range(x_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, out_NK, acc_MK, lo, hi):
    """For units [lo, hi): ``out = x - unit mean`` and ``acc += B' W out``."""
    K = x_NK.shape[1]
    Q = codes_NQ.shape[1]
    mean_K = np.empty(K)
    for u in range(lo, hi):
        a = starts_U[u]
        b = starts_U[u + 1]
        mean_K[:] = 0.0
        for p in range(a, b):
            n = _row(order_N, p)
            wn = w_N[n]
            for k in range(K):
                mean_K[k] += wn * x_NK[n, k]
        inv = 1.0 / sumwA_U[u]
        for k in range(K):
            mean_K[k] *= inv
        for p in range(a, b):
            n = _row(order_N, p)
            wn = w_N[n]
            for k in range(K):
                v = x_NK[n, k] - mean_K[k]
                out_NK[n, k] = v
                for q in range(Q):
                    acc_MK[codes_NQ[n, q], k] += wn * v


@pjit
def _exact_pass1_par(x_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, out_NK, part_CMK, ubounds):
    for c in prange(part_CMK.shape[0]):
        _exact_pass1_range(x_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, out_NK, part_CMK[c],
                           ubounds[c], ubounds[c + 1])


@jit
def _exact_pass2_range(out_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, gamma_MK, lo, hi):
    """For units [lo, hi): ``out -= B gamma - unit mean of (B gamma)``."""
    K = out_NK.shape[1]
    Q = codes_NQ.shape[1]
    mean_K = np.empty(K)
    for u in range(lo, hi):
        a = starts_U[u]
        b = starts_U[u + 1]
        mean_K[:] = 0.0
        for p in range(a, b):
            n = _row(order_N, p)
            wn = w_N[n]
            for q in range(Q):
                m = codes_NQ[n, q]
                for k in range(K):
                    mean_K[k] += wn * gamma_MK[m, k]
        inv = 1.0 / sumwA_U[u]
        for k in range(K):
            mean_K[k] *= inv
        for p in range(a, b):
            n = _row(order_N, p)
            for k in range(K):
                bg = 0.0
                for q in range(Q):
                    bg += gamma_MK[codes_NQ[n, q], k]
                out_NK[n, k] -= bg - mean_K[k]


@pjit
def _exact_pass2_par(out_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, gamma_MK, ubounds):
    for c in prange(ubounds.shape[0] - 1):
        _exact_pass2_range(out_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, gamma_MK, ubounds[c], ubounds[c + 1])


def exact_demean(x_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, Hpinv_MM):
    """Exact two-pass demeaning on a large FE ``A`` plus small FEs ``B``.

    Pass 1 (per level of ``A``): ``r = M_A x`` and ``S = B' W r``. Then
    ``gamma = H^+ S``. Pass 2: ``M x = r - M_A (B gamma)``. ``order_N`` and
    ``starts_U`` group the rows by ``A`` (``order_N`` is the identity when
    the rows already are).
    """
    x_NK, w_N = readonly(x_NK), readonly(w_N)
    N, K = x_NK.shape
    U = starts_U.shape[0] - 1
    M = Hpinv_MM.shape[0]
    out_NK = np.empty_like(x_NK)
    nc = _n_chunks(N)
    if nc == 1:
        S_MK = np.zeros((M, K))
        _exact_pass1_range(x_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, out_NK, S_MK, 0, U)
        gamma_MK = np.ascontiguousarray(Hpinv_MM @ S_MK)
        _exact_pass2_range(out_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, gamma_MK, 0, U)
        return out_NK
    ubounds = _chunk_bounds(U, nc)
    part_CMK = np.zeros((nc, M, K))
    _exact_pass1_par(x_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, out_NK, part_CMK, ubounds)
    gamma_MK = np.ascontiguousarray(Hpinv_MM @ part_CMK.sum(axis=0))
    _exact_pass2_par(out_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, gamma_MK, ubounds)
    return out_NK


@jit
def _sweep_all(x_N, out_N, codes_NQ, w_N, sumw_M, sums_M, offsets_Q1):
    """One pass of alternating projections over every FE (out = S x)."""
    N = x_N.shape[0]
    Q = codes_NQ.shape[1]
    for n in range(N):
        out_N[n] = x_N[n]
    for q in range(Q):
        lo = offsets_Q1[q]
        hi = offsets_Q1[q + 1]
        for g in range(lo, hi):
            sums_M[g] = 0.0
        for n in range(N):
            sums_M[codes_NQ[n, q]] += w_N[n] * out_N[n]
        for g in range(lo, hi):
            sums_M[g] /= sumw_M[g]
        for n in range(N):
            out_N[n] -= sums_M[codes_NQ[n, q]]


@pjit
def _map_demean(x_NK, codes_NQ, w_N, sumw_M, offsets_Q1, tol, maxiter):
    """Alternating projections with Irons-Tuck acceleration.

    ``codes_NQ`` are offset so FE ``q`` uses ``[offsets_Q1[q], offsets_Q1[q+1])``
    of the stacked level vector ``sumw_M``. Converged when the largest absolute
    change of one sweep, and the geometric bound on the remaining distance
    implied by the observed contraction rate, are both below ``tol`` times the
    column's scale (max |x|, at least 1). Returns ``(out_NK, converged_K,
    iterations_K)``.
    """
    N, K = x_NK.shape
    M = sumw_M.shape[0]
    out_NK = np.empty_like(x_NK)
    converged_K = np.zeros(K, dtype=np.bool_)
    iters_K = np.zeros(K, dtype=np.int64)
    for k in prange(K):
        x_N = x_NK[:, k].copy()
        gx_N = np.empty(N)
        ggx_N = np.empty(N)
        sums_M = np.empty(M)
        scale = 1.0
        for n in range(N):
            a = abs(x_N[n])
            if a > scale:
                scale = a
        thresh = tol * scale
        it = 0
        done = False
        prev = np.inf
        while it < maxiter:
            it += 1
            _sweep_all(x_N, gx_N, codes_NQ, w_N, sumw_M, sums_M, offsets_Q1)
            _sweep_all(gx_N, ggx_N, codes_NQ, w_N, sumw_M, sums_M, offsets_Q1)
            diff = 0.0
            for n in range(N):
                d = abs(ggx_N[n] - gx_N[n])
                if d > diff:
                    diff = d
            # a small step is not enough on slowly mixing designs: bound the
            # remaining distance by the geometric tail diff * rho / (1 - rho)
            rho = min(diff / prev, 0.9999) if (prev > 0.0 and diff > 0.0) else 0.0
            grew = diff > prev
            prev = diff
            # (near the rounding floor rho is noise: a step 100x below tol is enough)
            if diff <= thresh and (diff <= 0.01 * thresh or diff * rho / (1.0 - rho) <= thresh):
                done = True
                break
            num = 0.0
            den = 0.0
            for n in range(N):
                d1 = ggx_N[n] - gx_N[n]
                d2 = d1 - (gx_N[n] - x_N[n])
                num += d1 * d2
                den += d2 * d2
            if den == 0.0:
                done = True
                break
            c = num / den
            # Irons-Tuck extrapolates along the last step; for a contraction
            # c <= 0. If the step grew or c has the wrong sign (ill-conditioned,
            # e.g. tiny weights) take the plain projection step instead.
            if grew or not c <= 0.0:
                c = 0.0
            for n in range(N):
                x_N[n] = ggx_N[n] - c * (ggx_N[n] - gx_N[n])
        for n in range(N):
            out_NK[n, k] = ggx_N[n]
        converged_K[k] = done
        iters_K[k] = it
    return out_NK, converged_K, iters_K


def group_weights(codes_N, w_N, n_groups):
    """Sum of weights per level of one FE."""
    return _group_weights(codes_N, readonly(w_N), n_groups)


def centred_ss(x_NK, w_N):
    """Weighted sum of squares of each column around its weighted mean (two passes)."""
    return _centred_ss(readonly(x_NK), readonly(w_N))


def cross_hessian(order_N, starts_U, codes_NQ, w_N, n_small):
    """``H = B' W M_A B`` (see :func:`_cross_hessian`)."""
    return _cross_hessian(order_N, starts_U, codes_NQ, readonly(w_N), n_small)


def level_counts(codeA_N, codes_NQ, w_N, n_large, n_small):
    """Weighted counts ``C`` and ``B' W B`` (see :func:`_level_counts`)."""
    return _level_counts(codeA_N, codes_NQ, readonly(w_N), n_large, n_small)


def map_demean(x_NK, codes_NQ, w_N, sumw_M, offsets_Q1, tol, maxiter):
    """Alternating projections (see :func:`_map_demean`)."""
    return _map_demean(readonly(x_NK), codes_NQ, readonly(w_N), sumw_M, offsets_Q1, tol, maxiter)
