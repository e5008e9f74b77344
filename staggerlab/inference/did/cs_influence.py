"""Callaway-Sant'Anna inference from the influence functions: the streaming
influence-function map of linear combinations of the ATT(g,t), standard errors
from its Gram matrix, and the multiplier bootstrap (SEs and uniform bands)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..._parallel import run_blocks
from ..._seed import block_generator
from ...errors import ArgumentError
from ...kernels.cs import influence_rows, influence_rows_unbalanced, multiplier_sums
from ..resampling.placebo_blocks import SERIAL_BLAS
from .cs_cells import Cells, Wide

__all__ = ["IFMap", "se_from_gram", "BootSpec", "multiplier_draws", "iqr_se", "multiplier_bootstrap", "ZERO_SE"]

_BOOT_BLOCK = 128  # draws per seeded block: fixed, so results do not depend on n_jobs
ZERO_SE = np.sqrt(np.finfo(float).eps) * 10  # did's threshold for "no variance"


# --------------------------------------------------------------------------- influence functions


@dataclass(eq=False)
class IFMap:
    """Influence functions of linear combinations of the ATT(g,t): column j is
    ``inf @ W[:, j]`` plus the weights' term ``w_i A[j, cohort_i]``."""

    cells: Cells
    wd: Wide
    W: np.ndarray  # k x m
    A: np.ndarray  # m x G
    chunk: int  # units per chunk of rows (CSTuning.if_chunk)

    def _chunks(self):
        c, wd = self.cells, self.wd
        n = wd.g.size
        W, A = np.ascontiguousarray(self.W), np.ascontiguousarray(self.A)
        buf = np.empty((min(self.chunk, n), W.shape[1]))
        for lo in range(0, n, self.chunk):
            hi = min(lo + self.chunk, n)
            out = buf[: hi - lo]
            if c.inf is not None:  # covariates: the cells' influence functions are stored
                with SERIAL_BLAS:  # a skinny product: a second BLAS thread only contends
                    np.matmul(c.inf[lo:hi], W, out=out)
                gi = c.gidx[lo:hi]
                has = gi >= 0
                out[has] += wd.w[lo:hi][has, None] * A[:, gi[has]].T
            elif c.mu1b is None:
                influence_rows(wd.y, wd.g, wd.w, c.gidx, lo, hi, float(n), c.t_idx, c.b_idx, c.group, c.horizon,
                               c.mu1, c.mu0, c.s1, c.s0, W, A, out)
            else:
                influence_rows_unbalanced(wd.y, wd.g, wd.w, c.gidx, lo, hi, float(n), c.t_idx, c.b_idx, c.group,
                                          c.horizon, c.mu1, c.mu0, c.s1, c.s0, c.mu1b, c.mu0b, c.s1b, c.s0b,
                                          W, A, out)
            yield lo, hi, out

    def matrix(self) -> np.ndarray:
        """The units x m influence functions (materialized: n x m floats)."""
        out = np.empty((self.wd.g.size, self.W.shape[1]))
        for lo, hi, rows in self._chunks():
            out[lo:hi] = rows
        return out

    def cluster_sums(self) -> np.ndarray:
        """Sums of the influence functions by cluster (clusters x m)."""
        if self.wd.by_unit:
            return self.matrix()
        out = np.zeros((int(self.wd.cluster.max()) + 1, self.W.shape[1]))
        for lo, hi, rows in self._chunks():
            np.add.at(out, self.wd.cluster[lo:hi], rows)
        return out

    def gram(self, full: bool = True) -> np.ndarray:
        """``S'S`` of the cluster sums S (m x m), or only its diagonal: one
        streaming pass over the units when clusters are units."""
        if not self.wd.by_unit:
            s = self.cluster_sums()
            return s.T @ s if full else np.einsum("ij,ij->j", s, s)
        m = self.W.shape[1]
        acc = np.zeros((m, m)) if full else np.zeros(m)
        for _, _, rows in self._chunks():
            if full:
                with SERIAL_BLAS:
                    acc += rows.T @ rows
            else:
                acc += np.einsum("ij,ij->j", rows, rows)
        return acc


def se_from_gram(diag: np.ndarray, n: int) -> np.ndarray:
    se = np.sqrt(diag) / n
    return np.where(se <= ZERO_SE, np.nan, se)


# --------------------------------------------------------------------------- variance / bootstrap
@dataclass(frozen=True)
class BootSpec:
    biters: int
    multipliers: str
    seed: np.random.SeedSequence
    n_jobs: int
    alpha: float
    multipliers_at_once: int  # CSTuning.boot_multipliers


def _draw_multipliers(rng: np.random.Generator, size: tuple[int, int], kind: str) -> np.ndarray:
    if kind == "rademacher":
        return rng.integers(0, 2, size=size).astype(np.float64) * 2.0 - 1.0
    if kind == "mammen":
        s5 = np.sqrt(5.0)
        lo, hi = (1.0 - s5) / 2.0, (1.0 + s5) / 2.0
        return np.where(rng.random(size) < (s5 + 1.0) / (2.0 * s5), lo, hi)
    raise ArgumentError(f"multipliers must be 'rademacher' or 'mammen', got {kind!r}")


def multiplier_draws(s: np.ndarray, n: int, spec: BootSpec) -> np.ndarray:
    """The ``biters x m`` multiplier-bootstrap draws ``v's / n`` of the columns of
    the cluster sums ``s`` (clusters x m), the multipliers ``v`` drawn in seeded
    blocks (the same for every column: a column's draws depend on its own sums only)."""
    s = np.ascontiguousarray(s)
    nc = s.shape[0]
    n_blocks = -(-spec.biters // _BOOT_BLOCK)
    blocks = [(i, min(_BOOT_BLOCK, spec.biters - i * _BOOT_BLOCK)) for i in range(n_blocks)]

    # draws are made a few rows at a time (a block of 128 draws for a million
    # clusters would be a 1 GB matrix); numpy's Generator yields the same
    # stream whether a block's rows are drawn at once or in pieces
    rows_at_once = max(1, spec.multipliers_at_once // max(nc, 1))

    def one(block: tuple[int, int]) -> np.ndarray:
        i, size = block
        rng = block_generator(spec.seed, i)
        out = []
        for lo in range(0, size, rows_at_once):
            v = _draw_multipliers(rng, (min(rows_at_once, size - lo), nc), spec.multipliers)
            out.append(multiplier_sums(v, s, float(n)))
        return np.vstack(out)

    return np.vstack(run_blocks(one, blocks, n_jobs=spec.n_jobs, desc="multiplier bootstrap"))


def iqr_se(draws: np.ndarray) -> np.ndarray:
    """did's bootstrap standard errors: the draws' interquartile range over the
    normal one, per column (NaN where at most ``ZERO_SE``: no variance)."""
    q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    return np.where(se > ZERO_SE, se, np.nan)


def multiplier_bootstrap(s: np.ndarray, n: int, spec: BootSpec,
                         band: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Multiplier bootstrap (did's ``mboot``) on the cluster sums ``s``
    (clusters x m): bootstrap SEs (IQR-based) of the m columns and the sup-t
    critical value over the columns in ``band`` (all if None). Each column's
    draws depend on its own sums only, so a column's SE is the same whatever
    other columns are bootstrapped with it."""
    draws = multiplier_draws(s, n, spec)
    se = iqr_se(draws)
    ok = np.isfinite(se)
    if band is not None:
        ok &= band
    if not ok.any():
        return se, float(stats.norm.ppf(1 - spec.alpha / 2))
    tmax = np.max(np.abs(draws[:, ok] / se[ok]), axis=1)
    crit = float(np.quantile(tmax, 1 - spec.alpha))
    return se, crit
