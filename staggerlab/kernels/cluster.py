"""Cluster sums: the building block of cluster-robust variances."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["cluster_sums", "cluster_score_sums", "cluster_score_sums_into"]


@jit
def cluster_sums(scores_NK, cl_N, n_clusters):
    """``S[g, k] = sum_{n in g} scores[n, k]`` (G x K)."""
    N, K = scores_NK.shape
    S_GK = np.zeros((n_clusters, K))
    for n in range(N):
        g = cl_N[n]
        for k in range(K):
            S_GK[g, k] += scores_NK[n, k]
    return S_GK


@jit
def cluster_score_sums(X_NK, u_N, cl_N, n_clusters):
    """Cluster sums of the scores ``X * u`` without forming the N x K scores."""
    N, K = X_NK.shape
    S_GK = np.zeros((n_clusters, K))
    for n in range(N):
        g = cl_N[n]
        un = u_N[n]
        for k in range(K):
            S_GK[g, k] += X_NK[n, k] * un
    return S_GK


@jit
def cluster_score_sums_into(S_GK, X_NK, u_N, cl_N):
    """Add the scores ``X * u`` of these rows to their clusters' sums ``S``
    (:func:`cluster_score_sums` accumulated over row chunks)."""
    N, K = X_NK.shape
    for n in range(N):
        g = cl_N[n]
        un = u_N[n]
        for k in range(K):
            S_GK[g, k] += X_NK[n, k] * un
