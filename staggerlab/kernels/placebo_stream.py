"""Streaming kernels of the placebo fast path for huge panels: when the per-unit
tables would not fit the memory budget (10 million rows: W alone is 1.4 GB),
every slab of draws makes two passes over the units, rebuilding each unit's
rows of F on the fly, so no table is stored. Shapes and chunking follow
:mod:`staggerlab.kernels.placebo` (fixed unit/cluster chunks whose partial
sums are added in chunk order)."""

from __future__ import annotations

import numpy as np

from ._jit import jit, readonly, run_chunks
from .placebo import SIMD, solve_thetas, treated_part
from .within import unit_block

__all__ = ["stream_thetas", "stream_meats"]

#: fixed number of unit/cluster chunks: the summation order depends on it only
_UNIT_CHUNKS = 16


def _ro64(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only int64 array (no copy if it already is int64)."""
    return readonly(np.ascontiguousarray(a, dtype=np.int64))


def _in_order(part: np.ndarray) -> np.ndarray:
    """``part[0] + part[1] + ...``, added in chunk order."""
    out = part[0].copy()
    for ch in range(1, part.shape[0]):
        out += part[ch]
    return out


@jit(fastmath=SIMD)
def _unit_stream(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, theta_y, F_TM, y_T, tab_LQ):
    """Unit i's rows of F, its residualized outcome ``yu - F theta_y`` and its
    table rows ``[SF_il, Sy_il, UU_il]``; returns the number of rows."""
    n = unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T)
    M = F_TM.shape[1]
    L = thr_L.shape[0]
    for j in range(n):
        e = y_T[j]
        for m in range(M):
            e -= F_TM[j, m] * theta_y[m]
        y_T[j] = e
    for l in range(L):
        for q in range(M + 2):
            tab_LQ[l, q] = 0.0
    for j in range(n):
        per = per_N[rows[row_ptr[i] + j]]
        for l in range(L):
            if per >= thr_L[l]:
                for m in range(M):
                    tab_LQ[l, m] += F_TM[j, m]
                tab_LQ[l, M] += y_T[j]
                tab_LQ[l, M + 1] += 1.0
    for l in range(L):
        c = tab_LQ[l, M + 1]
        tab_LQ[l, M + 1] = c - c * c / n
    return n


@jit(fastmath=SIMD)
def _stream_thetas_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, theta_y,
                          max_rows, lev_UB, part):
    U = row_ptr.shape[0] - 1
    M = theta_y.shape[0]
    L = thr_L.shape[0]
    B = part.shape[1]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    tab_LQ = np.empty((L, M + 2))
    for ch in range(lo, hi):
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            _unit_stream(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, theta_y, F_TM, y_T, tab_LQ)
            for b in range(B):
                l = lev_UB[i, b]
                if l >= 0:
                    for q in range(M + 2):
                        part[ch, b, q] += tab_LQ[l, q]


def stream_thetas(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, theta_y, max_rows, lev_UB, n_draws,
                  Cinv_MM):
    """:func:`draw_thetas` without stored tables (first pass of a slab)."""
    U = row_ptr.shape[0] - 1
    M = Cinv_MM.shape[0]
    n_chunks = max(1, min(U, _UNIT_CHUNKS))
    part = np.zeros((n_chunks, n_draws, M + 2))
    args = (n_chunks, _ro64(row_ptr), readonly(rows), readonly(per_N), readonly(X_NX), _ro64(xc_K), readonly(y_N),
            int(n_periods), _ro64(thr_L), readonly(theta_y), int(max_rows), readonly(lev_UB), part)
    run_chunks(_stream_thetas_chunks, n_chunks, args, work=rows.shape[0] * M * (thr_L.shape[0] + 2) + U * n_draws)
    return solve_thetas(part, Cinv_MM)


@jit(fastmath=SIMD)
def _stream_meats_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, theta_y,
                         max_rows, lev_UB, thetaT_MB, beta_B, cl_order, cl_starts, part):
    C = cl_starts.shape[0] - 1
    M = thetaT_MB.shape[0]
    L = thr_L.shape[0]
    B = beta_B.shape[0]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    tab_LQ = np.empty((L, M + 2))
    v_B = np.empty(B)
    s_B = np.empty(B)
    theta_M = np.empty(M)
    for ch in range(lo, hi):
        for c in range(ch * C // n_chunks, (ch + 1) * C // n_chunks):
            for b in range(B):
                s_B[b] = 0.0
            for q in range(cl_starts[c], cl_starts[c + 1]):
                i = cl_order[q]
                n = _unit_stream(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, theta_y, F_TM, y_T,
                                 tab_LQ)
                for j in range(n):
                    for b in range(B):
                        v_B[b] = 0.0
                    for m in range(M):
                        f = F_TM[j, m]
                        for b in range(B):
                            v_B[b] += f * thetaT_MB[m, b]
                    yj = y_T[j]
                    for b in range(B):
                        s_B[b] -= v_B[b] * (yj + beta_B[b] * v_B[b])
                for b in range(B):
                    l = lev_UB[i, b]
                    if l >= 0:
                        for m in range(M):
                            theta_M[m] = thetaT_MB[m, b]
                        s_B[b] += treated_part(tab_LQ[l], theta_M, beta_B[b])
            for b in range(B):
                part[ch, b] += s_B[b] * s_B[b]


def stream_meats(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, thr_L, theta_y, max_rows, lev_UB, thetaT_MB,
                 beta_B, cl_order, cl_starts):
    """CRV1 meat per draw without stored tables (second pass of a slab):
    every unit's score ``-sum_t v_t (yy_t + beta v_t)`` (``v = F theta``) plus
    its treated part, summed within clusters, squared."""
    C = cl_starts.shape[0] - 1
    M, B = thetaT_MB.shape
    n_chunks = max(1, min(C, _UNIT_CHUNKS))
    part = np.zeros((n_chunks, B))
    args = (n_chunks, _ro64(row_ptr), readonly(rows), readonly(per_N), readonly(X_NX), _ro64(xc_K), readonly(y_N),
            int(n_periods), _ro64(thr_L), readonly(theta_y), int(max_rows), readonly(lev_UB), readonly(thetaT_MB),
            readonly(beta_B), _ro64(cl_order), _ro64(cl_starts), part)
    run_chunks(_stream_meats_chunks, n_chunks, args, work=rows.shape[0] * M * (B + thr_L.shape[0]))
    return _in_order(part)


