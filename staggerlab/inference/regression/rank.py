"""The package's one rank / collinearity rule.

Every procedure that must decide whether a set of columns is linearly
independent calls :func:`independent_columns` with :data:`COLLIN_TOL`:
``feols``'s and ``feiv``'s collinearity checks, the wild bootstrap's restricted
design, ``montecarlo.fast_twfe``, and (through :func:`scaled_cholesky`) the
placebo and lean event-study fast paths, which hand a design the rule rejects
to the general path. Normal equations whose null space is structural (each
fixed effect's dummies sum to another's span: the exact demeaning, the
imputation first stage, the split-sample moments) use :func:`psd_pinv`.

On a full-rank design none of these changes a number: every column is kept
and the caller's solve is the one it would do without the check. A
rank-deficient regressor set gets its later collinear columns dropped (feols
warns, or raises when nothing is left); a fast path refuses it; a
rank-deficient FE normal matrix gets the minimum-norm solution.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg as sla

__all__ = ["COLLIN_TOL", "PINV_RTOL", "independent_columns", "is_full_rank", "scaled_cholesky", "psd_pinv"]

#: a column is collinear when its residual sum of squares on the columns kept
#: before it is at most this fraction of its scale (``feols(collin_tol=)``)
COLLIN_TOL = 1e-9
#: eigenvalues of a PSD normal matrix at most this fraction of the largest
#: are its null space (rounding noise around an exact structural zero)
PINV_RTOL = 1e-11


def independent_columns(gram: np.ndarray, scale: np.ndarray | None = None, tol: float = COLLIN_TOL) -> list[int]:
    """Greedy left-to-right selection of linearly independent columns.

    Column ``j`` is kept when its residual sum of squares on the columns kept
    before it, ``r_j = G_jj - G_jK G_KK^{-1} G_Kj`` (from an incremental
    Cholesky factor of the Gram matrix), exceeds ``tol * scale_j``; it is
    dropped otherwise (ties, ``r_j == tol * scale_j``, drop; so do a zero,
    negative or NaN ``r_j``). Order matters: of two collinear columns the
    later one is dropped.

    Parameters
    ----------
    gram : ndarray, shape (K, K)
        Symmetric positive semi-definite cross-product matrix ``X'X`` of the
        columns (after any fixed effects are partialled out).
    scale : ndarray, shape (K,), optional
        What the residual is compared with. ``feols`` passes each column's
        centred (weighted) sum of squares before the fixed effects, so a
        column absorbed by them is dropped; by default ``diag(gram)`` (the
        fraction of the column's own variation left).
    tol : float
        Relative tolerance, :data:`COLLIN_TOL` by default.

    Returns
    -------
    list of int
        Indices of the kept columns, in increasing order. On a full-rank,
        well-conditioned design that is every column, and the caller's
        subsequent solve is exactly the one it would do without the check.
    """
    K = gram.shape[0]
    s = np.diag(gram) if scale is None else np.maximum(scale, np.finfo(float).tiny)
    L = np.zeros((K, K))
    keep: list[int] = []
    for j in range(K):
        m = len(keep)
        if m:
            z = sla.solve_triangular(L[:m, :m], gram[keep, j], lower=True)
            res = gram[j, j] - z @ z
        else:
            z = np.empty(0)
            res = gram[j, j]
        if res > tol * s[j]:
            L[m, :m] = z
            L[m, m] = math.sqrt(res)
            keep.append(j)
    return keep


def is_full_rank(gram: np.ndarray, tol: float = COLLIN_TOL) -> bool:
    """True when :func:`independent_columns` keeps every column of ``gram``
    (scale: its own diagonal) and every entry is finite.

    When every column is kept, the greedy rule's residuals are the squared
    diagonal of the full Cholesky factor, so one LAPACK factorization decides a
    clearly full-rank matrix (small Gram matrices are checked thousands of
    times by Callaway-Sant'Anna with covariates); anything else, including a
    residual near the threshold, goes through :func:`independent_columns`."""
    if not np.all(np.isfinite(gram)):
        return False
    diag = np.diag(gram)
    if np.all(diag > 0):
        try:
            L = np.linalg.cholesky(gram)
        except np.linalg.LinAlgError:
            L = None
        if L is not None and np.all(np.diag(L) ** 2 > 2 * tol * diag):
            return True
    return len(independent_columns(gram, tol=tol)) == gram.shape[0]


def scaled_cholesky(gram: np.ndarray, tol: float = COLLIN_TOL) -> tuple[tuple[np.ndarray, bool], np.ndarray] | None:
    """Cholesky factor of the unit-diagonal rescaling of a full-rank Gram matrix.

    Returns ``(cho, sc)`` with ``cho`` the :func:`scipy.linalg.cho_factor` of
    ``diag(sc) G diag(sc)``, ``sc = diag(G)^{-1/2}``, so that
    ``G^{-1} b = sc * cho_solve(cho, sc * b)``; or None when ``G`` is rank
    deficient by :func:`is_full_rank` (the caller then takes its general path,
    which drops columns with the same rule).
    """
    if not is_full_rank(gram, tol):
        return None
    sc = 1.0 / np.sqrt(np.diag(gram))
    return sla.cho_factor(gram * sc[:, None] * sc[None, :]), sc


def psd_pinv(H: np.ndarray, rtol: float = PINV_RTOL, *, return_rank: bool = False) -> Any:
    """Pseudo-inverse of a symmetric PSD matrix (or a stack of them) by eigh.

    Eigenvalues at most ``rtol`` times the largest one (per matrix) are
    treated as exact zeros and their eigenvectors dropped: this is for
    normal matrices whose null space is structural (fixed-effect dummies
    spanning each other), where the cut only separates it from rounding noise.
    The estimable part of a rank-deficient design is then solved exactly and
    the non-identified directions get zero (minimum-norm solution).

    Parameters
    ----------
    H : ndarray, shape (M, M) or (n, M, M)
        Symmetric positive semi-definite matrix or stack.
    rtol : float
        Relative eigenvalue cut, :data:`PINV_RTOL` by default.
    return_rank : bool
        Also return the number of eigenvalues kept (2-D ``H`` only).

    Returns
    -------
    ndarray or (ndarray, int)
        ``H^+``, same shape as ``H`` (and its rank).
    """
    if H.ndim == 2:
        evals, evecs = np.linalg.eigh(H)
        keep = evals > evals.max() * rtol
        pinv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
        return (pinv, int(keep.sum())) if return_rank else pinv
    # a stack: numpy's batched Hermitian pseudo-inverse applies the same cut
    # (eigenvalues of a PSD matrix are its singular values)
    return np.linalg.pinv(H, rcond=rtol, hermitian=True)

