"""Kernels of the unit + period within algebra, shared by every exact
two-way (unit and period fixed effects) fast path: the placebo engine, the lean
event-study regression and :class:`staggerlab.inference.regression.within.UnitPeriodWithin`.

The rows of every unit come as CSR (``row_ptr``, ``rows`` from
:func:`rows_by_unit`); ``unit_block`` rebuilds one unit's rows of
``F = M_u [period dummies 2..T, X]`` and of ``M_u y`` (``M_u``: unit
demeaning) on the fly, so the N x M design is never formed. The controls are
the columns ``xc_K`` of one C-contiguous float64 block ``X_NX`` (not a tuple
of columns), so one compiled kernel serves any number of them, and a caller
holding a block with other columns (a fit's regressors) passes it uncopied. Partial sums run over a fixed
number of unit chunks (serial kernels that :func:`~staggerlab.kernels._jit.run_chunks` spreads over
threads), added in chunk order: results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, run_chunks

__all__ = ["rows_by_unit", "unit_block", "add_packed", "resid_ss", "unit_sums", "unit_rows"]

#: reassociation and FMA contraction let the short dot products vectorize;
#: NaN/inf semantics are kept
_SIMD = {"reassoc", "contract"}
#: fixed number of unit chunks of the sums (never the thread count)
_CHUNKS = 16


@jit
def rows_by_unit(unit_N, n_units):
    """CSR of the rows of every unit (a counting sort, O(N))."""
    ptr = np.zeros(n_units + 1, dtype=np.int64)
    for r in range(unit_N.shape[0]):
        ptr[unit_N[r] + 1] += 1
    for i in range(n_units):
        ptr[i + 1] += ptr[i]
    fill = ptr[:-1].copy()
    # int32: half the memory of the row index (panels up to 2^31 rows)
    rows = np.empty(unit_N.shape[0], dtype=np.int32)
    for r in range(unit_N.shape[0]):
        rows[fill[unit_N[r]]] = r
        fill[unit_N[r]] += 1
    return ptr, rows


@jit
def unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T):
    """Fill ``F_TM[:n]`` with unit i's rows of ``M_u [period dummies 2..T,
    X]`` and ``y_T[:n]`` with its demeaned outcome; return n.

    Built on the fly from the raw columns, so the N x M design is never
    formed (10 million rows x 17 columns would be 1.4 GB).
    """
    n = row_ptr[i + 1] - row_ptr[i]
    M = F_TM.shape[1]
    off = n_periods - 1
    ybar = 0.0
    for j in range(n):
        r = rows[row_ptr[i] + j]
        for m in range(off):
            F_TM[j, m] = 0.0
        if per_N[r] > 0:
            F_TM[j, per_N[r] - 1] = 1.0
        for k in range(xc_K.shape[0]):
            F_TM[j, off + k] = X_NX[r, xc_K[k]]
        y_T[j] = y_N[r]
        ybar += y_N[r]
    ybar /= n
    for j in range(n):
        y_T[j] -= ybar
    for m in range(M):
        mean = 0.0
        for j in range(n):
            mean += F_TM[j, m]
        mean /= n
        for j in range(n):
            F_TM[j, m] -= mean
    return n


@jit(inline="always")
def add_packed(w, F_TM, j, yj, M):
    """Add row j's ``yj F_j`` and its packed upper triangle of ``F_j F_j'`` to ``w``."""
    for m in range(M):
        w[m] += yj * F_TM[j, m]
    p = M
    for a in range(M):
        fa = F_TM[j, a]
        for b in range(a, M):
            w[p] += fa * F_TM[j, b]
            p += 1


@jit
def _resid_ss_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, theta_M,
                     part):
    """``part[ch]``: :func:`resid_ss` over the units of chunks ``lo <= ch < hi``."""
    U = row_ptr.shape[0] - 1
    M = theta_M.shape[0]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    for ch in range(lo, hi):
        s = 0.0
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            n = unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T)
            for j in range(n):
                e = y_T[j]
                for m in range(M):
                    e -= F_TM[j, m] * theta_M[m]
                s += e * e
        part[ch] = s


def resid_ss(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, theta_M):
    """``sum (yu - F theta)^2`` over all rows, F built on the fly."""
    U = row_ptr.shape[0] - 1
    n_chunks = min(U, 64)
    part = np.zeros(n_chunks)
    run_chunks(_resid_ss_chunks, n_chunks,
               (n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, theta_M, part),
               work=_work(rows, n_periods, xc_K))
    total = 0.0
    for v in part.tolist():  # chunk order: the same bits for any thread count
        total += v
    return total


@jit(fastmath=_SIMD)
def _unit_sums_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, part):
    """``part[ch]``: :func:`unit_sums` over the units of chunks ``lo <= ch < hi``."""
    U = row_ptr.shape[0] - 1
    M = n_periods - 1 + xc_K.shape[0]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    for ch in range(lo, hi):
        w = part[ch]
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            n = unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T)
            for j in range(n):
                add_packed(w, F_TM, j, y_T[j], M)


def _work(rows, n_periods, xc_K):
    """Work measure of a pass over the rows for :func:`~staggerlab.kernels._jit.run_chunks`: rows x
    columns of F, the measure the thread rule of the exact two-way paths has used (a pass over a
    15k-row panel stays on one thread: on a busy machine a second thread costs more than it saves)."""
    return rows.shape[0] * (n_periods - 1 + xc_K.shape[0])


def _packed_size(n_periods, xc_K):
    """Length of a ``[P_i, packed G_i]`` row: M + M (M + 1) / 2 for the M columns of F."""
    M = n_periods - 1 + xc_K.shape[0]
    return M + M * (M + 1) // 2


def unit_sums(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows):
    """``sum_i [P_i, packed G_i]`` (``F'yu`` and ``F'F``) without per-unit rows."""
    U = row_ptr.shape[0] - 1
    P = _packed_size(n_periods, xc_K)
    n_chunks = min(U, _CHUNKS)
    part = np.zeros((n_chunks, P))
    run_chunks(_unit_sums_chunks, n_chunks,
               (n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, part),
               work=_work(rows, n_periods, xc_K))
    out = part[0].copy()
    for ch in range(1, n_chunks):  # chunk order: the same bits for any thread count
        out += part[ch]
    return out


@jit(fastmath=_SIMD)
def _unit_rows_chunks(lo, hi, n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, out):
    """Rows of :func:`unit_rows` of the units of chunks ``lo <= ch < hi``."""
    U = row_ptr.shape[0] - 1
    M = n_periods - 1 + xc_K.shape[0]
    F_TM = np.empty((max_rows, M))
    y_T = np.empty(max_rows)
    for ch in range(lo, hi):
        for i in range(ch * U // n_chunks, (ch + 1) * U // n_chunks):
            n = unit_block(i, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, F_TM, y_T)
            w = out[i]
            for j in range(n):
                add_packed(w, F_TM, j, y_T[j], M)


def unit_rows(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows):
    """Per-unit ``[P_i, packed G_i]`` (``F_i'yu_i`` and ``F_i'F_i``), one row per unit.

    For callers that sum the units over many subsets (``split``'s
    permutations): any subset's normal equations are a sum of these rows.
    """
    U = row_ptr.shape[0] - 1
    P = _packed_size(n_periods, xc_K)
    out = np.zeros((U, P))
    n_chunks = min(U, _CHUNKS)
    run_chunks(_unit_rows_chunks, n_chunks,
               (n_chunks, row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods, max_rows, out),
               work=_work(rows, n_periods, xc_K))
    return out
