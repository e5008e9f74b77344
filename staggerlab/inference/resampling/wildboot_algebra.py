"""The fast algebra of the wild cluster bootstrap: per-cluster sums in one
pass over the design (``algebra``) and the per-block products with the
weights (``Runner``).

The algebra follows Roodman, MacKinnon, Nielsen & Webb (2019, "Fast and
wild") and MacKinnon (2023): everything the bootstrap needs is a handful of
per-cluster sums computed in one O(N k) pass, after which a draw costs O(G k):
a few products of the block's weight matrix (draws x G) with G x k matrices.

Notation (all on the demeaned, sqrt-weighted design): ``X`` (N x k), ``A =
(X'X)^-1``, ``a = A[:, p]`` for the tested coefficient ``p``, ``r = X a``.
Restricted residuals are affine in the null value: ``u(h0) = uhat + delta *
r / a_pp`` with ``delta = beta_p - h0`` (unrestricted: ``uhat``). For weights
``v`` (one per bootstrap cluster ``b``) the bootstrap numerator is ``a' S v``
with ``S[:, b] = sum_{i in b} x_i u_i``, and the bootstrap score of variance
cluster ``c`` is ``Z_c = sum_{i in c} r_i u_i v_b(i) - Q_c' S v`` with ``Q_c =
A sum_{i in c} x_i r_i``. Since ``Z`` is affine in ``delta`` too, storing
``n0, n1`` (numerator) and ``sum Z0^2, sum Z0 Z1, sum Z1^2`` per draw gives the
bootstrap t of every null value in O(1), which makes test inversion cheap.
The sum of squares itself is expanded as ``||E v||^2 - 2 w'M'v + w'(Q'Q)w``
(``w = S v``, ``M = E'Q``, ``E`` the cluster-by-bootcluster sums of ``r u``), so
no draws x G intermediate is formed.

Memory: besides the fit, the bootstrap keeps two G x k arrays of cluster sums
(``x u`` and ``x r``) and, per block of draws, the block's weights (packed
bits for Rademacher); the products with the weights run over cluster ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ..._seed import block_generator
from ...errors import VcovError
from ...kernels.wildboot import cluster_wsums_into
from ..regression.vcov import combine_codes, nested_in
from .wildboot_design import BootDesign
from .wildboot_weights import WeightBlock, draws, enumeration, rademacher_block

__all__ = ["algebra", "from_cluster_sums", "at", "Runner"]


@dataclass
class _Part:
    """One variance clustering (two-way CRV1 has three, with signs +, +, -).

    With ``Y = E v`` the per-cluster sums ``sum_{i in c} r_i u_i v_b(i)`` (``E``
    is ``diag(C)`` when the clustering is the bootstrap clustering), ``w = S v``
    and ``M = E' Q``, the sum of squared bootstrap scores is
    ``||Y||^2 - 2 w'M'v + w'(Q'Q)w``. On the bootstrap clustering ``Q = Sr A``
    (``Sr`` the cluster sums of ``x r``), so ``M v`` is ``A Sr' (E v)`` and
    ``M`` is not stored.
    """

    sign: float
    diag: bool
    E: list[Any]  # [E0, E1]: G_b vectors C (diag) or sparse G_j x G_b matrices (CSC)
    M: list[np.ndarray]  # [M0, M1], G_b x k (empty when diag)
    H: np.ndarray  # Q'Q, k x k


@dataclass
class _Algebra:
    """Everything a block of draws needs, O(G k) in size.

    ``S[0]`` and ``S[1]`` are the bootstrap-cluster sums of ``x u`` and ``x r``
    (``G_b x k``); the sums of ``x u(h0)`` are ``S[0] + delta c1 S[1]`` with
    ``c1 = 1 / a_p`` under the null (0 for WCU). ``fold`` is None when the
    pieces of every null value are kept (test inversion), else ``delta``.
    """

    a: np.ndarray
    A: np.ndarray
    S: np.ndarray
    c1: float
    parts: list[_Part]
    adj: float
    se: float
    beta_p: float
    n_boot: int
    fold: float | None = None


def _same_partition(codes: np.ndarray, boot: np.ndarray, n_boot: int) -> bool:
    """Whether ``codes`` and ``boot`` group the rows identically (no N-sized
    combined codes: the clusterings are usually the very same array)."""
    if codes is boot:
        return True
    return int(codes.max()) + 1 == n_boot and nested_in(codes, boot)


class _CrossSums:
    """Sums of a variance clustering that is not the bootstrap clustering
    (two-way, subcluster): ``sum x r`` by variance cluster, and ``sum r u``,
    ``sum r r`` by (variance cluster, bootstrap cluster) cell."""

    def __init__(self, codes: np.ndarray, boot: np.ndarray, k: int):
        self.codes, self.boot = codes, boot
        self.cells = combine_codes(codes, boot)
        self.xr = np.zeros((1, int(codes.max()) + 1, k))
        self.ru = np.zeros((2, int(self.cells.max()) + 1))

    def add(self, rows: slice | np.ndarray, X: np.ndarray, r: np.ndarray, u: np.ndarray) -> None:
        """Accumulate the sums of one row chunk."""
        cluster_wsums_into(self.xr, X, r[:, None], self.codes[rows])
        c = self.cells[rows]
        self.ru[0] += np.bincount(c, r * u, minlength=self.ru.shape[1])
        self.ru[1] += np.bincount(c, r * r, minlength=self.ru.shape[1])

    def part(self, sign: float, A: np.ndarray, n_boot: int, c1: float) -> tuple[_Part, float]:
        """The part and its contribution to the variance of the estimate."""
        G = self.xr.shape[1]
        Q = self.xr[0] @ A
        any_row = np.empty(self.ru.shape[1], dtype=np.int64)
        any_row[self.cells] = np.arange(self.cells.size)
        ij = (self.codes[any_row], self.boot[any_row])
        E = [sp.csr_matrix((self.ru[0], ij), shape=(G, n_boot)),
             sp.csr_matrix((c1 * self.ru[1], ij), shape=(G, n_boot))]
        M = [np.asarray(e.T @ Q) for e in E]
        rs = np.asarray(E[0].sum(axis=1)).ravel()
        # CSC: the draw blocks take E's columns by ranges of bootstrap clusters
        return _Part(sign, False, [e.tocsc() for e in E], M, Q.T @ Q), sign * float(rs @ rs)


def algebra(bd: BootDesign, boot: np.ndarray, n_boot: int, parts: Sequence[tuple[np.ndarray, float]],
            adj: float, impose_null: bool) -> _Algebra:
    """All per-cluster sums, in one pass over the design's row chunks."""
    A, p = bd.A, bd.p
    k = A.shape[0]
    a = np.ascontiguousarray(A[:, p])
    c1 = 1.0 / a[p] if impose_null else 0.0
    S = np.zeros((2, n_boot, k))  # x u and x r by bootstrap cluster
    ru = np.zeros((2, n_boot))  # r u and r r by bootstrap cluster
    cross = [None if _same_partition(codes, boot, n_boot) else _CrossSums(codes, boot, k) for codes, _ in parts]
    for rows, X in bd.blocks():
        r = X @ a
        u = bd.uhat[rows]
        b = boot[rows]
        cluster_wsums_into(S, X, np.column_stack([u, r]), b)
        ru[0] += np.bincount(b, r * u, minlength=n_boot)
        ru[1] += np.bincount(b, r * r, minlength=n_boot)
        for cs in cross:
            if cs is not None:
                cs.add(rows, X, r, u)
    out: list[_Part] = []
    var = 0.0
    for (_, sign), cs in zip(parts, cross):
        if cs is None:  # Q = S[1] A, so H = Q'Q = A S[1]'S[1] A and M is never stored
            E = [ru[0], c1 * ru[1]]
            out.append(_Part(sign, True, E, [], A @ (S[1].T @ S[1]) @ A))
            var += sign * float(E[0] @ E[0])
        else:
            pt, v = cs.part(sign, A, n_boot, c1)
            out.append(pt)
            var += v
    if not var > 0:
        raise VcovError("the cluster-robust variance of the tested coefficient is not positive")
    return _Algebra(a, A, S, c1, out, adj, math.sqrt(adj * var), bd.beta_p, n_boot)


def from_cluster_sums(A: np.ndarray, p: int, S: np.ndarray, ru: np.ndarray, adj: float, beta_p: float,
                      impose_null: bool) -> _Algebra:
    """The algebra of a one-way clustering that is the bootstrap clustering, from its cluster sums.

    For callers that sum the rows elsewhere (a partitioned panel); the same
    assembly as :func:`algebra` gives that clustering.

    Parameters
    ----------
    A : ndarray, shape (k, k)
        Inverse Gram matrix of the bootstrap design.
    p : int
        Column of the tested coefficient.
    S : ndarray, shape (2, G, k)
        Per-cluster sums of ``x u`` and ``x r`` (``r = X A[:, p]``), clusters in code order.
    ru : ndarray, shape (2, G)
        Per-cluster sums of ``r u`` and ``r r``.
    adj : float
        The CRV1 small-sample factor.
    beta_p : float
        The estimate of the tested coefficient.
    impose_null : bool
        WCR (True) or WCU.
    """
    a = np.ascontiguousarray(A[:, p])
    c1 = 1.0 / a[p] if impose_null else 0.0
    E = [ru[0], c1 * ru[1]]
    var = float(E[0] @ E[0])
    if not var > 0:
        raise VcovError("the cluster-robust variance of the tested coefficient is not positive")
    part = _Part(1.0, True, E, [], A @ (S[1].T @ S[1]) @ A)
    return _Algebra(a, A, S, c1, [part], adj, math.sqrt(adj * var), beta_p, S.shape[1])


def at(alg: _Algebra, delta: float) -> _Algebra:
    """The algebra with the null value folded in (one-h0 fast path)."""
    parts = [_Part(pt.sign, pt.diag, [pt.E[0] + delta * pt.E[1]], [pt.M[0] + delta * pt.M[1]] if pt.M else [],
                   pt.H) for pt in alg.parts]
    return _Algebra(alg.a, alg.A, alg.S, alg.c1, parts, alg.adj, alg.se, alg.beta_p, alg.n_boot, fold=delta)


def _rowdot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


@dataclass(eq=False)  # hashable by identity: joblib's dask backend hashes task functions
class Runner:
    """Computes one block of draws; a pure function of the block index."""

    alg: _Algebra
    kind: str
    seed: np.random.SeedSequence
    enumerate_all: bool
    injected: np.ndarray | None
    quad: bool  # store the pieces of every null value (test inversion)
    chunk_weights: int

    def weights(self, index: int, start: int, stop: int) -> WeightBlock:
        """Draw-major ``(stop - start) x G`` weights of block ``index``."""
        G, B = self.alg.n_boot, stop - start
        if self.injected is not None:
            return WeightBlock(B, G, dense=np.ascontiguousarray(self.injected[:, start:stop].T, dtype=np.float64))
        if self.enumerate_all:
            return WeightBlock(B, G, dense=enumeration(G, start, stop))
        rng = block_generator(self.seed, index)
        if self.kind == "rademacher":
            return rademacher_block(G, B, rng)
        return WeightBlock(B, G, dense=draws(self.kind, G, B, rng))

    def _products(self, wb: WeightBlock, signs: bool) -> tuple[np.ndarray, list[list[np.ndarray]], list[list]]:
        """Every product with the weights, accumulated over cluster ranges.

        Returns ``V S[0]`` and ``V S[1]`` (``2 x B x k``); per part the
        ``V M_m`` products (``m`` = 0, 1, or the folded one); and per part
        the squared norms ``||E_m v||^2``-type pieces.
        """
        alg = self.alg
        m = 2 if self.quad else 1
        B, k = wb.n, alg.a.size
        WS = np.zeros((2, B, k))
        WM = [np.zeros((m, B, k)) for _ in alg.parts]
        # the norms: with +-1 weights (diag) ||E v||^2 = sum E^2, no product;
        # else V^2 @ [E0^2, E0 E1, E1^2] (diag) or Y_m = E_m V' (not diag)
        pairs = [(0, 0), (0, 1), (1, 1)] if self.quad else [(0, 0)]
        prods = [np.column_stack([pt.E[i] * pt.E[j] for i, j in pairs]) if pt.diag and not signs else None
                 for pt in alg.parts]
        acc = [np.zeros((m, pt.E[0].shape[0], B)) if not pt.diag else None if signs else np.zeros((len(pairs), B))
               for pt in alg.parts]
        for g0, g1 in wb.ranges(self.chunk_weights):
            V = wb.cols(g0, g1)
            S0, S1 = alg.S[0, g0:g1], alg.S[1, g0:g1]
            WS[0] += V @ S0
            WS[1] += V @ S1
            for j, pt in enumerate(alg.parts):
                if pt.diag:
                    for q in range(m):
                        WM[j][q] += (V * pt.E[q][g0:g1]) @ S1
                    if not signs:
                        acc[j] += ((V * V) @ prods[j][g0:g1]).T
                else:
                    for q in range(m):
                        WM[j][q] += V @ pt.M[q][g0:g1]
                        acc[j][q] += np.asarray(pt.E[q][:, g0:g1] @ V.T)
        norms: list[list] = []
        for j, pt in enumerate(alg.parts):
            if pt.diag:
                WM[j] = WM[j] @ alg.A  # M v = A Sr' (E v)
                norms.append([float(pt.E[i] @ pt.E[j]) for i, j in pairs] if signs else list(acc[j]))
            else:
                Y = acc[j]
                n = [np.einsum("gb,gb->b", Y[0], Y[0])]
                if self.quad:
                    n += [np.einsum("gb,gb->b", Y[0], Y[1]), np.einsum("gb,gb->b", Y[1], Y[1])]
                norms.append(n)
        return WS, WM, norms

    def __call__(self, block: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
        wb = self.weights(*block)
        alg = self.alg
        signs = self.injected is None and (self.enumerate_all or self.kind == "rademacher")
        WS, WM, norms = self._products(wb, signs)
        if not self.quad:
            w = WS[0] + (alg.fold * alg.c1) * WS[1]
            den = np.zeros(wb.n)
            for pt, u, (n00,) in zip(alg.parts, WM, norms):
                den += pt.sign * (n00 - 2.0 * _rowdot(w, u[0]) + _rowdot(w @ pt.H, w))
            return (w @ alg.a, den)
        w0, w1 = WS[0], alg.c1 * WS[1]
        sums = [np.zeros(wb.n) for _ in range(3)]
        for pt, (u0, u1), (n00, n01, n11) in zip(alg.parts, WM, norms):
            h0, h1 = w0 @ pt.H, w1 @ pt.H
            sums[0] += pt.sign * (n00 - 2.0 * _rowdot(w0, u0) + _rowdot(h0, w0))
            sums[1] += pt.sign * (n01 - _rowdot(w0, u1) - _rowdot(w1, u0) + _rowdot(h0, w1))
            sums[2] += pt.sign * (n11 - 2.0 * _rowdot(w1, u1) + _rowdot(h1, w1))
        return (w0 @ alg.a, w1 @ alg.a, *sums)
