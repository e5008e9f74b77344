"""Fixed-effect structure of a design: singletons, and the demeaner built once.

``Absorber`` validates its inputs once and picks the algorithm (see
``staggerlab.kernels.demean``); ``demean`` can then be called any number of
times (outcomes, placebo treatments, event-time dummies...) at O(N) each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from ..._parallel import SERIAL_BLAS
from ...errors import ArgumentError, ConvergenceError
from ...kernels import demean as kd
from .rank import psd_pinv

__all__ = ["Absorber", "drop_singletons"]

Method = Literal["auto", "exact", "iterative"]

#: cells (rows x columns) demeaned per block: bounds the kernels' temporaries
_BLOCK_CELLS = 4_000_000

#: largest (large-FE levels x small-FE levels) count matrix built densely
_DENSE_COUNTS_CELLS = 25_000_000

#: above this many levels in the small FEs, the exact path's M x M system is
#: too costly to factorize and alternating projections are used instead.
MAX_EXACT_LEVELS = 2000


def drop_singletons(codes: Sequence[np.ndarray]) -> np.ndarray:
    """Mask of rows kept after iteratively removing singleton FE levels.

    A row is a singleton if its level of some FE has only that row; removing it
    can create new singletons, so the pass repeats until none are left (as
    fixest/pyfixest do). Singletons are fitted perfectly and carry no
    information about the slopes.
    """
    n = codes[0].shape[0] if codes else 0
    keep = np.ones(n, dtype=bool)
    if len(codes) == 0:
        return keep
    all_kept = True  # until something is dropped, count without copying c[keep]
    while True:
        changed = False
        for c in codes:
            counts = np.bincount(c if all_kept else c[keep], minlength=int(c.max()) + 1 if c.size else 0)
            if not (counts == 1).any():  # the usual case: a G-sized check, no N-sized gather
                continue
            single = keep & (counts[c] == 1)
            if single.any():
                keep &= ~single
                changed = True
                all_kept = False
        if not changed:
            return keep


def _recode(c: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes 0..G-1 (drops levels no row uses), in O(N) for int codes."""
    c = np.ascontiguousarray(c, dtype=np.int64)
    if c.size == 0:
        return c, 0
    lo = int(c.min())
    shifted = c - lo if lo else c  # no N-sized temporary in the usual lo == 0 case
    used = np.bincount(shifted) > 0
    if used.all():
        return shifted, int(used.size)
    remap = np.cumsum(used) - 1
    return remap[shifted], int(used.sum())


@dataclass(eq=False)
class Absorber:
    """Demeaner for a fixed set of FE codes (and weights), built once.

    Parameters
    ----------
    codes : sequence of int arrays
        One array per FE, any integer codes (recoded densely here).
    weights : ndarray, optional
        Positive observation weights (weighted means).
    method : {"auto", "exact", "iterative"}
        ``auto`` uses the exact path when the FEs other than the largest have
        at most ``MAX_EXACT_LEVELS`` levels in total.
    tol, maxiter : float, int
        Tolerance and iteration cap of the iterative path.
    nobs : int, optional
        Number of rows when there is no FE at all (identity demeaner).
    """

    codes: list[np.ndarray]
    weights: np.ndarray | None = None
    method: Method = "auto"
    tol: float = 1e-12
    maxiter: int = 100_000
    nobs: int | None = None
    n_levels: list[int] = field(init=False)
    algorithm: str = field(init=False)

    def __post_init__(self) -> None:
        recoded = [_recode(np.asarray(c)) for c in self.codes]
        self.codes = [c for c, _ in recoded]
        self.n_levels = [g for _, g in recoded]
        n = self.codes[0].shape[0] if self.codes else int(self.nobs or 0)
        self.nobs = n
        w = np.ones(n) if self.weights is None else np.ascontiguousarray(self.weights, dtype=np.float64)
        self._w = w
        Q = len(self.codes)
        if Q == 0:
            self.algorithm = "none"
            return
        order = np.argsort(self.n_levels)[::-1]
        self._large = int(order[0])
        small = [int(q) for q in order[1:]]
        m = sum(self.n_levels[q] for q in small)
        method = self.method
        if method == "auto":
            method = "exact" if m <= MAX_EXACT_LEVELS else "iterative"
        self.algorithm = "one-way" if Q == 1 else method
        A = self.codes[self._large]
        self._codeA = A
        self._sumwA = kd.group_weights(A, w, self.n_levels[self._large])
        if self.algorithm == "exact":
            offs = np.cumsum([0] + [self.n_levels[q] for q in small])
            if len(small) == 1:  # the usual two-way case: a view, no copy
                codesB = self.codes[small[0]].reshape(-1, 1)
            else:
                codesB = np.empty((n, len(small)), dtype=np.int64)
                for j, q in enumerate(small):
                    codesB[:, j] = self.codes[q] + offs[j]
            self._codesB = codesB
            # panels usually arrive grouped by unit: then no sort is needed, and
            # an empty order tells the kernels so (no N-sized identity permutation)
            grouped = n < 2 or bool(np.all(A[1:] >= A[:-1]))
            sort = np.empty(0, dtype=np.int64) if grouped else np.argsort(A, kind="stable")
            starts = np.concatenate(([0], np.cumsum(np.bincount(A, minlength=self.n_levels[self._large]))))
            self._order = np.ascontiguousarray(sort, dtype=np.int64)
            self._starts = starts.astype(np.int64)
            U = self.n_levels[self._large]
            # a skinny product: two spinning BLAS threads made it ~100 ms on a busy machine
            with SERIAL_BLAS:
                if U * m <= _DENSE_COUNTS_CELLS:
                    C, BWB = kd.level_counts(A, codesB, w, U, int(m))
                    H = BWB - (C / self._sumwA[:, None]).T @ C
                else:  # row-pair loop: no U x m matrix
                    H = kd.cross_hessian(self._order, self._starts, codesB, w, int(m))
                # H is PSD with a null space (each small FE's dummies sum to the
                # large FE's span): the package's pseudo-inverse rule
                Hpinv, self.rank_small = psd_pinv(H, return_rank=True)
            self._Hpinv = np.ascontiguousarray(Hpinv)
        elif self.algorithm == "iterative":
            offs = np.cumsum([0] + self.n_levels)
            codesQ = np.empty((n, Q), dtype=np.int64)
            sumw = np.empty(int(offs[-1]))
            for q in range(Q):
                codesQ[:, q] = self.codes[q] + offs[q]
                sumw[offs[q] : offs[q + 1]] = kd.group_weights(self.codes[q], w, self.n_levels[q])
            self._codesQ = codesQ
            self._sumw = sumw
            self._offsets = offs.astype(np.int64)

    def demean(self, x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Demean a vector or an N x K matrix (float64).

        Columns are processed in blocks so the kernels' temporaries stay a
        few columns wide whatever K is (a 10M-row panel fits in a few times
        its own size). ``out``, if given, is an N x K float64 array to write
        into (may be ``x`` itself).

        Raises
        ------
        ConvergenceError
            If the iterative path hits ``maxiter`` before ``tol``.
        """
        x = np.asarray(x, dtype=np.float64)
        vec = x.ndim == 1
        X = x.reshape(-1, 1) if vec else x
        if X.shape[0] != self.nobs:
            raise ArgumentError(f"expected {self.nobs} rows, got {X.shape[0]}")
        K = X.shape[1]
        res = np.empty((X.shape[0], K)) if out is None else out.reshape(X.shape[0], K)
        step = max(1, _BLOCK_CELLS // max(X.shape[0], 1))
        for lo in range(0, K, step):
            hi = min(K, lo + step)
            block = res[:, lo:hi]
            # the exact kernels write straight into a contiguous result (one
            # N x K pass fewer); they read each row before writing it, so the
            # result may be the input itself
            direct = block.flags.c_contiguous and self.algorithm in ("one-way", "exact")
            got = self._demean_block(np.ascontiguousarray(X[:, lo:hi]), block if direct else None)
            if got is not block:
                block[...] = got
        return res[:, 0] if vec else res

    def demean_pair(self, X: np.ndarray, Y: np.ndarray, *, out: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """``(demean(X, out=out), demean(Y))``, the same numbers. On the exact path,
        when both fit one column block, one pair of passes demeans both (a row's
        loop overhead is paid once: the outcome beside the regressors)."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64).reshape(X.shape[0], -1)
        step = max(1, _BLOCK_CELLS // max(X.shape[0], 1))
        direct = out is None or out.flags.c_contiguous
        if (self.algorithm == "exact" and X.ndim == 2 and X.shape[0] == self.nobs and X.shape[1]
                and X.shape[1] + Y.shape[1] <= step and direct):
            return kd.exact_demean(np.ascontiguousarray(X), self._order, self._starts, self._codesB, self._w,
                                   self._sumwA, self._Hpinv, out, y_NE=Y)
        return self.demean(X, out=out), self.demean(Y)

    def _demean_block(self, X: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        if self.algorithm == "none" or X.shape[1] == 0:
            return X
        if self.algorithm == "one-way":
            return kd.sweep_one(X, self._codeA, self._w, self._sumwA, out)
        if self.algorithm == "exact":
            return kd.exact_demean(X, self._order, self._starts, self._codesB, self._w, self._sumwA, self._Hpinv, out)
        res, conv, iters = kd.map_demean(X, self._codesQ, self._w, self._sumw, self._offsets, self.tol, self.maxiter)
        if not conv.all():
            bad = np.flatnonzero(~conv)
            raise ConvergenceError(
                f"demeaning did not converge for {bad.size} column(s) in {self.maxiter} "
                f"iterations (tol={self.tol:g}); raise maxiter, loosen tol, or check "
                "for a weakly connected fixed-effect structure"
            )
        self.last_iterations = max(getattr(self, "last_iterations", 0), int(iters.max()))
        return res

    def subset(self, mask: np.ndarray) -> "Absorber":
        """The absorber of the rows in ``mask`` (e.g. leave-one-cluster-out)."""
        return Absorber(
            [c[mask] for c in self.codes],
            None if self.weights is None else self._w[mask],
            method=self.method,
            tol=self.tol,
            maxiter=self.maxiter,
            nobs=int(mask.sum()),
        )
