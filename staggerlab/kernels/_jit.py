"""The one JIT policy of the package.

All kernels are compiled with ``cache=True`` (so a warm on-disk cache makes the
first call in a new process cheap) and numpy's error model (division by zero
gives inf/nan like numpy instead of raising). ``fastmath`` stays off: the
tests compare to other packages at 1e-8 and reassociation would break that.
"""

from __future__ import annotations

import os

# numba's OpenMP layer spin-waits between parallel regions by default; on a
# shared machine that turned each small parallel call from ~0.5 ms into
# ~100 ms. Our parallel regions are all large (>= 50k rows), so sleeping
# workers cost nothing measurable. Must be set before the runtime loads.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numba as nb  # noqa: E402

__all__ = ["jit", "pjit", "prange"]

prange = nb.prange


def jit(*args, **kwargs):
    """``numba.njit`` with the package policy (serial)."""
    kwargs.setdefault("cache", True)
    kwargs.setdefault("error_model", "numpy")
    kwargs.setdefault("nogil", True)
    return nb.njit(*args, **kwargs)


def pjit(*args, **kwargs):
    """``numba.njit`` with the package policy and ``parallel=True``."""
    kwargs.setdefault("parallel", True)
    return jit(*args, **kwargs)
