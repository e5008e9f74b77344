"""Kernels of panel bookkeeping: sortedness, repeated (unit, time) pairs and
run lengths of id columns. Plain loops over code arrays, O(N), no N-sized
temporaries beyond their output."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["strictly_increasing_pairs", "repeated_cells", "int_run_lengths"]


@jit
def strictly_increasing_pairs(u: np.ndarray, t: np.ndarray) -> bool:
    """Whether the (u, t) pairs are sorted with none repeated."""
    for i in range(1, u.size):
        if u[i] < u[i - 1] or (u[i] == u[i - 1] and t[i] <= t[i - 1]):
            return False
    return True


@jit
def repeated_cells(u: np.ndarray, t: np.ndarray, n_t: int, n_cells: int) -> np.ndarray:
    """Mask of rows whose code pair (u, t) occurs more than once, counted on
    the ``n_cells`` grid."""
    seen = np.zeros(n_cells, dtype=np.uint8)  # 0, 1, or 2 = "more than once"
    for i in range(u.size):
        k = u[i] * n_t + t[i]
        if seen[k] < 2:
            seen[k] += 1
    dup = np.zeros(u.size, dtype=np.bool_)
    for i in range(u.size):
        dup[i] = seen[u[i] * n_t + t[i]] > 1
    return dup


@jit
def int_run_lengths(v: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive values of a non-empty array."""
    n_runs = 1
    for i in range(1, v.size):
        if v[i] != v[i - 1]:
            n_runs += 1
    out = np.empty(n_runs, dtype=np.int64)
    r, start = 0, 0
    for i in range(1, v.size):
        if v[i] != v[i - 1]:
            out[r] = i - start
            r += 1
            start = i
    out[r] = v.size - start
    return out
