"""Kernels of the lean event-study regression (unit + period FEs, controls and
k mutually exclusive 0/1 columns: event-time or cohort x event-time dummies).

Each row has at most one active dummy (``j_N[r]``, -1 for none), so the
regression's normal equations and cluster scores reduce to per-unit sums
built from the raw columns, one unit at a time (Frisch-Waugh-Lovell with
``F = M_u [period dummies 2..T, controls]`` rebuilt on the fly as in the
placebo engine): no N x k design is ever formed. Partial sums run over a fixed
number of chunks (serial kernels that
:func:`~staggerlab.kernels._jit.run_chunks` spreads over threads), added in
chunk order, so results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, run_chunks
from .within import unit_block

__all__ = ["dummy_moments", "dummy_meat"]

_CHUNKS = 16
_SIMD = {"reassoc", "contract"}


@jit(fastmath=_SIMD)
def _moments_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, j_N, k,
                    FF, Fy, FD, DD, Dy):
    """Chunk ``ch``'s :func:`dummy_moments` in ``FF[ch]`` .. ``Dy[ch]`` for ``lo <= ch < hi``."""
    U = row_ptr.shape[0] - 1
    M = n_periods - 1 + xc_K.shape[0]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    cnt = np.empty(k)
    for ch in range(lo, hi):
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            n = unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T)
            for c in range(k):
                cnt[c] = 0.0
            for j in range(n):
                yj = y_T[j]
                for a in range(M):
                    fa = F_TM[j, a]
                    Fy[ch, a] += fa * yj
                    for b in range(M):
                        FF[ch, a, b] += fa * F_TM[j, b]
                c = j_N[rows[row_ptr[i] + j]]
                if c >= 0:
                    cnt[c] += 1.0
                    Dy[ch, c] += yj
                    for a in range(M):
                        FD[ch, a, c] += F_TM[j, a]
            for c in range(k):
                if cnt[c] > 0.0:
                    DD[ch, c, c] += cnt[c]
                    for c2 in range(k):
                        DD[ch, c, c2] -= cnt[c] * cnt[c2] / n


def _chunk_sum(part):
    """``part[0] + part[1] + ...`` added in chunk order (the same bits for any thread count)."""
    out = part[0].copy()
    for ch in range(1, part.shape[0]):
        out += part[ch]
    return out


def dummy_moments(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, j_N, k):
    """``F'F``, ``F'yu``, ``F'D``, ``D'M_u D`` and ``D'yu`` (M_u: unit demeaning)."""
    U = row_ptr.shape[0] - 1
    M = n_periods - 1 + xc_K.shape[0]
    n_chunks = min(U, _CHUNKS)
    parts = (np.zeros((n_chunks, M, M)), np.zeros((n_chunks, M)), np.zeros((n_chunks, M, k)),
             np.zeros((n_chunks, k, k)), np.zeros((n_chunks, k)))
    run_chunks(_moments_chunks, n_chunks,
               (n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, j_N, k, *parts),
               work=rows.shape[0] * M)  # rows x columns of F, as in kernels.within
    return tuple(_chunk_sum(p) for p in parts)


@jit(fastmath=_SIMD)
def _meat_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, j_N, beta_k,
                 gamma_M, Theta_Mk, cl_order, cl_starts, part):
    """Chunk ``ch``'s :func:`dummy_meat` in ``part[ch]`` for ``lo <= ch < hi``."""
    C = cl_starts.shape[0] - 1
    k = beta_k.shape[0]
    M = gamma_M.shape[0]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    cnt = np.empty(k)
    s = np.empty(k)
    rt = np.empty(k)
    for ch in range(lo, hi):
        for cl in range(ch * C // n_chunks, (ch + 1) * C // n_chunks):
            for a in range(k):
                s[a] = 0.0
            for q in range(cl_starts[cl], cl_starts[cl + 1]):
                i = cl_order[q]
                n = unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T)
                for c in range(k):
                    cnt[c] = 0.0
                for j in range(n):
                    c = j_N[rows[row_ptr[i] + j]]
                    if c >= 0:
                        cnt[c] += 1.0
                mean_db = 0.0
                for c in range(k):
                    cnt[c] /= n
                    mean_db += cnt[c] * beta_k[c]
                for j in range(n):
                    c = j_N[rows[row_ptr[i] + j]]
                    u = y_T[j] + mean_db
                    if c >= 0:
                        u -= beta_k[c]
                    for m in range(M):
                        u -= F_TM[j, m] * gamma_M[m]
                    for a in range(k):
                        acc = -cnt[a]
                        for m in range(M):
                            acc -= F_TM[j, m] * Theta_Mk[m, a]
                        rt[a] = acc
                    if c >= 0:
                        rt[c] += 1.0
                    for a in range(k):
                        s[a] += rt[a] * u
            for a in range(k):
                for b in range(k):
                    part[ch, a, b] += s[a] * s[b]


def dummy_meat(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, j_N, beta_k, gamma_M, Theta_Mk,
               cl_order, cl_starts):
    """``sum_c s_c s_c'`` with ``s_c = sum_{i in c} sum_t (M D)_it u_it``.

    ``M D = M_u D - F Theta`` are the dummies residualized on every FE and
    control, ``u = yu - M_u D beta - F gamma`` the regression's residuals.
    Units of cluster c are ``cl_order[cl_starts[c]:cl_starts[c + 1]]``.
    """
    C = cl_starts.shape[0] - 1
    k = beta_k.shape[0]
    M = gamma_M.shape[0]
    n_chunks = min(C, _CHUNKS)
    part = np.zeros((n_chunks, k, k))
    run_chunks(_meat_chunks, n_chunks,
               (n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, j_N, beta_k, gamma_M,
                Theta_Mk, cl_order, cl_starts, part),
               work=rows.shape[0] * M)
    return _chunk_sum(part)
