"""Within transformation (demeaning) on 1..F fixed effects.

Buffer names carry their shapes: ``_N`` observations, ``_K`` columns,
``_Q`` fixed-effect dimensions, ``_G`` levels of one FE, ``_M`` levels of all
"small" FEs stacked (see below). Kernels trust their input: contiguous
float64 values, int64 codes in ``[0, n_levels)``, positive weights. The
validation happens once, in ``staggerlab.inference.design``.

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

from ._jit import jit, pjit, prange

__all__ = [
    "group_weights",
    "sweep_one",
    "cross_hessian",
    "exact_finish",
    "map_demean",
]


@jit
def group_weights(codes_N, w_N, n_groups):
    """Sum of weights per level of one FE."""
    sumw_G = np.zeros(n_groups)
    for n in range(codes_N.shape[0]):
        sumw_G[codes_N[n]] += w_N[n]
    return sumw_G


@jit
def _chunk_bounds(N, n_chunks):
    bounds = np.empty(n_chunks + 1, dtype=np.int64)
    for c in range(n_chunks + 1):
        bounds[c] = (N * c) // n_chunks
    return bounds


@pjit
def _group_sums(x_NK, codes_N, w_N, n_groups, n_chunks):
    """Weighted group sums (G x K), rows split in chunks summed per thread.

    Row-major loops keep the access to ``x`` sequential; each chunk has its
    own accumulator so threads never write to shared memory.
    """
    N, K = x_NK.shape
    bounds = _chunk_bounds(N, n_chunks)
    part_CGK = np.zeros((n_chunks, n_groups, K))
    for c in prange(n_chunks):
        acc = part_CGK[c]
        for n in range(bounds[c], bounds[c + 1]):
            g = codes_N[n]
            wn = w_N[n]
            for k in range(K):
                acc[g, k] += wn * x_NK[n, k]
    sums_GK = part_CGK[0].copy()
    for c in range(1, n_chunks):
        sums_GK += part_CGK[c]
    return sums_GK


@pjit
def _subtract_group(x_NK, codes_N, means_GK, n_chunks):
    N, K = x_NK.shape
    out_NK = np.empty_like(x_NK)
    bounds = _chunk_bounds(N, n_chunks)
    for c in prange(n_chunks):
        for n in range(bounds[c], bounds[c + 1]):
            g = codes_N[n]
            for k in range(K):
                out_NK[n, k] = x_NK[n, k] - means_GK[g, k]
    return out_NK


def sweep_one(x_NK, codes_N, w_N, sumw_G):
    """Return ``x`` minus its weighted group means for one FE (exact, one pass)."""
    nc = _n_chunks(x_NK.shape[0])
    sums_GK = _group_sums(x_NK, codes_N, w_N, sumw_G.shape[0], nc)
    return _subtract_group(x_NK, codes_N, sums_GK / sumw_G[:, None], nc)


def _n_chunks(N):
    # below ~50k rows a second thread costs more than it saves
    return 1 if N < 50_000 else nb.get_num_threads()


@jit
def cross_hessian(order_N, starts_U, codes_NQ, w_N, n_small):
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
            n = order_N[p]
            wn = w_N[n]
            wsum += wn
            for q1 in range(Q):
                b1 = codes_NQ[n, q1]
                for q2 in range(Q):
                    H_MM[b1, codes_NQ[n, q2]] += wn
        # subtract the projection on this level's indicator: outer(v, v) / W_u
        for p1 in range(lo, hi):
            n1 = order_N[p1]
            c1 = w_N[n1] / wsum
            for p2 in range(lo, hi):
                n2 = order_N[p2]
                c = c1 * w_N[n2]
                for q1 in range(Q):
                    b1 = codes_NQ[n1, q1]
                    for q2 in range(Q):
                        H_MM[b1, codes_NQ[n2, q2]] -= c
    return H_MM


@pjit
def _small_rhs(r_NK, codes_NQ, w_N, n_small, n_chunks):
    N, K = r_NK.shape
    Q = codes_NQ.shape[1]
    bounds = _chunk_bounds(N, n_chunks)
    part_CMK = np.zeros((n_chunks, n_small, K))
    for c in prange(n_chunks):
        acc = part_CMK[c]
        for n in range(bounds[c], bounds[c + 1]):
            wn = w_N[n]
            for q in range(Q):
                b = codes_NQ[n, q]
                for k in range(K):
                    acc[b, k] += wn * r_NK[n, k]
    S_MK = part_CMK[0].copy()
    for c in range(1, n_chunks):
        S_MK += part_CMK[c]
    return S_MK


@pjit
def _small_fit(codes_NQ, gamma_MK, n_chunks):
    N = codes_NQ.shape[0]
    Q = codes_NQ.shape[1]
    K = gamma_MK.shape[1]
    bg_NK = np.zeros((N, K))
    bounds = _chunk_bounds(N, n_chunks)
    for c in prange(n_chunks):
        for n in range(bounds[c], bounds[c + 1]):
            for q in range(Q):
                b = codes_NQ[n, q]
                for k in range(K):
                    bg_NK[n, k] += gamma_MK[b, k]
    return bg_NK


@pjit
def _finish(r_NK, bg_NK, codeA_N, meansA_GK, n_chunks):
    N, K = r_NK.shape
    out_NK = np.empty_like(r_NK)
    bounds = _chunk_bounds(N, n_chunks)
    for c in prange(n_chunks):
        for n in range(bounds[c], bounds[c + 1]):
            g = codeA_N[n]
            for k in range(K):
                out_NK[n, k] = r_NK[n, k] - bg_NK[n, k] + meansA_GK[g, k]
    return out_NK


def exact_finish(r_NK, codes_NQ, w_N, codeA_N, sumwA_G, Hpinv_MM):
    """Finish the exact demeaning of ``r = M_A x`` given ``pinv(H)``:
    ``M x = r - M_A (B gamma)`` with ``gamma = H^+ B' W r``."""
    nc = _n_chunks(r_NK.shape[0])
    S_MK = _small_rhs(r_NK, codes_NQ, w_N, Hpinv_MM.shape[0], nc)
    gamma_MK = np.ascontiguousarray(Hpinv_MM @ S_MK)
    bg_NK = _small_fit(codes_NQ, gamma_MK, nc)
    meansA_GK = _group_sums(bg_NK, codeA_N, w_N, sumwA_G.shape[0], nc) / sumwA_G[:, None]
    return _finish(r_NK, bg_NK, codeA_N, meansA_GK, nc)


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
def map_demean(x_NK, codes_NQ, w_N, sumw_M, offsets_Q1, tol, maxiter):
    """Alternating projections with Irons-Tuck acceleration.

    ``codes_NQ`` are offset so FE ``q`` uses ``[offsets_Q1[q], offsets_Q1[q+1])``
    of the stacked level vector ``sumw_M``. Converged when the largest absolute
    change of one sweep is below ``tol`` times the column's scale (max |x|, at
    least 1). Returns ``(out_NK, converged_K, iterations_K)``.
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
        while it < maxiter:
            it += 1
            _sweep_all(x_N, gx_N, codes_NQ, w_N, sumw_M, sums_M, offsets_Q1)
            _sweep_all(gx_N, ggx_N, codes_NQ, w_N, sumw_M, sums_M, offsets_Q1)
            diff = 0.0
            for n in range(N):
                d = abs(ggx_N[n] - gx_N[n])
                if d > diff:
                    diff = d
            if diff <= thresh:
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
            for n in range(N):
                x_N[n] = ggx_N[n] - c * (ggx_N[n] - gx_N[n])
        for n in range(N):
            out_NK[n, k] = ggx_N[n]
        converged_K[k] = done
        iters_K[k] = it
    return out_NK, converged_K, iters_K
