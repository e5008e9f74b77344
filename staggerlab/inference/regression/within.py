"""The unit + period within solver shared by the exact two-way fast paths.

:class:`UnitPeriodWithin` holds, for one unweighted panel, the rows of every
unit (CSR), the raw outcome and controls, ``C = F'F`` and ``F'yu`` for
``F = M_u [period dummies 2..T, X]`` (``M_u``: unit demeaning, ``yu = M_u y``)
and the factor of ``C``. By Frisch-Waugh-Lovell, any regression on unit and
period fixed effects plus controls reduces to these per-unit blocks, which
the kernels of :mod:`staggerlab.kernels.within` rebuild on the fly; the
placebo engine and the lean event-study regression add their own per-unit
sums on top of the same blocks.

``split``'s permutation test sums the per-unit rows of :meth:`unit_rows`
over random subsets of units. Weighted designs, other FE structures and
``montecarlo.fast_twfe`` demean with
:class:`~staggerlab.inference.regression.absorb.Absorber` (the same unit sweep
plus period normal equations, on materialised columns). The imputation first
stage keeps its own weighted sums over the untreated rows (weights and a row
subset that these unweighted kernels do not take).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.linalg as sla

from ...kernels import within as kw
from ...kernels._jit import readonly
from .rank import scaled_cholesky

__all__ = ["UnitPeriodWithin", "normal_equations"]


def normal_equations(W: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    """``C = F'F`` and ``F'yu`` from per-unit ``[P_i, packed G_i]`` rows.

    Parameters
    ----------
    W : ndarray, shape (n, M + M (M + 1) / 2)
        Rows ``[P_i, packed upper triangle of G_i]`` (as
        :func:`staggerlab.kernels.within.unit_sums` returns, or per unit).
    M : int
        Number of columns of ``F``.

    Returns
    -------
    C : ndarray, shape (M, M)
    Fy : ndarray, shape (M,)
    """
    C = np.zeros((M, M))
    C[np.triu_indices(M)] = W[:, M:].sum(axis=0)
    return C + np.triu(C, 1).T, W[:, :M].sum(axis=0)


class UnitPeriodWithin:
    """Exact unit + period FE algebra of one unweighted panel.

    Parameters
    ----------
    unit_N : ndarray of int
        Unit code of every row, in ``[0, n_units)``.
    n_units : int
        Number of units (each with at least one row).
    per_N : ndarray of int8 or int16
        Period code of every row, in ``[0, n_periods)`` (the narrowest type
        that holds the codes, as the callers keep it).
    n_periods : int
        Number of periods; period 0 is the reference.
    X_NX : ndarray, shape (N, J)
        A block holding the controls (any number, including none).
    x_cols : sequence of int, optional
        The columns of ``X_NX`` that are the controls (default: all). A fit's
        regressor block is passed with the treatment's column left out, so
        the N x K controls are never copied.
    y_N : ndarray, shape (N,)
        Outcome.

    Notes
    -----
    Arrays are normalised here (int64 unit codes, read-only C-contiguous
    float64 values)
    so that every kernel is compiled once whatever the caller's layout.
    :meth:`factor` applies the package's rank rule
    (:func:`staggerlab.inference.regression.rank.scaled_cholesky`).
    """

    def __init__(self, unit_N: np.ndarray, n_units: int, per_N: np.ndarray, n_periods: int, X_NX: np.ndarray,
                 y_N: np.ndarray, x_cols: Sequence[int] | None = None):
        self.row_ptr, self.rows = kw.rows_by_unit(np.ascontiguousarray(unit_N, dtype=np.int64), n_units)
        self.max_rows = int(np.diff(self.row_ptr).max())
        X = readonly(np.ascontiguousarray(X_NX, dtype=np.float64))
        y = readonly(np.ascontiguousarray(y_N, dtype=np.float64))
        xc = np.arange(X.shape[1], dtype=np.int64) if x_cols is None else np.asarray(x_cols, dtype=np.int64)
        #: the kernels' leading arguments ``(row_ptr, rows, per_N, X_NX, xc_K, y_N, n_periods)``
        self.cols = (self.row_ptr, self.rows, per_N, X, xc, y, n_periods)
        self.n_units, self.n_periods = n_units, n_periods
        #: columns of F: period dummies 2..T, then the controls
        self.M = n_periods - 1 + xc.size
        self.cho, self.sc = None, None

    def unit_sums(self) -> np.ndarray:
        """``[F'yu, packed F'F]`` summed over units (one row)."""
        return kw.unit_sums(*self.cols, self.max_rows)[None, :]

    def unit_rows(self) -> np.ndarray:
        """``[F_i'yu_i, packed F_i'F_i]`` of every unit, shape ``(n_units, M + M (M + 1) / 2)``."""
        return kw.unit_rows(*self.cols, self.max_rows)

    def normal_equations(self, W: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``C = F'F`` and ``F'yu``, from per-unit rows ``W`` if given."""
        return normal_equations(self.unit_sums() if W is None else W, self.M)

    def factor(self, C: np.ndarray) -> bool:
        """Factor ``C`` (scaled Cholesky); False if it is rank deficient."""
        fac = scaled_cholesky(C)
        if fac is None:
            return False
        self.cho, self.sc = fac
        return True

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``C^{-1} b`` from the factor."""
        return self.sc * sla.cho_solve(self.cho, self.sc * b)

    def inverse(self) -> np.ndarray:
        """``C^{-1}`` from the factor."""
        sc = self.sc
        return sla.cho_solve(self.cho, np.eye(sc.size)) * sc[:, None] * sc[None, :]

    def resid_ss(self, theta: np.ndarray) -> float:
        """``sum (yu - F theta)^2`` over all rows."""
        return kw.resid_ss(*self.cols, self.max_rows, theta)
