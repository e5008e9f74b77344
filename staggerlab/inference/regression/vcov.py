"""Variance estimators with pyfixest's default small-sample corrections.

Conventions (pyfixest 0.60 ``ssc()`` defaults, which follow fixest):
``df_k = k + sum(levels) - (n_fe - 1)``, minus the levels of every FE nested
in a cluster variable plus one per such FE (CRV only);
iid: ``s2 (X'X)^-1`` with ``s2 = u'u / (N - df_k)``;
hetero (HC1): ``N / (N - df_k)``; CRV1: ``(N-1)/(N-df_k) * G/(G-1)`` with
``G`` the smallest number of clusters, two-way as ``V1 + V2 - V12``;
t-tests with ``N - df_k`` (iid/hetero) or ``G - 1`` (CRV) degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import VcovError
from ...kernels.cluster import cluster_score_sums, cluster_sums

__all__ = ["VcovSpec", "parse_vcov", "fe_df", "nested_in", "vcov_iid", "vcov_hetero", "vcov_crv1", "combine_codes"]


@dataclass(frozen=True)
class VcovSpec:
    """A parsed vcov request: ``kind`` in {iid, hetero, CRV1, CRV3}, cluster columns."""

    kind: str
    clusters: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``CRV1 by firm``."""
        if self.clusters:
            return f"{self.kind} by {' + '.join(self.clusters)}"
        return {"hetero": "HC1"}.get(self.kind, self.kind)


def parse_vcov(vcov: Any) -> VcovSpec:
    """Parse ``"iid"``, ``"hetero"``/``"HC1"``, ``{"CRV1": "c"}``, ``{"CRV1": "c1+c2"}``, ``{"CRV3": "c"}``."""
    if vcov is None:
        return VcovSpec("iid")
    if isinstance(vcov, VcovSpec):
        return vcov
    if isinstance(vcov, str):
        key = vcov.strip()
        if key.lower() == "iid":
            return VcovSpec("iid")
        if key.lower() in ("hetero", "hc1"):
            return VcovSpec("hetero")
        raise VcovError(f"unknown vcov {vcov!r}; use 'iid', 'hetero', {{'CRV1': 'col'}} or {{'CRV3': 'col'}}")
    if isinstance(vcov, dict) and len(vcov) == 1:
        (kind, cl), = vcov.items()
        kind = str(kind).upper()
        if kind not in ("CRV1", "CRV3"):
            raise VcovError(f"unknown clustered vcov {kind!r}; use 'CRV1' or 'CRV3'")
        cols = tuple(c.strip() for c in str(cl).replace("^", "+").split("+") if c.strip())
        if not 1 <= len(cols) <= 2:
            raise VcovError(f"cluster spec {cl!r} must name one or two columns ('c' or 'c1+c2')")
        if kind == "CRV3" and len(cols) != 1:
            raise VcovError("CRV3 supports one-way clustering only")
        return VcovSpec(kind, cols)
    raise VcovError(f"cannot parse vcov={vcov!r}")


def combine_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense codes of the intersection of two clusterings."""
    return np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b, return_inverse=True)[1].astype(np.int64)


def nested_in(fe: np.ndarray, cl: np.ndarray) -> bool:
    """Whether every level of ``fe`` lies within a single cluster."""
    n_fe = int(fe.max()) + 1
    first = np.full(n_fe, -1, dtype=np.int64)
    first[fe] = cl  # any row's cluster for each level
    return bool(np.all(first[fe] == cl))


def fe_df(k: int, levels: Sequence[int], nested: Sequence[bool] = ()) -> int:
    """pyfixest's ``df_k`` (k_fixef="nonnested")."""
    if not levels:
        return k
    k_fe_adj = sum(levels) - (len(levels) - 1)
    nested = list(nested) or [False] * len(levels)
    n_nested = sum(nested)
    if n_nested == 0:
        return k + k_fe_adj
    return k + k_fe_adj - sum(g for g, f in zip(levels, nested) if f) + n_nested


def vcov_iid(bread: np.ndarray, uw: np.ndarray, N: int, df_k: int) -> np.ndarray:
    """Homoskedastic variance ``u'u / (N - df_k) * (X'X)^-1``."""
    return bread * (float(uw @ uw) / (N - df_k))


def vcov_hetero(bread: np.ndarray, scores: np.ndarray, N: int, df_k: int) -> np.ndarray:
    """HC1 variance."""
    meat = scores.T @ scores
    return (N / (N - df_k)) * (bread @ meat @ bread)


def crv_meat(scores: np.ndarray, codes: np.ndarray, n_clusters: int) -> np.ndarray:
    """``sum_g s_g s_g'`` with ``s_g`` the cluster sums of the scores.

    ``scores`` is an N x k array, or a pair ``(X, u)`` standing for ``X * u``
    (summed without forming the product).
    """
    if isinstance(scores, tuple):
        X, u = scores
        S = cluster_score_sums(X, u, codes, n_clusters)
    else:
        S = cluster_sums(np.ascontiguousarray(scores), codes, n_clusters)
    return S.T @ S


def vcov_crv1(
    bread: np.ndarray,
    scores: np.ndarray,
    clusters: Sequence[np.ndarray],
    N: int,
    df_k: int,
) -> tuple[np.ndarray, int]:
    """CRV1 (one- or two-way). Returns ``(V, G)`` with ``G`` the smallest cluster count.

    ``scores`` as in :func:`crv_meat`.
    """
    if len(clusters) == 1:
        parts = [(clusters[0], 1.0)]
    else:
        parts = [(clusters[0], 1.0), (clusters[1], 1.0), (combine_codes(*clusters), -1.0)]
    Gs = [int(c.max()) + 1 for c, _ in parts]
    G = min(Gs)
    if G < 2:
        raise VcovError(f"cluster-robust variance needs at least 2 clusters, found {G}")
    meat = sum(sign * crv_meat(scores, c, g) for (c, sign), g in zip(parts, Gs))
    adj = (N - 1) / (N - df_k) * G / (G - 1)
    return adj * (bread @ meat @ bread), G


def vcov_crv3(
    beta: np.ndarray,
    loo_beta: Callable[[np.ndarray], np.ndarray],
    cluster: np.ndarray,
    N: int,
    df_k: int,
) -> tuple[np.ndarray, int]:
    """CRV3 jackknife ``G-1/G``-free form used by pyfixest: ``adj * sum (b_-g - b)(b_-g - b)'``.

    ``loo_beta(mask)`` refits on the rows in ``mask`` (cluster ``g`` removed).
    """
    G = int(cluster.max()) + 1
    if G < 2:
        raise VcovError(f"CRV3 needs at least 2 clusters, found {G}")
    k = beta.size
    V = np.zeros((k, k))
    for g in range(G):
        d = loo_beta(cluster != g) - beta
        V += np.outer(d, d)
    adj = (N - 1) / (N - df_k) * G / (G - 1)
    return adj * V, G
