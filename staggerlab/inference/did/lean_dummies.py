"""Lean event-study regressions for big panels.

Dynamic TWFE and Sun-Abraham regress the outcome on k mutually exclusive 0/1
columns (event-time, or cohort x event-time, dummies) plus controls, with
unit and period FEs and CRV1 errors. Through ``feols`` that is an N x (k + K)
design (2 GB at 10 million rows with 15 event times and 8 controls). Here the
same coefficients and CRV1 covariance come from per-unit sums built from the
raw columns (``kernels/dummies.py``), with memory O(N) integers plus O(units).

The lean path applies to unweighted fits whose clusters contain the units,
with no singleton unit or period and no collinear column; otherwise it
returns None and the caller uses ``feols`` (which drops singletons and
collinear columns with a report), so results never depend on the path beyond
rounding (tests compare both at 1e-8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.linalg as sla

from ...kernels.dummies import dummy_meat, dummy_moments
from ...panels.panel import factorize_column
from ..regression.rank import scaled_cholesky
from ..regression.vcov import nested_in, ssc_df_k, ssc_factor
from ..regression.within import UnitPeriodWithin
from .staggered_data import StaggeredData

__all__ = ["LeanFit", "lean_dummy_fit"]



@dataclass
class LeanFit:
    """Coefficients of the k dummies, their CRV1 covariance, and counts."""

    beta: np.ndarray
    V: np.ndarray
    nobs: int
    df_t: int
    first_rows: np.ndarray  # one row per unit (to read unit-level columns)


def _scaled_inverse(S: np.ndarray) -> np.ndarray | None:
    # rank deficient (package rule): feols decides, and reports, the design
    fac = scaled_cholesky(S)
    if fac is None:
        return None
    cho, sc = fac
    return sla.cho_solve(cho, np.eye(S.shape[0])) * sc[:, None] * sc[None, :]


def lean_dummy_fit(sd: StaggeredData, j_N: np.ndarray, k: int) -> LeanFit | None:
    """Fit ``y ~ D_1..D_k + controls | unit + time`` with CRV1 by ``sd.cluster``.

    ``j_N[r]`` is the dummy that is 1 on row r (-1: none). Returns None when
    the lean path does not apply (see the module notes).
    """
    if sd.weights is not None or k == 0:
        return None
    frame = sd.frame
    if sd.id_codes is not None:
        ucode, tcode = sd.id_codes
    else:
        ucode, tcode = factorize_column(frame[sd.unit]), factorize_column(frame[sd.time])
    U, T = int(ucode.max()) + 1, int(tcode.max()) + 1
    if np.bincount(ucode, minlength=U).min() < 2 or np.bincount(tcode, minlength=T).min() < 2:
        return None  # singletons: feols drops them (and reports it)
    cl = ucode if sd.cluster == sd.unit else factorize_column(frame[sd.cluster])
    if not nested_in(ucode, cl):
        return None
    per_N = tcode.astype(np.min_scalar_type(-T))
    K = len(sd.controls)
    y = frame[sd.y].cast(pl.Float64).to_numpy()
    X = np.empty((y.size, K))
    for j, c in enumerate(sd.controls):
        X[:, j] = frame[c].cast(pl.Float64).to_numpy()
    wi = UnitPeriodWithin(ucode, U, per_N, T, X, y)
    cols, max_rows, row_ptr, rows = wi.cols, wi.max_rows, wi.row_ptr, wi.rows
    FF, Fy, FD, DD, Dy = dummy_moments(*cols, max_rows, j_N, k)
    if not wi.factor(FF):
        return None
    Cinv = wi.inverse()
    Theta = Cinv @ FD
    A = DD - FD.T @ Theta
    Ainv = _scaled_inverse(A)
    if Ainv is None:
        return None
    beta = Ainv @ (Dy - Theta.T @ Fy)
    gamma = Cinv @ (Fy - FD @ beta)
    cl_U = np.empty(U, dtype=np.int64)
    cl_U[ucode] = cl
    cl_order = np.argsort(cl_U, kind="stable").astype(np.int64)
    G = int(cl_U.max()) + 1
    cl_starts = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(np.bincount(cl_U, minlength=G), out=cl_starts[1:])
    meat = dummy_meat(*cols, max_rows, j_N, beta, gamma, np.ascontiguousarray(Theta), cl_order, cl_starts)
    N = frame.height
    df_k = ssc_df_k(k + K, [ucode, tcode], [U, T], [cl], [True, False])
    adj = ssc_factor("CRV1", N, df_k, G)
    V = adj * (Ainv @ meat @ Ainv)
    return LeanFit(beta, (V + V.T) / 2, N, G - 1, rows[row_ptr[:-1]])


def dense_bytes(sd: StaggeredData, k: int) -> int:
    """Bytes of the N x (k + controls) design ``feols`` would build."""
    return 8 * sd.frame.height * (k + len(sd.controls))
