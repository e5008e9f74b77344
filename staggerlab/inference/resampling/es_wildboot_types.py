"""The per-draw pieces of many combinations of one regression when the
bootstrap clusters come in few *design types*.

An event-study regression clustered by unit has, per cluster ``g``, the
Gram matrix ``X_g'X_g`` of its rows; it depends only on the unit's cohort
and observed periods, so a panel of thousands of units has a few dozen
distinct ones (the *types* ``t``). Of the per-cluster tables the bootstrap
of a combination ``a = A c`` needs (``wildboot_algebra``: ``S0_g = X_g'u_g``,
``S1_g = X_g'X_g a``, ``ru0_g = S0_g'a``, ``ru1_g = a'X_g'X_g a``) only
``S0`` depends on the outcome; ``S1`` and ``ru1`` are per type. So with
``Y_t = sum_{g in t} v_g S0_g`` and ``n_t = sum_{g in t} v_g`` (one
``draws x G x (k + 1)`` product per block, shared by every combination)

* ``V S0 = sum_t Y_t``, ``V S1 = sum_t n_t S1_t``,
* ``(v o ru0)' S1 = sum_t (Y_t'a) S1_t`` and ``(v o ru1)' S1 = sum_t n_t ru1_t S1_t``,

and each combination costs O(types x k) per draw instead of the three
``G x k`` products of ``BatchRunner``. The pieces returned are those of
``Runner(quad=True)``: ``(n0, n1, sum Z0^2, sum Z0 Z1, sum Z1^2, csign)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ...kernels.wildboot import cluster_wsums_into
from .wildboot_algebra import GRAM_BUDGET

__all__ = ["cluster_types", "TypedBatchRunner", "MAX_TYPES"]

#: the per-type loop runs one small product per type and block; beyond this many types the dense stack is faster
MAX_TYPES = 256
#: and the types must be few relative to the clusters (their tables replace G-row ones)
_TYPES_PER_CLUSTER = 0.125


def cluster_types(blocks: Iterable[tuple[Any, np.ndarray]], boot: np.ndarray, n_boot: int, k: int
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Group the bootstrap clusters by their Gram matrix ``X_g'X_g`` (equal bits).

    ``blocks``: the design's row chunks (``k`` columns). Returns
    ``(type_of_cluster, gram_of_type)`` (``G`` codes; ``types x k x k``), or None
    when the per-cluster Gram table exceeds ``GRAM_BUDGET`` doubles or the types
    are too many for :class:`TypedBatchRunner` to pay.
    """
    if n_boot * k * k > GRAM_BUDGET:
        return None
    XX = np.zeros((k, n_boot, k))
    for rows, X in blocks:
        cluster_wsums_into(XX, X, X, boot[rows])
    flat = np.ascontiguousarray(XX.transpose(1, 0, 2).reshape(n_boot, k * k))
    seen: dict[bytes, int] = {}
    types = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in flat], dtype=np.int64)
    if len(seen) > min(MAX_TYPES, max(1.0, _TYPES_PER_CLUSTER * n_boot)):
        return None
    first = np.zeros(len(seen), dtype=np.int64)
    first[types[::-1]] = np.arange(n_boot)[::-1]
    return types, XX.transpose(1, 0, 2)[first]


@dataclass(eq=False)
class TypedBatchRunner:
    """Pieces of every null value of several combinations (as ``BatchRunner``),
    from one ``draws x G x (k + 1)`` product per block.

    ``algs`` come from ``wildboot_algebra.algebras`` (one variance clustering,
    the bootstrap clustering; ``batchable``); ``proto`` draws the weights, so
    the draws are those of every other runner with the same seed.
    """

    algs: list[Any]
    proto: Any
    types: np.ndarray
    gram: np.ndarray
    order: np.ndarray = field(init=False, repr=False)
    bounds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.order = np.argsort(self.types, kind="stable")
        counts = np.bincount(self.types, minlength=self.gram.shape[0])
        self.bounds = np.r_[0, np.cumsum(counts)]
        alg0 = self.algs[0]
        self.S0e = np.ascontiguousarray(np.column_stack([alg0.S[0], np.ones(alg0.n_boot)])[self.order])
        self.a = np.stack([alg.a for alg in self.algs])  # J x k
        self.c1 = np.array([alg.c1 for alg in self.algs])
        self.S1t = np.einsum("tkl,jl->jtk", self.gram, self.a)  # J x types x k: X_t'X_t a_j
        self.e1t = self.c1[:, None] * np.einsum("jtk,jk->jt", self.S1t, self.a)  # c1 ru1 per type
        self.H = np.stack([alg.parts[0].H for alg in self.algs])
        J, nt, k = self.S1t.shape
        # types x (J k) and k x (J k) layouts: one product with the per-type sums or w0 covers every combination
        self.S1flat = np.ascontiguousarray(self.S1t.transpose(1, 0, 2).reshape(nt, J * k))
        self.E1S1flat = np.ascontiguousarray((self.e1t[:, :, None] * self.S1t).transpose(1, 0, 2).reshape(nt, J * k))
        self.Hflat = np.ascontiguousarray(self.H.transpose(1, 0, 2).reshape(k, J * k))
        self.sign = np.array([alg.parts[0].sign for alg in self.algs])
        E = [(alg.parts[0].E[0], alg.parts[0].E[1]) for alg in self.algs]
        self.const_norms = np.array([[e0 @ e0, e0 @ e1, e1 @ e1] for e0, e1 in E])  # J x 3
        self.squares = np.column_stack([x for e0, e1 in E for x in (e0 * e0, e0 * e1, e1 * e1)])

    def _weights(self, block: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
        """The block's weights (draws x G, clusters in type order) and whether they are all +-1."""
        pr = self.proto
        wb = pr.weights(*block)
        if wb.dense is None:  # packed Rademacher signs: 1 -> +1, 0 -> -1
            bits = np.unpackbits(wb.bits, count=wb.n * wb.G).reshape(wb.n, wb.G)
            V = bits[:, self.order].astype(np.float64)
            V *= 2.0
            V -= 1.0
        else:
            V = wb.dense[:, self.order]
        return V, pr.injected is None and pr.kind == "rademacher"

    def __call__(self, block: tuple[int, int, int]) -> list[tuple[np.ndarray, ...]]:
        V, signs = self._weights(block)
        B, k = V.shape[0], self.a.shape[1]
        J, nt = self.a.shape[0], self.gram.shape[0]
        Y = np.empty((B, nt, k + 1))
        for t in range(nt):
            s, e = self.bounds[t], self.bounds[t + 1]
            Y[:, t] = V[:, s:e] @ self.S0e[s:e]
        Vt = np.ascontiguousarray(Y[:, :, k])
        Y = Y[:, :, :k]
        w0 = Y.sum(axis=1)  # B x k: V S0
        P = (Y.reshape(B * nt, k) @ self.a.T).reshape(B, nt, J).transpose(2, 0, 1)  # J x B x types: sum v ru0
        A = self.algs[0].A
        w1 = (Vt @ self.S1flat).reshape(B, J, k).transpose(1, 0, 2) * self.c1[:, None, None]  # c1 V S1_j
        u0 = np.matmul(P, self.S1t) @ A  # (v o E0)' S1 A
        u1 = (Vt @ self.E1S1flat).reshape(B, J, k).transpose(1, 0, 2) @ A  # (v o E1)' S1 A
        if signs:
            norms = np.broadcast_to(self.const_norms[:, :, None], (J, 3, B))
        else:
            norms = ((V * V) @ self.squares[self.order]).reshape(B, J, 3).transpose(1, 2, 0)
        first = V[:, 0]
        csign = np.where((V == first[:, None]).all(axis=1), np.sign(first), 0.0)
        h0 = (w0 @ self.Hflat).reshape(B, J, k).transpose(1, 0, 2)
        h1 = np.matmul(w1, self.H)
        sg = self.sign[:, None]
        s0 = sg * (norms[:, 0] - 2.0 * _rowdot(w0[None], u0) + _rowdot(h0, w0[None]))
        s1 = sg * (norms[:, 1] - _rowdot(w0[None], u1) - _rowdot(w1, u0) + _rowdot(h0, w1))
        s2 = sg * (norms[:, 2] - 2.0 * _rowdot(w1, u1) + _rowdot(h1, w1))
        n0 = (w0 @ self.a.T).T
        n1 = _rowdot(w1, self.a[:, None, :])
        return [(n0[j], n1[j], s0[j], s1[j], s2[j], csign) for j in range(J)]


def _rowdot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_k x[..., k] y[..., k]`` (broadcasting)."""
    return (x * y).sum(axis=-1)
