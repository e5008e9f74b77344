"""Kernels of the partitioned placebo: one partition's per-draw sums over its
treated (draw, unit, adoption level) entries, from its unit tables.

Entries come with local unit indices (``i``) and level indices (``lv``); the
tables are those of :func:`staggerlab.kernels.placebo.unit_tables` after
:func:`~staggerlab.kernels.placebo.residualize_tables` (``tab_RQ[i * L + l] =
[SF_il (M), Sy_il, UU_il]``, ``W_UP[i] = [P_i, packed G_i]``). Sums run entry
by entry in the given order (draws ascending), so a partition's result does
not depend on threads.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["entry_sums", "entry_meat"]


@jit
def entry_sums(b, i, lv, tab_RQ, n_l, B):
    """Per draw ``[sum SF (M), sum UU, sum Sy]`` over the entries."""
    M = tab_RQ.shape[1] - 2
    out = np.zeros((B, M + 2))
    for n in range(b.shape[0]):
        d = b[n]
        t = tab_RQ[i[n] * n_l + lv[n]]
        for m in range(M):
            out[d, m] += t[m]
        out[d, M] += t[M + 1]
        out[d, M + 1] += t[M]
    return out


@jit
def entry_meat(b, i, lv, tab_RQ, n_l, W_UP, theta_BM, beta_B, Z_BP, S0_UB, dense):
    """Per draw ``sum (s_i^2 - s0_i^2)`` over the treated entries.

    ``s0_i = -W_i . z_b`` (or ``S0_UB[i, b]`` when ``dense``) is a unit's
    untreated score and ``c_i = Sy - beta (UU - 2 SF . theta)`` the change
    treatment makes to it.
    """
    B, M = theta_BM.shape
    P = W_UP.shape[1]
    out = np.zeros(B)
    for n in range(b.shape[0]):
        d, u = b[n], i[n]
        t = tab_RQ[u * n_l + lv[n]]
        if dense:
            s0 = S0_UB[u, d]
        else:
            s0 = 0.0
            for j in range(P):
                s0 -= W_UP[u, j] * Z_BP[d, j]
        st = 0.0
        for m in range(M):
            st += t[m] * theta_BM[d, m]
        c = t[M] - beta_B[d] * (t[M + 1] - 2.0 * st)
        out[d] += c * (2.0 * s0 + c)
    return out
