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

import numpy as np

from ._jit import jit, readonly, run_chunks

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
def _centred_ss_chunks(lo, hi, n_chunks, x_NK, w_N, mean_K, part_CK):
    """Chunks [lo, hi) of the rows: without ``mean_K`` (empty) the weighted sums
    of each column and of the weights (``part[ch, :K]``, ``part[ch, K]``); with
    it, the weighted sums of squares around it (``part[ch, :K]``)."""
    N, K = x_NK.shape
    acc = np.empty(K + 1)
    for ch in range(lo, hi):
        for k in range(K + 1):
            acc[k] = 0.0
        a, b = ch * N // n_chunks, (ch + 1) * N // n_chunks
        if mean_K.shape[0] > 0:
            for n in range(a, b):
                wn = w_N[n]
                for k in range(K):
                    d = x_NK[n, k] - mean_K[k]
                    acc[k] += wn * d * d
        else:
            for n in range(a, b):
                wn = w_N[n]
                acc[K] += wn
                for k in range(K):
                    acc[k] += wn * x_NK[n, k]
        for k in range(K + 1):
            part_CK[ch, k] = acc[k]


#: rows below which every chunked kernel is one chunk (one in-order sum, as
#: a serial loop would give); above it the chunk count depends only on the
#: data's size, never on the threads, so results are the same on any machine
_MIN_CHUNK_ROWS = 50_000
#: chunk cap: enough chunks for dynamic balancing on a busy machine, few
#: enough that the per-chunk partial sums stay small next to the data
_MAX_CHUNKS = 16


def _row_chunks(N, n_levels):
    """Chunks of the row-chunked one-way sweep: partial sums are
    ``n_levels x K`` per chunk, so keep at least 4 rows per level per chunk."""
    if N < _MIN_CHUNK_ROWS:
        return 1
    return int(max(1, min(_MAX_CHUNKS, N // max(_MIN_CHUNK_ROWS // 2, 4 * n_levels))))


def _unit_chunks(N, U):
    """Chunks of the unit-chunked exact passes (partials are ``M x K``, small)."""
    return 1 if N < _MIN_CHUNK_ROWS else int(max(1, min(_MAX_CHUNKS, U)))


# Each kernel below is a serial chunk kernel run by ``run_chunks``: chunk
# ``ch`` covers rows (or units) ``[ch * n / n_chunks, (ch + 1) * n / n_chunks)``
# and writes only its own slot of the partial sums (or its own rows).


@jit
def _group_sums_chunks(lo, hi, n_chunks, x_NK, codes_N, w_N, part_CGK):
    N, K = x_NK.shape
    for ch in range(lo, hi):
        for n in range(ch * N // n_chunks, (ch + 1) * N // n_chunks):
            g = codes_N[n]
            wn = w_N[n]
            for k in range(K):
                part_CGK[ch, g, k] += wn * x_NK[n, k]


@jit
def _subtract_chunks(lo, hi, n_chunks, x_NK, codes_N, means_GK, out_NK):
    N, K = x_NK.shape
    for ch in range(lo, hi):
        for n in range(ch * N // n_chunks, (ch + 1) * N // n_chunks):
            g = codes_N[n]
            for k in range(K):
                out_NK[n, k] = x_NK[n, k] - means_GK[g, k]


def sweep_one(x_NK, codes_N, w_N, sumw_G, out_NK=None):
    """Return ``x`` minus its weighted group means for one FE (exact, one pass).

    ``out_NK`` (N x K float64, C-contiguous; may be ``x_NK`` itself) receives
    the result if given.
    """
    x_NK, codes_N, w_N = readonly(x_NK), readonly(codes_N), readonly(w_N)
    N, K = x_NK.shape
    G = sumw_G.shape[0]
    nc = _row_chunks(N, G)
    if out_NK is None:
        out_NK = np.empty_like(x_NK)
    part_CGK = np.zeros((nc, G, K))
    run_chunks(_group_sums_chunks, nc, (nc, x_NK, codes_N, w_N, part_CGK), work=N * K)
    means_GK = (part_CGK[0] if nc == 1 else part_CGK.sum(axis=0)) / sumw_G[:, None]
    run_chunks(_subtract_chunks, nc, (nc, x_NK, codes_N, readonly(means_GK), out_NK), work=N * K)
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
def _exact_pass1_chunks(lo, hi, n_chunks, x_NK, y_NE, order_N, starts_U, codes_NQ, w_N, sumwA_U, out_NK, outy_NE,
                        part_CMK):
    """For the units of chunks [lo, hi): ``out = x - unit mean`` and
    ``part[ch] += B' W out`` (columns of ``x`` first, then those of ``y``,
    a second matrix demeaned in the same pass: the outcome beside the
    regressors). ``out`` may be ``x`` (each unit's mean is taken before its
    rows are written)."""
    K = x_NK.shape[1]
    E = y_NE.shape[1]
    Q = codes_NQ.shape[1]
    U = starts_U.shape[0] - 1
    mean_K = np.empty(K)
    mean_E = np.empty(E)
    for ch in range(lo, hi):
        for u in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            a = starts_U[u]
            b = starts_U[u + 1]
            for k in range(K):
                mean_K[k] = 0.0
            for e in range(E):
                mean_E[e] = 0.0
            for p in range(a, b):
                n = _row(order_N, p)
                wn = w_N[n]
                for k in range(K):
                    mean_K[k] += wn * x_NK[n, k]
                for e in range(E):
                    mean_E[e] += wn * y_NE[n, e]
            inv = 1.0 / sumwA_U[u]
            for k in range(K):
                mean_K[k] *= inv
            for e in range(E):
                mean_E[e] *= inv
            for p in range(a, b):
                n = _row(order_N, p)
                wn = w_N[n]
                for k in range(K):
                    out_NK[n, k] = x_NK[n, k] - mean_K[k]
                for e in range(E):
                    outy_NE[n, e] = y_NE[n, e] - mean_E[e]
                # q outside k: the inner loops run over contiguous k
                for q in range(Q):
                    m = codes_NQ[n, q]
                    for k in range(K):
                        part_CMK[ch, m, k] += wn * out_NK[n, k]
                    for e in range(E):
                        part_CMK[ch, m, K + e] += wn * outy_NE[n, e]


@jit
def _exact_pass2_chunks(lo, hi, n_chunks, out_NK, outy_NE, order_N, starts_U, codes_NQ, w_N, sumwA_U, gamma_MK):
    """For the units of chunks [lo, hi): ``out -= B gamma - unit mean of (B gamma)``
    (``gamma``'s columns: those of ``out``, then those of ``outy``)."""
    K = out_NK.shape[1]
    E = outy_NE.shape[1]
    Q = codes_NQ.shape[1]
    U = starts_U.shape[0] - 1
    KE = K + E
    mean_K = np.empty(KE)
    bg_K = np.empty(KE)
    for ch in range(lo, hi):
        for u in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            a = starts_U[u]
            b = starts_U[u + 1]
            for k in range(KE):
                mean_K[k] = 0.0
            for p in range(a, b):
                n = _row(order_N, p)
                wn = w_N[n]
                for q in range(Q):
                    m = codes_NQ[n, q]
                    for k in range(KE):
                        mean_K[k] += wn * gamma_MK[m, k]
            inv = 1.0 / sumwA_U[u]
            for k in range(KE):
                mean_K[k] *= inv
            for p in range(a, b):
                n = _row(order_N, p)
                for k in range(KE):
                    bg_K[k] = -mean_K[k]
                for q in range(Q):
                    m = codes_NQ[n, q]
                    for k in range(KE):
                        bg_K[k] += gamma_MK[m, k]
                for k in range(K):
                    out_NK[n, k] -= bg_K[k]
                for e in range(E):
                    outy_NE[n, e] -= bg_K[K + e]


def _pass_work(N, K, per_column):
    """Work of an exact pass for ``run_chunks``: a row costs about as much as 8
    columns before its columns are touched (the loops over a unit's rows and
    their codes are scalar), so one column of 170k rows (~1.3 ms alone) runs on
    every core, not only wide blocks."""
    return N * (K + 8) * per_column


def exact_demean(x_NK, order_N, starts_U, codes_NQ, w_N, sumwA_U, Hpinv_MM, out_NK=None, y_NE=None):
    """Exact two-pass demeaning on a large FE ``A`` plus small FEs ``B``.

    Pass 1 (per level of ``A``): ``r = M_A x`` and ``S = B' W r``. Then
    ``gamma = H^+ S``. Pass 2: ``M x = r - M_A (B gamma)``. ``order_N`` and
    ``starts_U`` group the rows by ``A`` (empty when the rows already are).
    ``out_NK`` (N x K float64, C-contiguous; may be ``x_NK`` itself)
    receives the result if given. ``y_NE`` (N x E, optional): a second
    matrix demeaned in the same two passes (the outcome beside the
    regressors: a row's loop overhead is paid once); then the return value
    is ``(M x, M y)``.
    """
    pair = y_NE is not None
    x_NK, w_N, sumwA_U = readonly(x_NK), readonly(w_N), readonly(sumwA_U)
    order_N, starts_U, codes_NQ = readonly(order_N), readonly(starts_U), readonly(codes_NQ)
    N, K = x_NK.shape
    y_NE = readonly(np.ascontiguousarray(y_NE, dtype=np.float64) if pair else np.empty((N, 0)))
    E = y_NE.shape[1]
    U = starts_U.shape[0] - 1
    M = Hpinv_MM.shape[0]
    Q = codes_NQ.shape[1]
    if out_NK is None:
        out_NK = np.empty_like(x_NK)
    outy_NE = np.empty((N, E))
    nc = _unit_chunks(N, U)
    part_CMK = np.zeros((nc, M, K + E))
    run_chunks(_exact_pass1_chunks, nc,
               (nc, x_NK, y_NE, order_N, starts_U, codes_NQ, w_N, sumwA_U, out_NK, outy_NE, part_CMK),
               work=_pass_work(N, K + E, Q + 2))
    S_MK = part_CMK[0] if nc == 1 else part_CMK.sum(axis=0)
    # column by column: a column's bits must not depend on which columns are demeaned with it
    # (a matrix product's blocking changes with its width)
    gamma_MK = np.empty((M, K + E))
    for j in range(K + E):
        gamma_MK[:, j] = Hpinv_MM @ np.ascontiguousarray(S_MK[:, j])
    gamma_MK = readonly(gamma_MK)
    run_chunks(_exact_pass2_chunks, nc,
               (nc, out_NK, outy_NE, order_N, starts_U, codes_NQ, w_N, sumwA_U, gamma_MK),
               work=_pass_work(N, K + E, 2 * Q + 1))
    return (out_NK, outy_NE) if pair else out_NK


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


@jit
def _map_demean_chunks(lo, hi, x_NK, codes_NQ, w_N, sumw_M, offsets_Q1, tol, maxiter, out_NK, converged_K, iters_K):
    """Alternating projections with Irons-Tuck acceleration.

    ``codes_NQ`` are offset so FE ``q`` uses ``[offsets_Q1[q], offsets_Q1[q+1])``
    of the stacked level vector ``sumw_M``. Converged when the largest absolute
    change of one sweep, and the geometric bound on the remaining distance
    implied by the observed contraction rate, are both below ``tol`` times the
    column's scale (max |x|, at least 1). Chunk ``k`` is column ``k``: it
    writes ``out_NK[:, k]``, ``converged_K[k]`` and ``iters_K[k]``.
    """
    N = x_NK.shape[0]
    M = sumw_M.shape[0]
    for k in range(lo, hi):  # one chunk per column
        x_N = np.empty(N)
        for n in range(N):
            x_N[n] = x_NK[n, k]
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


def group_weights(codes_N, w_N, n_groups):
    """Sum of weights per level of one FE."""
    return _group_weights(readonly(codes_N), readonly(w_N), n_groups)


def centred_ss(x_NK, w_N):
    """Weighted sum of squares of each column around its weighted mean (two
    chunked passes: the mean, then the squares; sums over fixed row chunks
    added in chunk order, so the same bits for any thread count)."""
    x_NK, w_N = readonly(x_NK), readonly(w_N)
    N, K = x_NK.shape
    nc = 1 if N < _MIN_CHUNK_ROWS else _MAX_CHUNKS
    part = np.zeros((nc, K + 1))
    run_chunks(_centred_ss_chunks, nc, (nc, x_NK, w_N, readonly(np.empty(0)), part), work=_pass_work(N, K, 1))
    tot = part.sum(axis=0)
    mean = readonly(tot[:K] / tot[K])
    part = np.zeros((nc, K + 1))
    run_chunks(_centred_ss_chunks, nc, (nc, x_NK, w_N, mean, part), work=_pass_work(N, K, 1))
    return part.sum(axis=0)[:K]


def cross_hessian(order_N, starts_U, codes_NQ, w_N, n_small):
    """``H = B' W M_A B`` (see :func:`_cross_hessian`)."""
    return _cross_hessian(readonly(order_N), readonly(starts_U), readonly(codes_NQ), readonly(w_N), n_small)


def level_counts(codeA_N, codes_NQ, w_N, n_large, n_small):
    """Weighted counts ``C`` and ``B' W B`` (see :func:`_level_counts`)."""
    return _level_counts(readonly(codeA_N), readonly(codes_NQ), readonly(w_N), n_large, n_small)


def map_demean(x_NK, codes_NQ, w_N, sumw_M, offsets_Q1, tol, maxiter):
    """Alternating projections (see :func:`_map_demean_chunks`).

    Returns ``(out_NK, converged_K, iterations_K)``.
    """
    N, K = x_NK.shape
    out_NK = np.empty((N, K))
    converged_K = np.zeros(K, dtype=np.bool_)
    iters_K = np.zeros(K, dtype=np.int64)
    # columns are independent: chunk k is column k whatever the thread count
    run_chunks(_map_demean_chunks, K,
               (readonly(x_NK), readonly(codes_NQ), readonly(w_N), readonly(sumw_M), readonly(offsets_Q1),
                float(tol), int(maxiter), out_NK, converged_K, iters_K),
               work=N * K * codes_NQ.shape[1] * 20)
    return out_NK, converged_K, iters_K
