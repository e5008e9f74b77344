"""Kernels of the Callaway-Sant'Anna estimator: rows of the influence
functions, unit by unit from the wide outcomes, and the multiplier-bootstrap
sums. Plain loops (not BLAS), so every result is bit-identical whichever
process or thread computes it."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["multiplier_sums", "influence_rows", "influence_rows_unbalanced"]


@jit
def multiplier_sums(v_BC, s_CK, n):
    """Bootstrap draws of the estimators: out[b, k] = sum_c v[b, c] s[c, k] / n.

    Plain loops (not BLAS) so that every draw is bit-identical whichever
    process or thread computes it.
    """
    nb, nc = v_BC.shape
    nk = s_CK.shape[1]
    out_BK = np.zeros((nb, nk))
    for b in range(nb):
        for c in range(nc):
            vb = v_BC[b, c]
            for k in range(nk):
                out_BK[b, k] += vb * s_CK[c, k]
    for b in range(nb):
        for k in range(nk):
            out_BK[b, k] /= n
    return out_BK


@jit
def influence_rows(y, g, w, gidx, lo, hi, n, t_idx, b_idx, group, horizon, mu1, mu0, s1, s0, W, A, out):
    """``out[i - lo] = inf[i] @ W + w_i A[:, gidx_i]`` for units ``lo <= i < hi``:
    linear combinations (columns of W) of the cells' influence functions plus a
    term per cohort (the estimated weights' own influence, ``A``), computed
    from the outcomes unit by unit."""
    k, m = W.shape
    for i in range(lo, hi):
        r = i - lo
        for j in range(m):
            out[r, j] = 0.0
        wi = w[i]
        if wi == 0.0:
            continue
        gi = g[i]
        for c in range(k):
            if s1[c] == 0.0:  # the universal reference cell
                continue
            if gi == group[c]:
                v = n * (wi * (y[i, t_idx[c]] - y[i, b_idx[c]] - mu1[c]) / s1[c])
            elif gi == 0 or (gi > horizon[c] and gi != group[c]):
                v = -n * (wi * (y[i, t_idx[c]] - y[i, b_idx[c]] - mu0[c]) / s0[c])
            else:
                continue
            for j in range(m):
                out[r, j] += v * W[c, j]
        if gidx[i] >= 0:
            for j in range(m):
                out[r, j] += wi * A[j, gidx[i]]


@jit
def influence_rows_unbalanced(y, g, w, gidx, lo, hi, n, t_idx, b_idx, group, horizon, mu1, mu0, s1, s0,
                              mu1b, mu0b, s1b, s0b, W, A, out):
    """:func:`influence_rows` of an unbalanced panel (NaN = period not
    observed): a cell's influence on a unit is the sum over the unit's rows in
    the cell's two periods of ``+-n w_i (y_is - mean) / weight``, the mean and
    weight of its group (treated or comparison) in that period."""
    k, m = W.shape
    for i in range(lo, hi):
        r = i - lo
        for j in range(m):
            out[r, j] = 0.0
        wi = w[i]
        if wi == 0.0:
            continue
        gi = g[i]
        for c in range(k):
            if s1[c] == 0.0:  # the universal reference cell
                continue
            yt = y[i, t_idx[c]]
            yb = y[i, b_idx[c]]
            if gi == group[c]:
                v = 0.0
                if not np.isnan(yt):
                    v += wi * (yt - mu1[c]) / s1[c]
                if not np.isnan(yb):
                    v -= wi * (yb - mu1b[c]) / s1b[c]
            elif gi == 0 or (gi > horizon[c] and gi != group[c]):
                v = 0.0
                if not np.isnan(yt):
                    v -= wi * (yt - mu0[c]) / s0[c]
                if not np.isnan(yb):
                    v += wi * (yb - mu0b[c]) / s0b[c]
            else:
                continue
            v *= n
            for j in range(m):
                out[r, j] += v * W[c, j]
        if gidx[i] >= 0:
            for j in range(m):
                out[r, j] += wi * A[j, gidx[i]]
