"""Small dense factorisations inside kernels (no LAPACK call per small matrix)."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["cholesky_lower", "cholesky_solve"]


@jit
def cholesky_lower(L, n):
    """In place: the lower Cholesky factor of ``L[:n, :n]`` (its lower triangle is
    read). Returns the smallest pivot; at most 0 (-inf for a NaN pivot) where it
    stopped, and the factor is then unusable."""
    low = np.inf
    for j in range(n):
        d = L[j, j]
        for q in range(j):
            d -= L[j, q] * L[j, q]
        if not d > 0.0:
            return d if d <= 0.0 else -np.inf
        low = min(low, d)
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, n):
            v = L[i, j]
            for q in range(j):
                v -= L[i, q] * L[j, q]
            L[i, j] = v / L[j, j]
    return low


@jit
def cholesky_solve(L, n, z):
    """In place: ``z[:n] = (L L')^-1 z[:n]`` with ``L`` from :func:`cholesky_lower`."""
    for i in range(n):
        v = z[i]
        for q in range(i):
            v -= L[i, q] * z[q]
        z[i] = v / L[i, i]
    for i in range(n - 1, -1, -1):
        v = z[i]
        for q in range(i + 1, n):
            v -= L[q, i] * z[q]
        z[i] = v / L[i, i]
