"""The bootstrap regression's design (``BootDesign``): the fit's demeaned
regressors plus the dummies of fixed effects not nested in the bootstrap
clusters, served in row chunks.

Fixed effects: a fixed effect nested in the bootstrap clusters commutes with
the weights and stays absorbed. A fixed effect that is not nested (years when
clustering by firm) does not: the exact bootstrap (the one a dummy-variable
regression gives) keeps its dummies as regressors, partialled out only of the
nested fixed effects. The design used is ``[Xw, Dn]``: the fit's fully demeaned
regressors and those dummies. It spans the same space as the regressors
partialled out of the nested FEs only plus the dummies, so the bootstrap is the
same, but ``Xw`` and the residuals already exist and ``Dn`` is rebuilt in row
chunks, so no N x (k + L) matrix is formed. The dummy block is limited to
``MAX_DUMMY_COLUMNS`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import scipy.linalg as sla

from ...errors import MissingColumnError, VcovError, WildBootError
from ...panels.panel import factorize_column
from ..regression.absorb import Absorber
from ..regression.feols import Feols
from ..regression.rank import independent_columns
from ..regression.vcov import cluster_parts, nested_in, parse_clusters, ssc_factor

__all__ = ["MAX_DUMMY_COLUMNS", "BootDesign", "boot_design", "BootClusters", "boot_clusters", "cluster_codes"]

#: cap on the dense block of non-nested fixed-effect dummies (columns).
MAX_DUMMY_COLUMNS = 2000


@dataclass(eq=False)
class _Dummies:
    """Dummies of the fixed effects not nested in the bootstrap clusters,
    partialled out of the nested ones and sqrt-weighted, built for a set of
    rows at a time (the rows must be whole levels of the nested FEs)."""

    codes: list[np.ndarray]  # loose FE codes
    first: list[int]  # first level with a column (one level is absorbed elsewhere)
    widths: list[int]
    nested: list[np.ndarray]  # nested FE codes
    weights: np.ndarray | None  # observation weights, None when unweighted
    sw: np.ndarray | None  # their square roots
    tol: float
    maxiter: int

    @property
    def n_cols(self) -> int:
        return sum(self.widths)

    def block(self, rows: slice | np.ndarray) -> np.ndarray:
        """The ``len(rows) x n_cols`` dummy block of ``rows``."""
        cols = [c[rows] for c in self.codes]
        D = np.zeros((cols[0].shape[0], self.n_cols))
        off = 0
        for c, first, width in zip(cols, self.first, self.widths):
            hit = np.flatnonzero(c >= first)
            D[hit, off + c[hit] - first] = 1.0
            off += width
        if self.nested:  # the rows hold whole nested levels, so demeaning them alone is exact
            w = None if self.weights is None else self.weights[rows]
            Absorber([c[rows] for c in self.nested], w, tol=self.tol, maxiter=self.maxiter).demean(D, out=D)
        if self.sw is not None:
            D *= self.sw[rows, None]
        return D


@dataclass(eq=False)
class BootDesign:
    """The bootstrap regression's design, served in row chunks.

    The columns are the fit's fully demeaned regressors ``Xw`` followed by the
    loose fixed effects' dummies ``Dn`` (partialled out of the nested FEs).
    They span the same space as the regressors and dummies partialled out of
    the nested FEs only, so the bootstrap is the same; but ``Xw`` already
    exists, the residuals are the fit's, and ``Dn`` (few columns) is rebuilt
    chunk by chunk instead of materializing an N x (k + L) matrix.
    """

    Xw: np.ndarray
    dummies: _Dummies | None
    keep_d: np.ndarray  # linearly independent dummy columns
    chunks: list[slice | np.ndarray]  # row sets, each whole levels of the nested FEs
    p: int
    A: np.ndarray  # inverse Gram matrix of the kept columns
    beta_p: float
    uhat: np.ndarray
    explicit_fe: list[str]

    def blocks(self) -> Iterator[tuple[slice | np.ndarray, np.ndarray]]:
        """``(rows, X[rows])`` for every chunk (the kept dummy columns only)."""
        for rows in self.chunks:
            X = self.Xw[rows]
            if self.dummies is not None:
                X = np.hstack([X, self.dummies.block(rows)[:, self.keep_d]])
            yield rows, np.ascontiguousarray(X)


def _row_chunks(key: np.ndarray | None, n: int, rows: int) -> list[slice | np.ndarray]:
    """Row sets of about ``rows`` rows, each made of whole levels of
    ``key`` (any rows if ``key`` is None): slices when ``key`` is sorted."""
    if key is None:
        return [slice(lo, min(lo + rows, n)) for lo in range(0, n, rows)]
    ends = np.cumsum(np.bincount(key))  # rows up to the end of each level, in level order
    cut = ends[np.searchsorted(ends, np.arange(rows, n, rows))]
    bounds = np.unique(np.concatenate([[0], cut, [n]])).tolist()
    if n < 2 or bool(np.all(key[1:] >= key[:-1])):
        return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    order = np.argsort(key, kind="stable")
    return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def _loose_dummies(fit: Feols, nested: list[bool]) -> _Dummies:
    """The dummy block of the FEs not nested in the bootstrap clusters."""
    d = fit.design
    loose = [j for j, n in enumerate(nested) if not n]
    has_nested = any(nested)
    first = [1 if (has_nested or i > 0) else 0 for i in range(len(loose))]  # one level is absorbed elsewhere
    widths = [d.absorber.n_levels[j] - f for j, f in zip(loose, first)]
    if sum(widths) > MAX_DUMMY_COLUMNS:
        names = [d.fixef[q] for q in loose]
        raise WildBootError(
            f"fixed effect(s) {names} are not nested in the bootstrap clusters and have "
            f"more than {MAX_DUMMY_COLUMNS} levels; the exact wild bootstrap needs them as "
            "regressors. Bootstrap by a coarser cluster in which they are nested."
        )
    weighted = d.weights_name is not None
    return _Dummies([d.absorber.codes[j] for j in loose], first, widths,
                    [c for c, n in zip(d.absorber.codes, nested) if n],
                    d.sw**2 if weighted else None, d.sw if weighted else None,
                    d.absorber.tol, d.absorber.maxiter)


def boot_design(fit: Feols, p: int, boot: np.ndarray, chunk_rows: int) -> BootDesign:
    d = fit.design
    nested = [nested_in(c, boot) for c in d.absorber.codes]
    k = len(d.regressors)
    if all(nested):  # every FE commutes with the weights: the fit's design is the bootstrap's
        return BootDesign(d.Xw, None, np.empty(0, dtype=np.int64), _row_chunks(None, d.nobs, chunk_rows), p, d.bread,
                          float(fit.beta[p]), fit.uw, [])
    dummies = _loose_dummies(fit, nested)
    nested_codes = dummies.nested
    # chunks must hold whole connected sets of the nested FEs: the levels of
    # the one nested FE, or else whole bootstrap clusters (they contain them all)
    key = None if not nested_codes else nested_codes[0] if len(nested_codes) == 1 else boot
    bd = BootDesign(d.Xw, dummies, np.arange(dummies.n_cols), _row_chunks(key, d.nobs, chunk_rows), p, d.bread,
                    float(fit.beta[p]), fit.uw, [d.fixef[j] for j, n in enumerate(nested) if not n])
    gram = np.zeros((k + dummies.n_cols,) * 2)
    for _, X in bd.blocks():
        gram += X.T @ X
    keep = independent_columns(gram)
    if keep[:k] != list(range(k)):  # pragma: no cover - the fit already dropped collinear regressors
        raise WildBootError("a regressor is collinear with the fixed effects in the bootstrap design")
    bd.keep_d = np.asarray(keep[k:], dtype=np.int64) - k
    bd.A = sla.cho_solve(sla.cho_factor(gram[np.ix_(keep, keep)]), np.eye(len(keep)))
    return bd


def cluster_codes(fit: Feols, name: str) -> np.ndarray:
    d = fit.design
    if name in d.clusters or name in d.fixef:
        return d.codes(name)
    if name not in d.frame.columns:
        raise MissingColumnError(f"cluster column {name!r} is not in the data (columns: {d.frame.columns})")
    col = d.frame[name]
    if col.null_count():
        raise VcovError(f"cluster column {name!r} has missing values in the estimation sample")
    return factorize_column(col)


@dataclass(frozen=True)
class BootClusters:
    """The variance clusterings and bootstrap clusters of a wild bootstrap.

    Attributes
    ----------
    names : list of str
        Variance cluster columns.
    boot : ndarray
        Bootstrap cluster code of every row.
    bname : str
        Bootstrap cluster column.
    parts : list of (ndarray, float, int)
        ``(codes, sign, G)`` of each clustering of the (one- or two-way) CRV1.
    G : int
        Clusters of the smallest clustering (small-sample factor).
    n_boot : int
        Bootstrap clusters.
    adj : float
        CRV1 small-sample factor ``(N-1)/(N-df_k) * G/(G-1)``.
    """

    names: list[str]
    boot: np.ndarray
    bname: str
    parts: list
    G: int
    n_boot: int
    adj: float


def boot_clusters(fit: Feols, cluster: str | Sequence[str] | None, bootcluster: str | None,
                  notes: list[str]) -> BootClusters:
    """Resolve the variance and bootstrap clusters of ``fit`` (appending notes)."""
    d = fit.design
    spec = fit.vcov_spec
    if cluster is None:
        if spec.kind not in ("CRV1", "CRV3"):
            raise VcovError(
                f"the fit's variance is {spec.label}, not clustered; fit with vcov={{'CRV1': 'col'}} "
                "or pass cluster='col'"
            )
        names = list(spec.clusters)
        if spec.kind == "CRV3":
            notes.append("the fit uses CRV3; the bootstrap t statistics use CRV1")
    else:
        exact = isinstance(cluster, str) and cluster in fit.design.frame.columns  # any characters
        names = [cluster] if exact else list(parse_clusters(cluster))
    codes = [cluster_codes(fit, c) for c in names]
    bname = bootcluster if bootcluster is not None else names[0]
    boot = cluster_codes(fit, bname)
    parts = cluster_parts(codes)
    if len(codes) == 2 and bootcluster is None:
        notes.append(f"two-way clustered variance; bootstrap weights drawn by {names[0]!r}")
    G = min(g for _, _, g in parts)
    n_boot = int(boot.max()) + 1
    if G < 2 or n_boot < 2:
        raise VcovError(f"the wild cluster bootstrap needs at least 2 clusters, found {min(G, n_boot)}")
    df_k = d.df_k_clusters(names, codes)
    return BootClusters(names, boot, bname, parts, G, n_boot, ssc_factor("CRV1", d.nobs, df_k, G))
