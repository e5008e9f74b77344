"""Kernel of the wild cluster bootstrap's one O(N k) pass: cluster sums of
regressors times several residual-like vectors at once.

Naming: ``_N`` observations, ``_K`` regressors, ``_M`` weight vectors, ``_G``
clusters.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["cluster_wsums", "cluster_wsums_into"]


@jit
def cluster_wsums(X_NK, W_NM, cl_N, n_clusters):
    """``out[m, g, k] = sum_{n in g} X[n, k] * W[n, m]`` without forming ``X * W``."""
    N, K = X_NK.shape
    M = W_NM.shape[1]
    out_MGK = np.zeros((M, n_clusters, K))
    for n in range(N):
        g = cl_N[n]
        for m in range(M):
            w = W_NM[n, m]
            for k in range(K):
                out_MGK[m, g, k] += X_NK[n, k] * w
    return out_MGK


@jit
def cluster_wsums_into(out_MGK, X_NK, W_NM, cl_N):
    """Add ``X[n, k] * W[n, m]`` to ``out[m, cl[n], k]``: :func:`cluster_wsums`
    accumulated over row chunks, so the N x K design never exists at once."""
    N, K = X_NK.shape
    M = W_NM.shape[1]
    for n in range(N):
        g = cl_N[n]
        for m in range(M):
            w = W_NM[n, m]
            for k in range(K):
                out_MGK[m, g, k] += X_NK[n, k] * w
