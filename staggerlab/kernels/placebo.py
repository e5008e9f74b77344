"""Kernels of the placebo (randomization inference) battery.

Two families:

* the unit-table fast path for unit + period FEs (see DESIGN.md, "Placebo /
  randomization inference fast path"): ``unit_tables`` builds, once per
  design, per-(unit, adoption time) suffix sums; ``draw_thetas`` and
  ``draw_meats`` then give every draw's coefficient and cluster-robust meat
  from those tables without forming an N x B matrix;
* the general path: ``placebo_columns`` builds a block of placebo treatment
  columns (N x B) that the caller demeans and reduces.

Shapes are suffixed: ``_N`` rows, ``_U`` units, ``_L`` candidate adoption
times, ``_M`` partialled-out columns (period dummies + controls), ``_P``
packed entries of a symmetric M x M matrix, ``_B`` draws in a block, ``_C``
clusters. Every loop over draws is parallel, and each draw is computed
serially inside one thread, so results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange

__all__ = ["unit_tables", "draw_thetas", "draw_meats", "placebo_columns", "pack_outer", "partial_shuffle"]


@jit
def unit_tables(unit_N, per_N, F_NM, y_N, thr_L, n_units):
    """Per-unit tables of the fast path.

    Returns ``Sy_UL[i, l] = sum_{t >= thr_l} y_it``, ``SF_ULM`` (same suffix
    sums of the rows of F), ``cnt_UL`` (rows with period >= thr_l), ``T_U``
    (rows per unit) and ``W_UP = [P_i, packed G_i]`` with ``P_i = sum_t y_it
    F_it`` and ``G_i = sum_t F_it F_it'`` packed upper-triangularly (so that
    ``theta' G_i theta = packed(G_i) . pack_outer(theta)``).
    """
    N, M = F_NM.shape
    L = thr_L.shape[0]
    P2 = M * (M + 1) // 2
    Sy_UL = np.zeros((n_units, L))
    SF_ULM = np.zeros((n_units, L, M))
    cnt_UL = np.zeros((n_units, L))
    T_U = np.zeros(n_units)
    W_UP = np.zeros((n_units, M + P2))
    for r in range(N):
        i = unit_N[r]
        T_U[i] += 1.0
        yr = y_N[r]
        for l in range(L):
            if per_N[r] >= thr_L[l]:
                Sy_UL[i, l] += yr
                cnt_UL[i, l] += 1.0
                for m in range(M):
                    SF_ULM[i, l, m] += F_NM[r, m]
        for m in range(M):
            W_UP[i, m] += yr * F_NM[r, m]
        p = M
        for a in range(M):
            fa = F_NM[r, a]
            for b in range(a, M):
                W_UP[i, p] += fa * F_NM[r, b]
                p += 1
    return Sy_UL, SF_ULM, cnt_UL, T_U, W_UP


@pjit
def pack_outer(theta_BM, beta_B):
    """``[theta, beta * packed(theta theta')]`` (off-diagonal terms doubled),
    laid out like the rows of ``W_UP`` so that ``Z_BP @ W_UP.T`` gives every
    unit's ``P_i theta + beta theta' G_i theta``."""
    B, M = theta_BM.shape
    P = M + M * (M + 1) // 2
    Z_BP = np.empty((B, P))
    for b in prange(B):
        for a in range(M):
            Z_BP[b, a] = theta_BM[b, a]
        p = M
        for a in range(M):
            ta = theta_BM[b, a] * beta_B[b]
            Z_BP[b, p] = ta * theta_BM[b, a]
            p += 1
            for c in range(a + 1, M):
                Z_BP[b, p] = 2.0 * ta * theta_BM[b, c]
                p += 1
    return Z_BP


@pjit
def draw_thetas(lidx_BU, Sy_UL, SF_ULM, UU_UL, Cinv_MM):
    """Per draw: ``theta = C^-1 sum_S SF``, ``D'MD``, ``D'My`` and ``sum_S UU``.

    ``lidx_BU[b, i]`` is the adoption-time index of unit ``i`` in draw ``b``
    (-1: untreated in that draw).
    """
    B, U = lidx_BU.shape
    M = Cinv_MM.shape[0]
    theta_BM = np.empty((B, M))
    dmd_B = np.empty(B)
    dmy_B = np.empty(B)
    uu_B = np.empty(B)
    for b in prange(B):
        E_M = np.zeros(M)
        sy = 0.0
        uu = 0.0
        for i in range(U):
            l = lidx_BU[b, i]
            if l >= 0:
                sy += Sy_UL[i, l]
                uu += UU_UL[i, l]
                for m in range(M):
                    E_M[m] += SF_ULM[i, l, m]
        et = 0.0
        for m in range(M):
            acc = 0.0
            for j in range(M):
                acc += Cinv_MM[m, j] * E_M[j]
            theta_BM[b, m] = acc
            et += E_M[m] * acc
        dmd_B[b] = uu - et
        dmy_B[b] = sy
        uu_B[b] = uu
    return theta_BM, dmd_B, dmy_B, uu_B


@pjit
def draw_meats(negs0_BU, lidx_BU, Sy_UL, SF_ULM, UU_UL, theta_BM, beta_B, cl_U, n_clusters):
    """CRV1 meat per draw: ``sum_c (sum_{i in c} s_i)^2``.

    ``-negs0_BU`` is every unit's score if it were untreated in the draw;
    treated units add ``Sy - beta (UU - 2 SF' theta)``.
    """
    B, U = lidx_BU.shape
    M = theta_BM.shape[1]
    # clusters = units (the usual case): each unit's score is its cluster sum
    by_unit = n_clusters == U
    if by_unit:
        for i in range(U):
            if cl_U[i] != i:
                by_unit = False
                break
    meat_B = np.empty(B)
    for b in prange(B):
        s_C = np.zeros(0 if by_unit else n_clusters)
        beta = beta_B[b]
        acc = 0.0
        for i in range(U):
            s = -negs0_BU[b, i]
            l = lidx_BU[b, i]
            if l >= 0:
                sft = 0.0
                for m in range(M):
                    sft += SF_ULM[i, l, m] * theta_BM[b, m]
                s += Sy_UL[i, l] - beta * (UU_UL[i, l] - 2.0 * sft)
            if by_unit:
                acc += s * s
            else:
                s_C[cl_U[i]] += s
        if not by_unit:
            for c in range(n_clusters):
                acc += s_C[c] * s_C[c]
        meat_B[b] = acc
    return meat_B


@pjit
def placebo_columns(adopt_BU, unit_N, time_N):
    """``D[r, b] = 1[time_r >= adopt[b, unit_r]]`` (N x B); untreated units
    carry an adoption time beyond every period."""
    B = adopt_BU.shape[0]
    N = unit_N.shape[0]
    D_NB = np.empty((N, B))
    for r in prange(N):
        i = unit_N[r]
        t = time_N[r]
        for b in range(B):
            D_NB[r, b] = 1.0 if t >= adopt_BU[b, i] else 0.0
    return D_NB


@pjit
def partial_shuffle(offset_BK, n):
    """First K entries of a Fisher-Yates shuffle of ``0..n-1`` per draw.

    ``offset_BK[b, j]`` is a uniform integer in ``[0, n - j)`` drawn by the
    caller; swap ``j`` with ``j + offset``. Returns a sample without
    replacement of K of the n positions (in draw order).
    """
    B, K = offset_BK.shape
    out_BK = np.empty((B, K), dtype=np.int64)
    for b in prange(B):
        perm = np.arange(n)
        for j in range(K):
            k = j + offset_BK[b, j]
            v = perm[k]
            perm[k] = perm[j]
            perm[j] = v
            out_BK[b, j] = v
    return out_BK
