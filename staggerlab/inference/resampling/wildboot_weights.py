"""Wild bootstrap weights: the weight distributions, :func:`draw_weights`,
the full enumeration of two-point weights (Rademacher, Mammen) with each
draw's probability, and the packed Rademacher
:class:`WeightBlock` that serves a block's weights by cluster ranges."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ...errors import WildBootError

__all__ = ["WeightType", "WEIGHT_TYPES", "TWO_POINT", "draw_weights", "enumeration_weights", "draws", "enumeration",
           "enumeration_probabilities", "WeightBlock", "rademacher_block"]

WeightType = Literal["rademacher", "mammen", "webb", "normal"]
WEIGHT_TYPES = ("rademacher", "mammen", "webb", "normal")

_SQRT5 = math.sqrt(5.0)
_MAMMEN = np.array([-(_SQRT5 - 1) / 2, (_SQRT5 + 1) / 2])
_MAMMEN_P_LOW = (_SQRT5 + 1) / (2 * _SQRT5)
_SIGNS = 2.0 * ((np.arange(256)[:, None] >> np.arange(7, -1, -1)[None, :]) & 1) - 1.0
_WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
#: two-point weights: (low value, high value, probability of the high value)
TWO_POINT = {"rademacher": (-1.0, 1.0, 0.5), "mammen": (_MAMMEN[0], _MAMMEN[1], 1.0 - _MAMMEN_P_LOW)}


def draws(kind: str, n_clusters: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
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
    return draws(kind, n_clusters, n_draws, rng).T


def enumeration(n_clusters: int, start: int, stop: int, kind: str = "rademacher") -> np.ndarray:
    """Draw-major rows ``start..stop-1`` of every two-point weight vector: bit
    ``g`` of ``j`` (first cluster most significant) picks the high value."""
    j = np.arange(start, stop, dtype=np.int64)
    shifts = np.arange(n_clusters - 1, -1, -1, dtype=np.int64)
    low, high, _ = TWO_POINT[kind]
    return np.where((j[:, None] >> shifts[None, :]) & 1, high, low)


def enumeration_probabilities(n_clusters: int, kind: str) -> np.ndarray:
    """Probability of each of the ``2^G`` enumerated draws (``p^k (1-p)^(G-k)``,
    ``k`` high values): all ``2^-G`` for Rademacher, unequal for Mammen."""
    j = np.arange(2**n_clusters, dtype=np.int64)
    k = ((j[:, None] >> np.arange(n_clusters, dtype=np.int64)[None, :]) & 1).sum(axis=1)
    p = TWO_POINT[kind][2]
    return p**k * (1.0 - p) ** (n_clusters - k)


def enumeration_weights(n_clusters: int, start: int, stop: int) -> np.ndarray:
    """Columns ``start..stop-1`` of the matrix of all ``2^G`` Rademacher sign vectors.

    Column ``j`` is the binary expansion of ``j`` with the first cluster as the
    most significant bit and 0 -> -1 (the order of ``itertools.product([-1, 1],
    repeat=G)``).
    """
    return enumeration(n_clusters, start, stop).T


_PLUS_MINUS = np.array([-1.0, 1.0])


#: a packed block of at most this many weights is unpacked whole, once
#: (one byte per weight), instead of one draw's bits at a time per range
_UNPACK_WHOLE = 1 << 23


class WeightBlock:
    """The draw-major ``B x G`` weights of one block, served by ranges of clusters.

    With many clusters a block is large (64 draws x 1M clusters is 512 MB of
    float64), so the products with the weights run over cluster ranges of
    ``WildBootTuning.chunk_weights`` cells. Rademacher weights stay packed as the block's
    random bytes (one bit per weight); a block of at most ``_UNPACK_WHOLE``
    weights is unpacked to one byte per weight once, larger ones one range
    at a time. Other weights are held dense, as drawn.
    """

    def __init__(self, n_draws: int, n_clusters: int, *, dense: np.ndarray | None = None,
                 bits: np.ndarray | None = None):
        self.n, self.G = n_draws, n_clusters
        self.dense, self.bits = dense, bits
        self._bytes: np.ndarray | None = None

    def ranges(self, cells: int) -> list[tuple[int, int]]:
        """Cluster ranges ``[g0, g1)`` of at most ``cells`` cells each."""
        width = max(1, cells // max(self.n, 1))
        return [(g0, min(g0 + width, self.G)) for g0 in range(0, self.G, width)]

    def constant_sign(self) -> np.ndarray:
        """Per draw: the sign of its weights if all of them are equal, else 0.

        Under WCR such a draw rescales the restricted residuals, so its
        bootstrap t is exactly +-t at every null value (a tie by construction)."""
        if self.dense is not None:
            first = self.dense[:, 0]
            same = (self.dense == first[:, None]).all(axis=1)
            return np.where(same, np.sign(first), 0.0)
        # bit j * G of the bytes is draw j's first weight (most significant bit first)
        pos = np.arange(self.n, dtype=np.int64) * self.G
        first = (self.bits[pos >> 3] >> (7 - (pos & 7)).astype(np.uint8)) & 1
        same = np.ones(self.n, dtype=bool)
        for g0, g1 in self.ranges(1 << 20):
            same &= (self._signs(g0, g1) == first[:, None]).all(axis=1)
            if not same.any():  # with many clusters: decided by the first range
                break
        return np.where(same, _PLUS_MINUS[first], 0.0)

    def densify(self) -> "WeightBlock":
        """The block with every weight unpacked at once (for callers that use it many times)."""
        if self.dense is not None:
            return self
        return WeightBlock(self.n, self.G, dense=self.cols(0, self.G))

    def _signs(self, g0: int, g1: int) -> np.ndarray:
        """The packed weights of clusters ``g0..g1-1`` as 0/1 bytes (``B x (g1 - g0)``)."""
        if self.n * self.G <= _UNPACK_WHOLE:
            if self._bytes is None:
                self._bytes = np.unpackbits(self.bits, count=self.n * self.G).reshape(self.n, self.G)
            return self._bytes[:, g0:g1]
        width = g1 - g0
        signs = np.empty((self.n, width), dtype=np.uint8)
        for j in range(self.n):
            # bit j * G + g of the block's bytes is weight (j, g), most significant bit first
            s = j * self.G + g0
            signs[j] = np.unpackbits(self.bits[s >> 3:((s + width - 1) >> 3) + 1], count=(s & 7) + width)[s & 7:]
        return signs

    def cols(self, g0: int, g1: int) -> np.ndarray:
        """The weights of clusters ``g0..g1-1`` (``B x (g1 - g0)``, C order)."""
        if self.dense is not None:
            return np.ascontiguousarray(self.dense[:, g0:g1])
        # 2 b - 1 in place: exact, and ~4x faster than a table lookup
        V = self._signs(g0, g1).astype(np.float64)
        V *= 2.0
        V -= 1.0
        return V


def rademacher_block(n_clusters: int, n_draws: int, rng: np.random.Generator) -> WeightBlock:
    """The weights :func:`draws` makes from ``rng``, kept as packed bits."""
    bits = np.frombuffer(rng.bytes((n_clusters * n_draws + 7) // 8), dtype=np.uint8)
    return WeightBlock(n_draws, n_clusters, bits=bits)
