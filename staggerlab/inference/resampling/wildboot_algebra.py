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
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ..._seed import block_generator
from ...errors import VcovError
from ...kernels.wildboot import cluster_wsums_into
from ..regression.vcov import combine_codes, nested_in
from .wildboot_design import BootDesign
from .wildboot_weights import WeightBlock, draws, enumeration, rademacher_block

__all__ = ["algebra", "algebras", "from_cluster_sums", "at", "Runner", "SharedRunner", "BatchRunner", "batchable"]

#: largest per-cluster Gram table (doubles, G_b x k x k) :func:`algebras` builds
GRAM_BUDGET = 1 << 25

_PAIRS = [(0, 0), (0, 1), (1, 1)]


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
            adj: float, impose_null: bool, contrast: tuple[np.ndarray, float] | None = None,
            blocks: Sequence[tuple[slice | np.ndarray, np.ndarray]] | None = None) -> _Algebra:
    """All per-cluster sums, in one pass over the design's row chunks.

    ``contrast = (c, estimate)`` tests the linear combination ``c'beta`` of the
    fit's regressors (``c`` over them, zero on the bootstrap design's dummy
    columns) instead of coefficient ``bd.p``: everything above holds with
    ``a = A c`` (``a_p`` becomes ``c'A c``, and the restricted residuals are
    those of ``c'beta = h0``). ``blocks``: the design's row chunks
    (``bd.blocks()``) kept by a caller that runs several combinations.
    """
    A = bd.A
    k = A.shape[0]
    if contrast is None:
        cvec, beta_p = np.zeros(k), bd.beta_p
        cvec[bd.p] = 1.0
    else:
        cvec = np.zeros(k)
        cvec[: contrast[0].size] = contrast[0]
        beta_p = float(contrast[1])
    a = np.ascontiguousarray(A @ cvec)
    c1 = 1.0 / float(cvec @ a) if impose_null else 0.0
    S = np.zeros((2, n_boot, k))  # x u and x r by bootstrap cluster
    ru = np.zeros((2, n_boot))  # r u and r r by bootstrap cluster
    cross = [None if _same_partition(codes, boot, n_boot) else _CrossSums(codes, boot, k) for codes, _ in parts]
    for rows, X in bd.blocks() if blocks is None else blocks:
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
    return _Algebra(a, A, S, c1, out, adj, math.sqrt(adj * var), beta_p, n_boot)


def algebras(bd: BootDesign, boot: np.ndarray, n_boot: int, parts: Sequence[tuple[np.ndarray, float]],
             adj: float, impose_null: bool, contrasts: Sequence[tuple[np.ndarray, float]],
             blocks: Sequence[tuple[slice | np.ndarray, np.ndarray]] | None = None) -> list[_Algebra]:
    """:func:`algebra` of several combinations.

    With one variance clustering, the bootstrap one, every sum a combination
    needs follows from two tables built in one pass: ``S[0]`` and the
    per-cluster Gram matrices ``X_b'X_b`` (``S[1] = X_b'X_b a``, ``sum r u =
    S[0] a``, ``sum r^2 = a'X_b'X_b a``). Otherwise (or when the Gram table
    would exceed ``GRAM_BUDGET`` doubles) each combination takes its own pass.
    """
    k = bd.A.shape[0]
    one_way = len(parts) == 1 and _same_partition(parts[0][0], boot, n_boot)
    if not one_way or n_boot * k * k > GRAM_BUDGET:
        return [algebra(bd, boot, n_boot, parts, adj, impose_null, c, blocks) for c in contrasts]
    S0 = np.zeros((1, n_boot, k))
    XX = np.zeros((k, n_boot, k))  # XX[j, b] = sum_{i in b} x_ij x_i
    for rows, X in bd.blocks() if blocks is None else blocks:
        b = boot[rows]
        cluster_wsums_into(S0, X, bd.uhat[rows][:, None], b)
        cluster_wsums_into(XX, X, X, b)
    sign = parts[0][1]
    out = []
    for cvec, beta in contrasts:
        c = np.zeros(k)
        c[: cvec.size] = cvec
        a = np.ascontiguousarray(bd.A @ c)
        c1 = 1.0 / float(c @ a) if impose_null else 0.0
        S1 = np.einsum("jbk,j->bk", XX, a)
        ru0, ru1 = S0[0] @ a, S1 @ a
        var = sign * float(ru0 @ ru0)
        if not var > 0:
            raise VcovError("the cluster-robust variance of the tested combination is not positive")
        part = _Part(sign, True, [ru0, c1 * ru1], [], bd.A @ (S1.T @ S1) @ bd.A)
        out.append(_Algebra(a, bd.A, np.stack([S0[0], S1]), c1, [part], adj, math.sqrt(adj * var), float(beta),
                            n_boot))
    return out


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
    """Computes one block of draws; a pure function of the block index.

    A call returns per draw ``(n0, n1, sum Z0^2, sum Z0 Z1, sum Z1^2, csign)``
    (``quad``) or ``(numerator, variance, csign)``; ``csign`` is the sign of a
    draw whose weights are all equal, else 0 (see ``WeightBlock.constant_sign``).
    """

    alg: _Algebra
    kind: str
    seed: np.random.SeedSequence
    enumerate_all: bool
    injected: np.ndarray | None
    quad: bool  # store the pieces of every null value (test inversion)
    chunk_weights: int
    _stacked: np.ndarray | None = field(default=None, init=False, repr=False)

    def weights(self, index: int, start: int, stop: int) -> WeightBlock:
        """Draw-major ``(stop - start) x G`` weights of block ``index``."""
        G, B = self.alg.n_boot, stop - start
        if self.injected is not None:
            return WeightBlock(B, G, dense=np.ascontiguousarray(self.injected[:, start:stop].T, dtype=np.float64))
        if self.enumerate_all:
            return WeightBlock(B, G, dense=enumeration(G, start, stop, self.kind))
        rng = block_generator(self.seed, index)
        if self.kind == "rademacher":
            return rademacher_block(G, B, rng)
        return WeightBlock(B, G, dense=draws(self.kind, G, B, rng))

    def _stack(self) -> np.ndarray:
        """``[S0, S1, E_q S1 for each diag part and q]`` side by side (``G_b x ...``), built once."""
        if self._stacked is None:
            alg = self.alg
            m = 2 if self.quad else 1
            cols = [alg.S[0], alg.S[1]]
            for pt in alg.parts:
                if pt.diag:
                    cols += [pt.E[q][:, None] * alg.S[1] for q in range(m)]
            self._stacked = np.ascontiguousarray(np.hstack(cols))
        return self._stacked

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
        stack = self._stack()
        for g0, g1 in wb.ranges(self.chunk_weights):
            V = wb.cols(g0, g1)
            # one product reads the weights once: [S0, S1, (E_q S1) of every diag part]
            P = V @ stack[g0:g1]
            WS[0] += P[:, :k]
            WS[1] += P[:, k:2 * k]
            o = 2 * k
            for j, pt in enumerate(alg.parts):
                if pt.diag:
                    for q in range(m):
                        WM[j][q] += P[:, o:o + k]
                        o += k
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
        return self.stats(self.weights(*block))

    def stats(self, wb: WeightBlock) -> tuple[np.ndarray, ...]:
        """The per-draw pieces of the weights ``wb``."""
        alg = self.alg
        signs = self.injected is None and self.kind == "rademacher"  # weights +-1: v * v = 1
        WS, WM, norms = self._products(wb, signs)
        csign = wb.constant_sign()
        if not self.quad:
            w = WS[0] + (alg.fold * alg.c1) * WS[1]
            den = np.zeros(wb.n)
            for pt, u, (n00,) in zip(alg.parts, WM, norms):
                den += pt.sign * (n00 - 2.0 * _rowdot(w, u[0]) + _rowdot(w @ pt.H, w))
            return (w @ alg.a, den, csign)
        return _quad_pieces(alg, WS, WM, norms, csign)


def _quad_pieces(alg: _Algebra, WS: Any, WM: list, norms: list, csign: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(n0, n1, sum Z0^2, sum Z0 Z1, sum Z1^2, csign)`` per draw from the weight products."""
    w0, w1 = WS[0], alg.c1 * WS[1]
    sums = [np.zeros(w0.shape[0]) for _ in range(3)]
    for pt, (u0, u1), (n00, n01, n11) in zip(alg.parts, WM, norms):
        h0, h1 = w0 @ pt.H, w1 @ pt.H
        sums[0] += pt.sign * (n00 - 2.0 * _rowdot(w0, u0) + _rowdot(h0, w0))
        sums[1] += pt.sign * (n01 - _rowdot(w0, u1) - _rowdot(w1, u0) + _rowdot(h0, w1))
        sums[2] += pt.sign * (n11 - 2.0 * _rowdot(w1, u1) + _rowdot(h1, w1))
    return (w0 @ alg.a, w1 @ alg.a, *sums, csign)


@dataclass(eq=False)
class SharedRunner:
    """Several runners (contrasts, WCR and WCU) fed the same weights: each block's
    weights are drawn once, by the first runner's rules, and unpacked once."""

    runners: list[Runner]

    def __call__(self, block: tuple[int, int, int]) -> list[tuple[np.ndarray, ...]]:
        wb = self.runners[0].weights(*block).densify()
        return [r.stats(wb) for r in self.runners]


def batchable(algs: Sequence[_Algebra]) -> bool:
    """Whether :class:`BatchRunner` applies: one variance clustering, the bootstrap clustering."""
    return all(len(alg.parts) == 1 and alg.parts[0].diag for alg in algs)


@dataclass(eq=False)
class BatchRunner:
    """The pieces of every null value (as ``Runner(quad=True)``) of several
    combinations from one product per block.

    With the variance clustered by the bootstrap clusters, every product a
    combination needs is the weights times a ``G_b x k`` matrix (``S[0]``,
    shared; ``S[1]``, ``E_0 S[1]``, ``E_1 S[1]`` per combination). Stacked side
    by side they make one wide product per block, which reads the block's
    weights once instead of four times per combination.
    """

    algs: list[_Algebra]
    proto: Runner  # draws the weights
    stack: np.ndarray = field(init=False, repr=False)
    squares: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cols = [self.algs[0].S[0]]
        for alg in self.algs:
            E, S1 = alg.parts[0].E, alg.S[1]
            cols += [S1, E[0][:, None] * S1, E[1][:, None] * S1]
        self.stack = np.ascontiguousarray(np.hstack(cols))
        self.squares = np.column_stack([alg.parts[0].E[i] * alg.parts[0].E[j] for alg in self.algs
                                        for i, j in _PAIRS])

    def __call__(self, block: tuple[int, int, int]) -> list[tuple[np.ndarray, ...]]:
        pr = self.proto
        wb = pr.weights(*block).densify()
        signs = pr.injected is None and pr.kind == "rademacher"  # weights +-1: v * v = 1
        V = wb.dense  # the block is held whole anyway: one product, no range copies
        out = V @ self.stack
        acc = None if signs else (V * V) @ self.squares
        csign = wb.constant_sign()
        k = self.algs[0].a.size
        res = []
        for j, alg in enumerate(self.algs):
            o = k * (1 + 3 * j)
            E = alg.parts[0].E
            WM = [np.stack([out[:, o + k:o + 2 * k] @ alg.A, out[:, o + 2 * k:o + 3 * k] @ alg.A])]
            norms = [[float(E[a] @ E[b]) for a, b in _PAIRS] if acc is None else list(acc[:, 3 * j:3 * j + 3].T)]
            res.append(_quad_pieces(alg, (out[:, :k], out[:, o:o + k]), WM, norms, csign))
        return res
