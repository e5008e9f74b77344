"""Wild cluster bootstrap (restricted WCR and unrestricted WCU) of one
coefficient of a fitted TWFE model, with confidence intervals by test inversion.

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

Memory: besides the fit, the bootstrap keeps two G x k arrays of cluster sums
(``x u`` and ``x r``) and, per block of draws, the block's weights (packed
bits for Rademacher); the products with the weights run over cluster ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import polars as pl
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import optimize
from threadpoolctl import threadpool_limits

from ..._parallel import run_blocks
from ..._seed import SeedLike, block_generator, resolve_entropy
from ..._validate import check_alternative, check_draws, check_level
from ...errors import MissingColumnError, VcovError, WildBootError
from ...kernels.wildboot import cluster_wsums_into
from ...panels.panel import factorize_column
from ..regression.absorb import Absorber
from ..regression.compat import as_feols
from ..regression.feols import Feols
from ..regression.rank import independent_columns
from ..regression.vcov import cluster_parts, combine_codes, nested_in, parse_clusters, ssc_factor
from ..results import Result

__all__ = ["wildboot", "WildBootResult", "WildBootTuning", "WildBootError", "draw_weights", "enumeration_weights"]

WeightType = Literal["rademacher", "mammen", "webb", "normal"]
Alternative = Literal["two-sided", "equal-tailed", "greater", "less"]
WEIGHT_TYPES = ("rademacher", "mammen", "webb", "normal")
ALTERNATIVES = ("two-sided", "equal-tailed", "greater", "less")

#: cap on the dense block of non-nested fixed-effect dummies (columns).
MAX_DUMMY_COLUMNS = 2000
#: relative tolerance of the test-inversion root finder (in units of the se).
CI_XTOL = 1e-9
#: bootstrap t's this close (relative) to the observed t count as ties.
TIE_RTOL = 1e-10

_SQRT5 = math.sqrt(5.0)
_MAMMEN = np.array([-(_SQRT5 - 1) / 2, (_SQRT5 + 1) / 2])
_MAMMEN_P_LOW = (_SQRT5 + 1) / (2 * _SQRT5)
_SIGNS = 2.0 * ((np.arange(256)[:, None] >> np.arange(7, -1, -1)[None, :]) & 1) - 1.0
_WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])


# ---------------------------------------------------------------- weights
def _draws(kind: str, n_clusters: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draw-major ``n_draws x n_clusters`` weights (one draw's weights contiguous)."""
    size = n_clusters * n_draws
    if kind == "rademacher":
        # 8 signs per random byte via a 256 x 8 table (most significant bit first, 1 -> +1)
        V = np.take(_SIGNS, np.frombuffer(rng.bytes((size + 7) // 8), dtype=np.uint8), axis=0).ravel()[:size]
    elif kind == "mammen":
        V = np.where(rng.random(size) < _MAMMEN_P_LOW, _MAMMEN[0], _MAMMEN[1])
    elif kind == "webb":
        V = _WEBB[rng.integers(0, 6, size)]
    elif kind == "normal":
        V = rng.standard_normal(size)
    else:  # validated by the caller
        raise WildBootError(f"unknown weights {kind!r}")
    return V.reshape(n_draws, n_clusters)


def draw_weights(kind: str, n_clusters: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a ``n_clusters x n_draws`` matrix of wild bootstrap weights.

    Rademacher (+-1 with probability 1/2), Mammen (two-point, mean 0, variance
    1, skewness 1), Webb (six-point, +-sqrt(1/2), +-1, +-sqrt(3/2)) or standard
    normal. Column ``j`` is draw ``j`` (the draws :func:`wildboot` makes from
    the same generator).
    """
    return _draws(kind, n_clusters, n_draws, rng).T


def _enumeration(n_clusters: int, start: int, stop: int) -> np.ndarray:
    j = np.arange(start, stop, dtype=np.int64)
    shifts = np.arange(n_clusters - 1, -1, -1, dtype=np.int64)
    return 2.0 * ((j[:, None] >> shifts[None, :]) & 1) - 1.0


def enumeration_weights(n_clusters: int, start: int, stop: int) -> np.ndarray:
    """Columns ``start..stop-1`` of the matrix of all ``2^G`` Rademacher sign vectors.

    Column ``j`` is the binary expansion of ``j`` with the first cluster as the
    most significant bit and 0 -> -1 (the order of ``itertools.product([-1, 1],
    repeat=G)``).
    """
    return _enumeration(n_clusters, start, stop).T


def _block_size(n_clusters: int) -> int:
    """Draws per block: a function of G only (never of n_jobs), ~16 MB per block."""
    return int(np.clip(2**21 // max(n_clusters, 1), 64, 4096))


@dataclass(frozen=True)
class WildBootTuning:
    """Memory bounds of the wild bootstrap (every setting gives the same statistics).

    Parameters
    ----------
    chunk_rows : int
        Rows per chunk of the bootstrap design (its loose-FE dummy block is
        built chunk by chunk, never for all rows at once).
    chunk_weights : int
        Weights (draws x clusters) multiplied at once within a block of draws.
    """

    chunk_rows: int = 1 << 17
    chunk_weights: int = 1 << 20


_PLUS_MINUS = np.array([-1.0, 1.0])


class _WeightBlock:
    """The draw-major ``B x G`` weights of one block, served by ranges of clusters.

    With many clusters a block is large (64 draws x 1M clusters is 512 MB of
    float64), so the products with the weights run over cluster ranges of
    ``WildBootTuning.chunk_weights`` cells. Rademacher weights stay packed as the block's
    random bytes (one bit per weight) and are unpacked one range at a time;
    other weights are held dense, as drawn.
    """

    def __init__(self, n_draws: int, n_clusters: int, *, dense: np.ndarray | None = None,
                 bits: np.ndarray | None = None):
        self.n, self.G = n_draws, n_clusters
        self.dense, self.bits = dense, bits

    def ranges(self, cells: int) -> list[tuple[int, int]]:
        """Cluster ranges ``[g0, g1)`` of at most ``cells`` cells each."""
        width = max(1, cells // max(self.n, 1))
        return [(g0, min(g0 + width, self.G)) for g0 in range(0, self.G, width)]

    def cols(self, g0: int, g1: int) -> np.ndarray:
        """The weights of clusters ``g0..g1-1`` (``B x (g1 - g0)``, C order)."""
        if self.dense is not None:
            return np.ascontiguousarray(self.dense[:, g0:g1])
        width = g1 - g0
        signs = np.empty((self.n, width), dtype=np.uint8)
        for j in range(self.n):
            # bit j * G + g of the block's bytes is weight (j, g), most significant bit first
            s = j * self.G + g0
            signs[j] = np.unpackbits(self.bits[s >> 3:((s + width - 1) >> 3) + 1], count=(s & 7) + width)[s & 7:]
        return _PLUS_MINUS[signs]


def _rademacher_block(n_clusters: int, n_draws: int, rng: np.random.Generator) -> _WeightBlock:
    """The weights :func:`_draws` makes from ``rng``, kept as packed bits."""
    bits = np.frombuffer(rng.bytes((n_clusters * n_draws + 7) // 8), dtype=np.uint8)
    return _WeightBlock(n_draws, n_clusters, bits=bits)


# ------------------------------------------------------- bootstrap design
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
class _BootDesign:
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


def _boot_design(fit: Feols, p: int, boot: np.ndarray, chunk_rows: int) -> _BootDesign:
    d = fit.design
    nested = [nested_in(c, boot) for c in d.absorber.codes]
    k = len(d.regressors)
    if all(nested):  # every FE commutes with the weights: the fit's design is the bootstrap's
        return _BootDesign(d.Xw, None, np.empty(0, dtype=np.int64), _row_chunks(None, d.nobs, chunk_rows), p, d.bread,
                           float(fit.beta[p]), fit.uw, [])
    dummies = _loose_dummies(fit, nested)
    nested_codes = dummies.nested
    # chunks must hold whole connected sets of the nested FEs: the levels of
    # the one nested FE, or else whole bootstrap clusters (they contain them all)
    key = None if not nested_codes else nested_codes[0] if len(nested_codes) == 1 else boot
    bd = _BootDesign(d.Xw, dummies, np.arange(dummies.n_cols), _row_chunks(key, d.nobs, chunk_rows), p, d.bread,
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


# ----------------------------------------------------- the fast algebra
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


def _algebra(bd: _BootDesign, boot: np.ndarray, n_boot: int, parts: Sequence[tuple[np.ndarray, float]],
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


def _at(alg: _Algebra, delta: float) -> _Algebra:
    """The algebra with the null value folded in (one-h0 fast path)."""
    parts = [_Part(pt.sign, pt.diag, [pt.E[0] + delta * pt.E[1]], [pt.M[0] + delta * pt.M[1]] if pt.M else [],
                   pt.H) for pt in alg.parts]
    return _Algebra(alg.a, alg.A, alg.S, alg.c1, parts, alg.adj, alg.se, alg.beta_p, alg.n_boot, fold=delta)


def _rowdot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


def _run_block(runner: "_Runner", block: tuple[int, int, int]) -> Any:
    """One block of draws (module-level so the runner travels as data, scattered once)."""
    return runner(block)


@dataclass(eq=False)  # hashable by identity: joblib's dask backend hashes task functions
class _Runner:
    """Computes one block of draws; a pure function of the block index."""

    alg: _Algebra
    kind: str
    seed: np.random.SeedSequence
    enumerate_all: bool
    injected: np.ndarray | None
    quad: bool  # store the pieces of every null value (test inversion)
    chunk_weights: int

    def weights(self, index: int, start: int, stop: int) -> _WeightBlock:
        """Draw-major ``(stop - start) x G`` weights of block ``index``."""
        G, B = self.alg.n_boot, stop - start
        if self.injected is not None:
            return _WeightBlock(B, G, dense=np.ascontiguousarray(self.injected[:, start:stop].T, dtype=np.float64))
        if self.enumerate_all:
            return _WeightBlock(B, G, dense=_enumeration(G, start, stop))
        rng = block_generator(self.seed, index)
        if self.kind == "rademacher":
            return _rademacher_block(G, B, rng)
        return _WeightBlock(B, G, dense=_draws(self.kind, G, B, rng))

    def _products(self, wb: _WeightBlock, signs: bool) -> tuple[np.ndarray, list[list[np.ndarray]], list[list]]:
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


def _tstar(pieces: tuple[np.ndarray, ...], adj: float, delta: float) -> np.ndarray:
    n0, n1, a, b, c = pieces
    den = adj * (a + 2.0 * delta * b + delta * delta * c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (n0 + delta * n1) / np.sqrt(np.where(den > 0, den, np.nan))


def _pvalue(t: float, tstar: np.ndarray, alternative: str) -> float:
    """Share of bootstrap t's at least as extreme as ``t``.

    Ties (within ``TIE_RTOL``) count as extreme: with the null imposed the sign
    vectors ``v = +-1`` reproduce ``+-t`` exactly (up to rounding), and counting
    them is the conservative choice that does not depend on rounding.
    """
    ts = tstar[np.isfinite(tstar)]
    tol = TIE_RTOL * max(abs(t), 1.0)
    if alternative == "two-sided":
        return float(np.mean(np.abs(ts) >= abs(t) - tol))
    up = float(np.mean(ts >= t - tol))
    down = float(np.mean(ts <= t + tol))
    if alternative == "equal-tailed":
        return min(1.0, 2.0 * min(up, down))
    return up if alternative == "greater" else down


def _invert(pfun: Callable[[float], float], beta: float, se: float, alpha: float, side: int) -> float:
    """The null value where the p-value crosses ``alpha`` on one side of ``beta``."""
    inside = lambda h: 1.0 if pfun(h) >= alpha else -1.0  # noqa: E731 - a sign is all brentq needs
    if inside(beta) < 0:
        return math.nan
    m_in, m = 0.0, 0.5
    while inside(beta + side * m * se) > 0:
        m_in, m = m, m * 1.5
        if m > 1e9:
            return side * math.inf
    lo, hi = sorted((beta + side * m_in * se, beta + side * m * se))
    return float(optimize.brentq(inside, lo, hi, xtol=CI_XTOL * se, rtol=4 * np.finfo(float).eps))


# ------------------------------------------------------------------- result
@dataclass(eq=False)
class WildBootResult(Result):
    """Result of :func:`wildboot`.

    Attributes
    ----------
    param : str
        The tested coefficient.
    estimate, se : float
        Its estimate and cluster-robust (CRV1) standard error.
    h0 : float
        The null value tested.
    tstat : float
        ``(estimate - h0) / se`` (equals the fit's t statistic when ``h0 = 0``
        and the variance is the fit's).
    pvalue : float
        Bootstrap p-value for ``alternative``.
    confint : tuple of float or None
        Confidence interval by test inversion (``None`` if not asked for).
    statistics : ndarray
        The bootstrap t statistics (at ``h0``), one per draw.
    draws : int
        Number of bootstrap draws used (``2^G`` under full enumeration).
    full_enumeration : bool
        Whether all ``2^G`` Rademacher sign vectors were used (deterministic).
    notes : list of str
        What the user should know about how the result was computed.
    """

    param: str
    estimate: float
    se: float
    h0: float
    tstat: float
    pvalue: float
    confint: tuple[float, float] | None
    level: float
    statistics: np.ndarray = field(repr=False)
    draws: int
    weights: str
    impose_null: bool
    alternative: str
    full_enumeration: bool
    n_clusters: int
    n_bootclusters: int
    cluster: tuple[str, ...]
    bootcluster: str
    notes: list[str] = field(default_factory=list)
    _pfun: Callable[[float], float] | None = field(default=None, repr=False)

    @property
    def bootstrap_type(self) -> str:
        """``"WCR"`` (null imposed) or ``"WCU"``."""
        return "WCR" if self.impose_null else "WCU"

    @property
    def note(self) -> str:
        """The notes as one string."""
        return "; ".join(self.notes)

    def pvalue_at(self, h0: float) -> float:
        """Bootstrap p-value of ``H0: param = h0`` reusing the same weights.

        Available when the result was computed with ``confint=True`` (or for
        WCU, whose bootstrap t statistics do not depend on the null).
        """
        if self._pfun is None:
            raise WildBootError("pvalue_at needs the per-draw pieces; rerun wildboot with confint=True")
        return self._pfun(float(h0))

    def tidy(self) -> pl.DataFrame:
        """One row: ``term, estimate, se, h0, tstat, pvalue, ci_low, ci_high, draws, bootstrap, weights``."""
        lo, hi = self.confint if self.confint is not None else (math.nan, math.nan)
        return pl.DataFrame(
            {
                "term": [self.param],
                "estimate": [self.estimate],
                "se": [self.se],
                "h0": [self.h0],
                "tstat": [self.tstat],
                "pvalue": [self.pvalue],
                "ci_low": [lo],
                "ci_high": [hi],
                "draws": [self.draws],
                "bootstrap": [self.bootstrap_type],
                "weights": [self.weights],
                "n_clusters": [self.n_bootclusters],
            }
        )

    def summary(self) -> str:
        """A printable report."""
        ci = "not computed"
        if self.confint is not None:
            ci = f"[{self.confint[0]:.6g}, {self.confint[1]:.6g}]"
        lines = [
            f"Wild cluster bootstrap ({self.bootstrap_type}, {self.weights} weights, "
            f"{self.draws:,} draws{', full enumeration' if self.full_enumeration else ''})",
            f"Clusters: {' + '.join(self.cluster)} (variance), {self.bootcluster} "
            f"(bootstrap, G = {self.n_bootclusters})",
            f"H0: {self.param} = {self.h0:g}   alternative: {self.alternative}",
            "",
            f"{'term':<16}{'estimate':>12}{'se':>12}{'t':>9}{'boot p':>9}  {int(round(self.level * 100))}% CI",
            f"{self.param[:16]:<16}{self.estimate:>12.5f}{self.se:>12.5f}{self.tstat:>9.3f}{self.pvalue:>9.4f}  {ci}",
        ]
        if self.notes:
            lines.append("")
            lines.extend(f"Note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def plot(self, path: str | None = None, **kwargs: Any):
        """Histogram of the bootstrap t statistics with the observed one (see
        :func:`staggerlab.plots.bootstrap.plot_wildboot`)."""
        from ...plots.bootstrap import plot_wildboot

        return plot_wildboot(self, path=path, **kwargs)


# ------------------------------------------------------------------- entry
def _cluster_codes(fit: Feols, name: str) -> np.ndarray:
    d = fit.design
    if name in d.clusters or name in d.fixef:
        return d.codes(name)
    if name not in d.frame.columns:
        raise MissingColumnError(f"cluster column {name!r} is not in the data (columns: {d.frame.columns})")
    col = d.frame[name]
    if col.null_count():
        raise VcovError(f"cluster column {name!r} has missing values in the estimation sample")
    return factorize_column(col)


def wildboot(
    fit: Any,
    param: str = "treat",
    draws: int = 9999,
    weights: WeightType = "rademacher",
    impose_null: bool = True,
    h0: float = 0.0,
    cluster: str | Sequence[str] | None = None,
    bootcluster: str | None = None,
    alternative: Alternative = "two-sided",
    confint: bool = True,
    level: float = 0.95,
    seed: SeedLike = 0,
    n_jobs: int = 1,
    backend: str | None = None,
    *,
    weight_matrix: np.ndarray | None = None,
    tuning: WildBootTuning = WildBootTuning(),
) -> WildBootResult:
    """Wild cluster bootstrap test (and test-inversion CI) of one coefficient.

    Parameters
    ----------
    fit : staggerlab Feols or pyfixest Feols
        A fitted model; fixed effects stay absorbed (see the module notes for
        fixed effects not nested in the bootstrap clusters).
    param : str
        The coefficient tested.
    draws : int
        Number of bootstrap draws. With Rademacher weights and ``2^G <= draws``
        all ``2^G`` sign vectors are enumerated instead (deterministic).
    weights : {"rademacher", "mammen", "webb", "normal"}
        Distribution of the cluster weights.
    impose_null : bool
        True for WCR (residuals of the model with ``param = h0``), False for WCU.
    h0 : float
        Null value of ``param``.
    cluster : str or list of str, optional
        Variance cluster column(s); defaults to the fit's. With two-way
        clustering the variance of every draw is two-way (as the fit's) and the
        bootstrap weights are drawn by the first cluster.
    bootcluster : str, optional
        Column whose levels get the bootstrap weights (subcluster bootstrap);
        defaults to the first cluster.
    alternative : {"two-sided", "equal-tailed", "greater", "less"}
        ``two-sided`` is the symmetric test ``mean(|t*| > |t|)``; ``equal-tailed``
        is ``2 min(mean(t* > t), mean(t* < t))``; ``greater``/``less`` are
        one-sided (H1: ``param > h0`` / ``< h0``).
    confint : bool
        Compute the confidence interval by inverting the bootstrap test (same
        weights for every null value; one-sided for one-sided alternatives).
    level : float
        Confidence level; the CI holds the null values with p-value >= 1 - level.
    seed : int, Generator, SeedSequence or None
        Seed; block ``i`` of draws uses ``block_generator(seed, i)``.
    n_jobs, backend : int, str
        Parallel blocks (joblib); results are identical for any value.
    weight_matrix : ndarray, optional
        Expert/testing: a ``G x B`` matrix of weights (bootstrap clusters in
        sorted order of their values) used instead of drawing.
    tuning : WildBootTuning
        Memory bounds; the statistics do not depend on them.

    Returns
    -------
    WildBootResult

    Raises
    ------
    WildBootError
        Unknown ``param``, weights or alternative; bad ``draws`` or ``level``.
    VcovError
        No cluster structure in the fit and none given; fewer than 2 clusters.

    Notes
    -----
    The bootstrap t statistics use CRV1 with the fit's small-sample factor
    ``(N-1)/(N-df_k) * G/(G-1)``, so the observed t equals the fit's when
    ``h0 = 0``. P-values count strictly larger bootstrap statistics over all
    draws (no "+1"), as boottest and wildboottest do.

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.resampling.wildboot import wildboot
    >>> df = sl.simulate.staggered(40, 6, seed=1)
    >>> fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "unit"})
    >>> wb = wildboot(fit, param="treat", draws=999, seed=1)
    >>> wb.pvalue < 0.05
    True
    """
    fit = as_feols(fit)
    d = fit.design
    if param not in d.regressors:
        raise WildBootError(f"param {param!r} is not a coefficient of the model; coefficients: {d.regressors}")
    if weights not in WEIGHT_TYPES:
        raise WildBootError(f"weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    check_alternative(alternative, ALTERNATIVES)
    check_level(level)
    if weight_matrix is None:
        check_draws(draws)
    notes: list[str] = []

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
        names = list(parse_clusters(cluster))
    codes = [_cluster_codes(fit, c) for c in names]
    bname = bootcluster if bootcluster is not None else names[0]
    boot = _cluster_codes(fit, bname)
    parts = cluster_parts(codes)
    if len(codes) == 2 and bootcluster is None:
        notes.append(f"two-way clustered variance; bootstrap weights drawn by {names[0]!r}")
    G = min(g for _, _, g in parts)
    n_boot = int(boot.max()) + 1
    if G < 2 or n_boot < 2:
        raise VcovError(f"the wild cluster bootstrap needs at least 2 clusters, found {min(G, n_boot)}")
    N = d.nobs
    df_k = d.df_k_clusters(names, codes)
    adj = ssc_factor("CRV1", N, df_k, G)

    bd = _boot_design(fit, d.regressors.index(param), boot, tuning.chunk_rows)
    if bd.explicit_fe:
        notes.append(
            f"fixed effect(s) {bd.explicit_fe} are not nested in the bootstrap clusters; they enter the "
            "bootstrap as regressors (exact, as with dummies)"
        )
    alg = _algebra(bd, boot, n_boot, [(c, sign) for c, sign, _ in parts], adj, impose_null)

    enumerate_all = False
    if weight_matrix is not None:
        weight_matrix = np.asarray(weight_matrix, dtype=np.float64)
        if weight_matrix.ndim != 2 or weight_matrix.shape[0] != n_boot:
            raise WildBootError(f"weight_matrix must be {n_boot} x B, got shape {weight_matrix.shape}")
        B = weight_matrix.shape[1]
        notes.append("weights injected by the caller")
    elif weights == "rademacher" and n_boot < 63 and 2**n_boot <= draws:
        enumerate_all = True
        B = 2**n_boot
        notes.append(f"full enumeration of the 2^{n_boot} = {B} Rademacher sign vectors (deterministic)")
    else:
        B = int(draws)
    if n_boot <= 11 and weights == "rademacher" and not enumerate_all:
        notes.append(f"only {n_boot} bootstrap clusters: consider weights='webb'")

    delta = alg.beta_p - h0
    tstat = delta / alg.se
    quad = bool(confint and impose_null)
    runner = _Runner(alg if quad else _at(alg, delta), weights, resolve_entropy(seed), enumerate_all,
                     weight_matrix, quad, tuning.chunk_weights)
    bs = _block_size(n_boot)
    blocks = [(i, s, min(s + bs, B)) for i, s in enumerate(range(0, B, bs))]
    # the block products are skinny (k columns); a second BLAS thread buys
    # little and, on a busy machine, contention costs up to 10x
    with threadpool_limits(1, user_api="blas"):
        res = run_blocks(_run_block, blocks, shared=runner, n_jobs=n_jobs, backend=backend, desc="wild bootstrap")
    cols = tuple(np.concatenate(x) for x in zip(*res))
    if quad:
        pieces = cols
        stats = _tstar(pieces, adj, delta)

        def pfun(h: float) -> float:
            dl = alg.beta_p - h
            return _pvalue(dl / alg.se, _tstar(pieces, adj, dl), alternative)
    else:
        num, den = cols
        with np.errstate(invalid="ignore", divide="ignore"):
            stats = num / np.sqrt(np.where(den > 0, adj * den, np.nan))
        pfun = None
        if not impose_null:
            def pfun(h: float) -> float:  # WCU: the bootstrap t's do not depend on the null
                return _pvalue((alg.beta_p - h) / alg.se, stats, alternative)
    n_bad = int((~np.isfinite(stats)).sum())
    if n_bad:
        notes.append(f"{n_bad} draw(s) with a non-positive two-way variance were left out")
    pval = _pvalue(tstat, stats, alternative)

    ci = None
    if confint and pfun is not None:
        alpha = 1.0 - level
        lo = -math.inf if alternative == "less" else _invert(pfun, alg.beta_p, alg.se, alpha, -1)
        hi = math.inf if alternative == "greater" else _invert(pfun, alg.beta_p, alg.se, alpha, +1)
        ci = (lo, hi)
        if not (math.isfinite(lo) or alternative == "less") or not (math.isfinite(hi) or alternative == "greater"):
            notes.append("the confidence set is unbounded (too few distinct bootstrap draws for this level)")

    return WildBootResult(
        param=param,
        estimate=alg.beta_p,
        se=alg.se,
        h0=float(h0),
        tstat=float(tstat),
        pvalue=pval,
        confint=ci,
        level=level,
        statistics=stats,
        draws=B,
        weights=weights if weight_matrix is None else "injected",
        impose_null=impose_null,
        alternative=alternative,
        full_enumeration=enumerate_all,
        n_clusters=G,
        n_bootclusters=n_boot,
        cluster=tuple(names),
        bootcluster=bname,
        notes=notes,
        _pfun=pfun,
    )
