"""Numba kernels: plain functions of contiguous arrays, no frames or formulas."""

from . import cluster, demean

__all__ = ["demean", "cluster"]
