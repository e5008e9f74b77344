"""Kernel of the wild cluster bootstrap's one O(N k) pass: cluster sums of
regressors times several residual-like vectors at once.

Naming: ``_N`` observations, ``_K`` regressors, ``_M`` weight vectors, ``_G``
clusters.
"""

from __future__ import annotations

from ._jit import jit

__all__ = ["cluster_wsums_into"]


@jit
def cluster_wsums_into(out_MGK, X_NK, W_NM, cl_N):
    """Add ``X[n, k] * W[n, m]`` to ``out[m, cl[n], k]`` without forming ``X * W``.

    Accumulates, so the design can be passed in row chunks and never exist
    as one N x K matrix.
    """
    N, K = X_NK.shape
    M = W_NM.shape[1]
    for n in range(N):
        g = cl_N[n]
        for m in range(M):
            w = W_NM[n, m]
            for k in range(K):
                out_MGK[m, g, k] += X_NK[n, k] * w
