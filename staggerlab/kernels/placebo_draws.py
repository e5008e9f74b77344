"""Kernels that draw placebo assignments and build placebo treatment columns
(the sampler and the general path of the placebo battery); re-exported by
:mod:`staggerlab.kernels.placebo`. Chunks are draws or rows: every output
entry is computed inside one chunk, so results do not depend on the thread
count."""

from __future__ import annotations

import numpy as np

from ._jit import jit, readonly, run_chunks

__all__ = ["partial_shuffle", "adoption_times", "placebo_columns"]

#: chunks of draws (the grain of the work sharing; results do not depend on it)
_DRAW_CHUNKS = 16


def _i64(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous int64 array (no copy if it already is one)."""
    return np.ascontiguousarray(a, dtype=np.int64)


@jit
def _shuffle_chunks(lo, hi, n_chunks, u_BK, n, out_BK):
    B, K = u_BK.shape
    perm = np.empty(n, dtype=np.int64)
    for j in range(n):
        perm[j] = j
    swap = np.empty(K, dtype=np.int64)
    for ch in range(lo, hi):
        for b in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            for j in range(K):
                k = j + min(int(u_BK[b, j] * (n - j)), n - j - 1)
                swap[j] = k
                v = perm[k]
                perm[k] = perm[j]
                perm[j] = v
                out_BK[b, j] = v
            for j in range(K - 1, -1, -1):
                k = swap[j]
                v = perm[k]
                perm[k] = perm[j]
                perm[j] = v


def partial_shuffle(u_BK, n):
    """First K entries of a Fisher-Yates shuffle of ``0..n-1`` per draw.

    ``u_BK[b, j]`` is a uniform number in [0, 1) drawn by the caller; step j
    swaps position j with ``j + floor(u (n - j))``. Returns a sample without
    replacement of K of the n positions, in draw order. Each call keeps one
    permutation and undoes its swaps after every draw, so a draw costs O(K),
    not O(n), and does not depend on the chunking.
    """
    B, K = u_BK.shape
    out_BK = np.empty((B, K), dtype=np.int64)
    n_chunks = min(B, _DRAW_CHUNKS)
    run_chunks(_shuffle_chunks, n_chunks, (n_chunks, u_BK, int(n), out_BK), work=B * K * 4 + n * n_chunks)
    return out_BK


@jit
def _adoption_times_chunks(lo, hi, n_chunks, pick_BK, l_BK, ent_ptr, ent_units, gvals_L, out_BU):
    B, K = pick_BK.shape
    for ch in range(lo, hi):
        for b in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            for k in range(K):
                e = pick_BK[b, k]
                g = gvals_L[l_BK[b, k]]
                for q in range(ent_ptr[e], ent_ptr[e + 1]):
                    out_BU[b, ent_units[q]] = g


def adoption_times(pick_BK, l_BK, ent_ptr, ent_units, gvals_L, n_units):
    """Dense ``B x U`` adoption times (0 = untreated) of sparse draws."""
    B, K = pick_BK.shape
    out_BU = np.zeros((B, n_units), dtype=np.int64)
    n_chunks = min(B, _DRAW_CHUNKS)
    args = (n_chunks, _i64(pick_BK), _i64(l_BK), _i64(ent_ptr), _i64(ent_units), gvals_L, out_BU)
    run_chunks(_adoption_times_chunks, n_chunks, args, work=B * max(K, n_units // 8))
    return out_BU


@jit
def _placebo_columns_chunks(lo, hi, n_chunks, adopt_BU, unit_N, time_N, D_NB):
    B = adopt_BU.shape[0]
    N = unit_N.shape[0]
    for ch in range(lo, hi):
        for r in range(ch * N // n_chunks, (ch + 1) * N // n_chunks):
            i = unit_N[r]
            t = time_N[r]
            for b in range(B):
                D_NB[r, b] = 1.0 if t >= adopt_BU[b, i] else 0.0


def placebo_columns(adopt_BU, unit_N, time_N):
    """``D[r, b] = 1[time_r >= adopt[b, unit_r]]`` (N x B); untreated units
    carry an adoption time beyond every period."""
    B = adopt_BU.shape[0]
    N = unit_N.shape[0]
    D_NB = np.empty((N, B))
    n_chunks = max(1, min(N, 64))
    run_chunks(_placebo_columns_chunks, n_chunks, (n_chunks, _i64(adopt_BU), _i64(unit_N), readonly(time_N), D_NB),
               work=N * B)
    return D_NB
