"""Cluster sums: the building block of cluster-robust variances."""

from __future__ import annotations

import numpy as np

from ._jit import jit, readonly, run_chunks
from .linalg import cholesky_lower, cholesky_solve

__all__ = ["cluster_sums", "cluster_score_sums", "cluster_score_sums_into", "jackknife_rows", "lone_cluster"]

#: fixed chunks of clusters of :func:`jackknife_rows` (the grain of the work sharing only)
_JACKKNIFE_CHUNKS = 16


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


@jit
def _jackknife_chunks(lo, hi, n_chunks, Q_NP, A_NM, u_N, order, starts, k_max, out_GM, pivot_G):
    G = starts.shape[0] - 1
    P = Q_NP.shape[1]
    M = A_NM.shape[1]
    L = np.empty((k_max, k_max))
    z = np.empty(k_max)
    for ch in range(lo, hi):
        for g in range(ch * G // n_chunks, (ch + 1) * G // n_chunks):
            s = starts[g]
            T = starts[g + 1] - s
            for m in range(M):
                out_GM[g, m] = 0.0
            if T <= P:
                # (I - Q_g Q_g')^-1 u_g with the T x T matrix
                for i in range(T):
                    ri = order[s + i]
                    for j in range(i + 1):
                        rj = order[s + j]
                        acc = 0.0
                        for p in range(P):
                            acc += Q_NP[ri, p] * Q_NP[rj, p]
                        L[i, j] = (1.0 if i == j else 0.0) - acc
                    z[i] = u_N[ri]
                pivot_G[g] = cholesky_lower(L, T)
                if pivot_G[g] <= 0.0:
                    continue
                cholesky_solve(L, T, z)
                for i in range(T):
                    r = order[s + i]
                    for m in range(M):
                        out_GM[g, m] -= z[i] * A_NM[r, m]
                continue
            # a cluster with more rows than columns, by Woodbury's push-through identity:
            # (I - Q_g Q_g')^-1 u_g = u_g + Q_g (I - Q_g'Q_g)^-1 Q_g'u_g, with the P x P matrix
            for i in range(P):
                z[i] = 0.0
                for j in range(i + 1):
                    L[i, j] = 0.0
            for t in range(T):
                r = order[s + t]
                ut = u_N[r]
                for i in range(P):
                    qi = Q_NP[r, i]
                    z[i] += qi * ut
                    for j in range(i + 1):
                        L[i, j] += qi * Q_NP[r, j]
            for i in range(P):
                for j in range(i + 1):
                    L[i, j] = (1.0 if i == j else 0.0) - L[i, j]
            pivot_G[g] = cholesky_lower(L, P)
            if pivot_G[g] <= 0.0:
                continue
            cholesky_solve(L, P, z)
            for t in range(T):
                r = order[s + t]
                zt = u_N[r]
                for p in range(P):
                    zt += Q_NP[r, p] * z[p]
                for m in range(M):
                    out_GM[g, m] -= zt * A_NM[r, m]


def jackknife_rows(Q_NP, A_NM, u_N, order, starts):
    """Per cluster ``g`` (rows ``order[starts[g]:starts[g + 1]]``):
    ``-A_g' (I - Q_g Q_g')^-1 u_g`` (G x M), and the smallest Cholesky pivot of the matrix factored (G; at most 0 where
    the factorisation stopped, and that cluster's row is then meaningless).

    A cluster of ``T`` rows is solved with the ``T x T`` matrix when ``T <= P``
    and, by Woodbury, with the ``P x P`` matrix ``I - Q_g'Q_g`` otherwise
    (``P`` the columns of ``Q``): the cost is ``O(T min(T, P)^2)``, not
    ``O(T^3)``, for a few large clusters. Clusters are independent: the same
    bits for any number of threads."""
    G = starts.shape[0] - 1
    P = Q_NP.shape[1]
    out = np.empty((G, A_NM.shape[1]))
    pivot = np.empty(G)
    sizes = np.diff(starts)
    k_max = int(np.minimum(sizes, P).max()) if G else 0
    n_chunks = max(1, min(G, _JACKKNIFE_CHUNKS))
    args = (n_chunks, readonly(Q_NP), readonly(A_NM), readonly(u_N), np.ascontiguousarray(order, dtype=np.int64),
            np.ascontiguousarray(starts, dtype=np.int64), k_max, out, pivot)
    run_chunks(_jackknife_chunks, n_chunks, args, work=float(np.sum(sizes * np.minimum(sizes, P) ** 2)))
    return out, pivot


@jit
def lone_cluster(x_N, codes_N):
    """The cluster code shared by every nonzero entry of ``x``; -1 if they lie in
    two or more clusters (found at the first such pair: a dense column stops
    within a few rows), -2 if ``x`` is all zero."""
    first = -2
    for n in range(x_N.shape[0]):
        if x_N[n] != 0.0:
            c = codes_N[n]
            if first == -2:
                first = c
            elif c != first:
                return -1
    return first
