"""Cluster sums: the building block of cluster-robust variances."""

from __future__ import annotations

import numpy as np

from ._jit import jit, readonly, run_chunks

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
def _jackknife_chunks(lo, hi, n_chunks, Q_NP, A_NM, u_N, order, starts, t_max, out_GM, pivot_G):
    G = starts.shape[0] - 1
    P = Q_NP.shape[1]
    M = A_NM.shape[1]
    L = np.empty((t_max, t_max))
    z = np.empty(t_max)
    for ch in range(lo, hi):
        for g in range(ch * G // n_chunks, (ch + 1) * G // n_chunks):
            s = starts[g]
            T = starts[g + 1] - s
            # I - H_gg with H_gg = Q_g Q_g', factored in place (lower Cholesky)
            low = np.inf
            for i in range(T):
                ri = order[s + i]
                for j in range(i + 1):
                    rj = order[s + j]
                    acc = 0.0
                    for p in range(P):
                        acc += Q_NP[ri, p] * Q_NP[rj, p]
                    v = (1.0 if i == j else 0.0) - acc
                    for q in range(j):
                        v -= L[i, q] * L[j, q]
                    if i == j:
                        low = min(low, v)
                        if v <= 0.0:
                            break
                        L[i, i] = np.sqrt(v)
                    else:
                        L[i, j] = v / L[j, j]
                if low <= 0.0:
                    break
            pivot_G[g] = low
            if low <= 0.0:
                continue
            # z = (I - H_gg)^-1 u_g: forward, then backward substitution
            for i in range(T):
                v = u_N[order[s + i]]
                for q in range(i):
                    v -= L[i, q] * z[q]
                z[i] = v / L[i, i]
            for i in range(T - 1, -1, -1):
                v = z[i]
                for q in range(i + 1, T):
                    v -= L[q, i] * z[q]
                z[i] = v / L[i, i]
            for m in range(M):
                acc = 0.0
                for i in range(T):
                    acc += z[i] * A_NM[order[s + i], m]
                out_GM[g, m] = -acc


def jackknife_rows(Q_NP, A_NM, u_N, order, starts):
    """Per cluster ``g`` (rows ``order[starts[g]:starts[g + 1]]``):
    ``-A_g' (I - Q_g Q_g')^-1 u_g`` (G x M), and the smallest Cholesky pivot
    of ``I - Q_g Q_g'`` (G; at most 0 where the factorisation stopped, and
    that cluster's row is left unset). Clusters are independent: the same
    bits for any number of threads."""
    G = starts.shape[0] - 1
    out = np.empty((G, A_NM.shape[1]))
    pivot = np.empty(G)
    t_max = int(np.max(np.diff(starts))) if G else 0
    n_chunks = max(1, min(G, _JACKKNIFE_CHUNKS))
    args = (n_chunks, readonly(Q_NP), readonly(A_NM), readonly(u_N), np.ascontiguousarray(order, dtype=np.int64), np.ascontiguousarray(starts, dtype=np.int64), t_max, out, pivot)
    run_chunks(_jackknife_chunks, n_chunks, args, work=float(np.sum(np.diff(starts) ** 2)) * Q_NP.shape[1])
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
