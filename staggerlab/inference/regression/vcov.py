"""Variance estimators with pyfixest's default small-sample corrections.

Every covariance in the package is assembled from this module: the
small-sample factors (:func:`ssc_factor`, :func:`residual_variance`), the
parameter count they use (:func:`ssc_df_k`), the one-/two-way cluster parts
(:func:`cluster_parts`), the cluster-spec parser (:func:`parse_vcov`,
:func:`parse_clusters`) and the iid / hetero / CRV1 dispatch
(:func:`sandwich`). Procedures with their own scores (stacked M-estimators,
per-draw statistics) take the factor and the parts from here and only form
their own meat.

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
from typing import Any, Callable, Sequence, Union

import numpy as np

from ...errors import FormulaError, VcovError
from ...kernels import cluster as kcl
from ...kernels.cluster import cluster_score_sums, cluster_sums
from .formula import split_top, unquote

__all__ = [
    "VcovSpec", "parse_vcov", "parse_clusters", "ssc_factor", "residual_variance", "ssc_df_k", "fe_df",
    "nested_in", "combine_codes", "cluster_parts", "crv_meat", "clustered_meat", "sandwich",
    "vcov_iid", "vcov_hetero", "vcov_crv1", "vcov_crv3", "jackknife_nested",
]

#: Scores: an N x k array, or a pair ``(X, u)`` standing for ``X * u[:, None]``.
Scores = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]
#: One part of a clustered meat: ``(codes, sign, number of clusters)``.
ClusterPart = tuple[np.ndarray, float, int]


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


# ------------------------------------------------------------------ parsing
def parse_clusters(cl: str | Sequence[str]) -> tuple[str, ...]:
    """Cluster column names from ``"c"``, ``"c1+c2"`` (or fixest's ``"c1^c2"``) or a list of those.

    Parameters
    ----------
    cl : str or sequence of str
        One spec or several; each may join two names with ``+`` or ``^``.
        Names with spaces or symbols are quoted in backticks (``"`firm id`"``).

    Returns
    -------
    tuple of str
        One or two column names.

    Raises
    ------
    VcovError
        If the spec does not name one or two columns.
    """
    specs = [cl] if isinstance(cl, str) else list(cl)
    try:
        cols = tuple(unquote(c) for s in specs for _, c in split_top(str(s), "+^") if c)
    except FormulaError as exc:
        raise VcovError(f"cluster spec {cl!r}: {exc}") from None
    if not 1 <= len(cols) <= 2:
        raise VcovError(f"cluster spec {cl!r} must name one or two columns ('c' or 'c1+c2')")
    return cols


def parse_vcov(vcov: Any, columns: Sequence[str] = ()) -> VcovSpec:
    """Parse ``"iid"``, ``"hetero"``/``"HC1"``, ``{"CRV1": "c"}``, ``{"CRV1": "c1+c2"}``, ``{"CRV3": "c"}``.

    A cluster spec that is exactly one of ``columns`` (the data's) names that
    column, whatever characters it holds (``{"CRV1": "region+year"}``).
    """
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
        cols = (cl,) if isinstance(cl, str) and cl in columns else parse_clusters(cl)
        if kind == "CRV3" and len(cols) != 1:
            raise VcovError("CRV3 supports one-way clustering only")
        return VcovSpec(kind, cols)
    raise VcovError(f"cannot parse vcov={vcov!r}")


# ------------------------------------------------------- small-sample rules
def ssc_factor(kind: str, N: int, df_k: int, G: int | None = None) -> float:
    """pyfixest's small-sample factor multiplying ``bread @ meat @ bread``.

    Parameters
    ----------
    kind : {"hetero", "HC1", "CRV1", "CRV3"}
        The variance type. The iid variance has no multiplicative factor of
        its own; its residual variance is :func:`residual_variance`.
    N : int
        Number of observations.
    df_k : int
        Parameters counted by the correction (:func:`ssc_df_k`).
    G : int, optional
        Smallest number of clusters (CRV only).

    Returns
    -------
    float
        ``N / (N - df_k)`` (HC1) or ``(N-1)/(N-df_k) * G/(G-1)`` (CRV).
    """
    if kind in ("hetero", "HC1"):
        return N / (N - df_k)
    if kind in ("CRV1", "CRV3"):
        if G is None:
            raise VcovError(f"the {kind} factor needs the number of clusters G")
        # evaluated left to right as everywhere before: the last bit of every SE depends on it
        return (N - 1) / (N - df_k) * G / (G - 1)
    raise VcovError(f"no small-sample factor for vcov kind {kind!r}; iid uses residual_variance")


def residual_variance(ssr: Any, N: int, df_k: int) -> Any:
    """The iid residual variance ``u'u / (N - df_k)`` (``ssr`` a float or an array of them)."""
    return ssr / (N - df_k)


def nested_in(fe: np.ndarray, cl: np.ndarray) -> bool:
    """Whether every level of ``fe`` lies within a single cluster."""
    n_fe = int(fe.max()) + 1
    first = np.full(n_fe, -1, dtype=np.int64)
    first[fe] = cl  # any row's cluster for each level
    return bool(np.all(first[fe] == cl))


def fe_df(k: int, levels: Sequence[int], nested: Sequence[bool] = ()) -> int:
    """pyfixest's ``df_k`` (k_fixef="nonnested") from the FE level counts and nesting flags."""
    if not levels:
        return k
    k_fe_adj = sum(levels) - (len(levels) - 1)
    nested = list(nested) or [False] * len(levels)
    n_nested = sum(nested)
    if n_nested == 0:
        return k + k_fe_adj
    return k + k_fe_adj - sum(g for g, f in zip(levels, nested) if f) + n_nested


def ssc_df_k(
    k: int,
    fe_codes: Sequence[np.ndarray] = (),
    levels: Sequence[int] | None = None,
    clusters: Sequence[np.ndarray] = (),
    known_nested: Sequence[bool] = (),
) -> int:
    """Parameters counted by the small-sample factor: ``k`` plus the FE's, FE nested in a cluster excepted.

    Parameters
    ----------
    k : int
        Number of coefficients.
    fe_codes : sequence of ndarray
        Dense codes of each absorbed fixed effect on the estimation rows.
    levels : sequence of int, optional
        Level counts of the fixed effects (default: from the codes).
    clusters : sequence of ndarray
        Dense cluster codes (one or two) for a CRV variance; empty for
        iid / hetero, where no FE counts as nested. With two, an FE nested in
        their intersection counts as nested too.
    known_nested : sequence of bool, optional
        FEs the caller already knows to be nested (e.g. the cluster column
        itself); they are not tested again.

    Returns
    -------
    int
        pyfixest's ``df_k`` (:func:`fe_df`).
    """
    if not len(fe_codes):
        return fe_df(k, [])
    if levels is None:
        levels = [int(c.max()) + 1 for c in fe_codes]
    nested = fe_nesting(fe_codes, clusters, known_nested) if len(clusters) else []
    return fe_df(k, levels, nested)


def fe_nesting(
    fe_codes: Sequence[np.ndarray], clusters: Sequence[np.ndarray], known_nested: Sequence[bool] = ()
) -> list[bool]:
    """Whether each fixed effect is nested in the clustering (the rule of :func:`ssc_df_k`).

    An FE is nested when every one of its levels lies within one cluster of
    any of the (one or two) clusterings or, with two, of their intersection;
    ``known_nested`` marks FEs the caller knows to be nested (not tested).
    """
    cls = list(clusters)
    if len(cls) == 2:
        cls.append(combine_codes(*cls))
    known = list(known_nested) or [False] * len(fe_codes)
    return [bool(kn) or any(nested_in(codes, c) for c in cls) for codes, kn in zip(fe_codes, known)]


# --------------------------------------------------------------- the meats
def combine_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense codes of the intersection of two clusterings."""
    return np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b, return_inverse=True)[1].astype(np.int64)


def cluster_parts(clusters: Sequence[np.ndarray]) -> list[ClusterPart]:
    """The signed parts of a one- or two-way clustered meat.

    Parameters
    ----------
    clusters : sequence of ndarray
        Dense codes of one or two clusterings.

    Returns
    -------
    list of (codes, sign, G)
        ``[(c, +1, G)]`` one-way; ``[(c1, +1, G1), (c2, +1, G2), (c1 x c2, -1, G12)]``
        two-way (``V1 + V2 - V12``). The factor's ``G`` is the smallest ``G``.
    """
    if len(clusters) == 1:
        signed = [(clusters[0], 1.0)]
    elif len(clusters) == 2:
        signed = [(clusters[0], 1.0), (clusters[1], 1.0), (combine_codes(*clusters), -1.0)]
    else:
        raise VcovError(f"clustering is one- or two-way, got {len(clusters)} cluster variables")
    return [(c, s, int(c.max()) + 1) for c, s in signed]


def crv_meat(scores: Scores, codes: np.ndarray, n_clusters: int) -> np.ndarray:
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


def clustered_meat(scores: Scores, parts: Sequence[ClusterPart]) -> np.ndarray:
    """The signed sum of the parts' meats (:func:`cluster_parts`)."""
    return sum(sign * crv_meat(scores, c, g) for c, sign, g in parts)


# ------------------------------------------------------------ the variances
def vcov_iid(bread: np.ndarray, uw: np.ndarray, N: int, df_k: int) -> np.ndarray:
    """Homoskedastic variance ``u'u / (N - df_k) * (X'X)^-1``."""
    return bread * residual_variance(float(uw @ uw), N, df_k)


def vcov_hetero(bread: np.ndarray, scores: np.ndarray, N: int, df_k: int) -> np.ndarray:
    """HC1 variance."""
    meat = scores.T @ scores
    return ssc_factor("hetero", N, df_k) * (bread @ meat @ bread)


def vcov_crv1(
    bread: np.ndarray,
    scores: Scores,
    clusters: Sequence[np.ndarray],
    N: int,
    df_k: int,
    *,
    small_sample: bool = True,
) -> tuple[np.ndarray, int]:
    """CRV1 (one- or two-way). Returns ``(V, G)`` with ``G`` the smallest cluster count.

    ``scores`` as in :func:`crv_meat`; ``small_sample=False`` leaves out the
    small-sample factor.
    """
    parts = cluster_parts(clusters)
    G = min(g for _, _, g in parts)
    if G < 2:
        raise VcovError(f"cluster-robust variance needs at least 2 clusters, found {G}")
    meat = clustered_meat(scores, parts)
    if not small_sample:
        return bread @ meat @ bread, G
    return ssc_factor("CRV1", N, df_k, G) * (bread @ meat @ bread), G


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
    return ssc_factor("CRV3", N, df_k, G) * V, G


def jackknife_nested(X: np.ndarray, u: np.ndarray, bread: np.ndarray, cluster: np.ndarray,
                     contrasts: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-cluster-out coefficient changes ``b_-g - b`` of an OLS fit, without refits.

    Exact when ``X`` and ``u`` are the regressors and residuals after
    absorbing only fixed effects nested in the clusters (a nested FE's
    demeaning is within clusters, so removing a cluster leaves every other
    row's demeaned values unchanged): ``b_-g - b = -(X'X - X_g'X_g)^-1 X_g'u_g``,
    computed as ``-(X'X)^-1 X_g' (I - H_gg)^-1 u_g`` with ``H_gg = X_g (X'X)^-1 X_g'``
    (``= Q_g Q_g'`` with ``Q = X chol((X'X)^-1)``), cluster by cluster in a kernel.
    Fixed effects not nested in the clusters must be columns of ``X``.

    Parameters
    ----------
    X : ndarray, N x k
    u : ndarray, N
        Residuals of the fit (``X'u = 0``).
    bread : ndarray, k x k
        ``(X'X)^-1``.
    cluster : ndarray of int
        Cluster code (0 .. G-1) of every row.
    contrasts : ndarray, k x m, optional
        Return the changes of ``contrasts' b`` only (``D @ contrasts``), at
        ``m / k`` of the cost of the full ``D``.

    Returns
    -------
    ndarray, G x k (G x m with ``contrasts``)
        Row ``g``: ``b_-g - b``. ``adj * D.T @ D`` (``adj`` from :func:`ssc_factor`) is the CRV3
        covariance of :func:`vcov_crv3`.

    Raises
    ------
    VcovError
        A coefficient rests on one cluster alone (``I - H_gg`` singular): it has no
        leave-that-cluster-out estimate.
    """
    G = int(cluster.max()) + 1
    if G < 2:
        raise VcovError(f"CRV3 needs at least 2 clusters, found {G}")
    order = np.argsort(cluster, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(cluster, minlength=G))]
    try:
        root = np.linalg.cholesky(bread)
    except np.linalg.LinAlgError:
        raise VcovError("CRV3: (X'X)^-1 is not positive definite (collinear regressors)") from None
    Q = X @ root
    A = X @ (bread if contrasts is None else bread @ contrasts)
    D, pivot = kcl.jackknife_rows(Q, A, u, order, starts)
    # I - H_gg is positive definite unless a coefficient rests on cluster g alone; its
    # Cholesky pivots bound its smallest eigenvalue from above, so a tiny pivot flags it
    if pivot.min() <= 1e-10:
        raise VcovError("CRV3: a coefficient is identified by one cluster alone, so leaving it out is "
                        "not defined")
    return D


def sandwich(
    bread: np.ndarray,
    scores: Scores,
    spec: VcovSpec | str,
    clusters: Sequence[np.ndarray],
    N: int,
    df_k: int,
    *,
    small_sample: bool = True,
) -> tuple[np.ndarray, int, int | None]:
    """The iid / hetero / CRV1 variance of a linear estimator ``bread @ X'y``.

    Parameters
    ----------
    bread : ndarray
        ``(X'X)^-1`` (k x k), or the estimator's analogue.
    scores : ndarray or (X, u)
        The scores, N x k, or the pair ``(X, u)`` standing for ``X * u[:, None]``;
        iid needs the pair (it uses ``u`` only).
    spec : VcovSpec or str
        The variance type (``"iid"``, ``"hetero"`` or ``"CRV1"``).
    clusters : sequence of ndarray
        Dense cluster codes, one or two (CRV1 only).
    N : int
        Number of observations.
    df_k : int
        Parameters counted by the small-sample factor (:func:`ssc_df_k`).
    small_sample : bool, default True
        False leaves the hetero / CRV meat unscaled (``bread @ meat @ bread``),
        as score statistics (the Kleibergen-Paap LM) want.

    Returns
    -------
    V : ndarray
        The k x k variance.
    df_t : int
        Degrees of freedom of its t tests: ``N - df_k``, or ``G - 1`` with CRV.
    G : int or None
        The smallest number of clusters (CRV only).
    """
    kind = spec.kind if isinstance(spec, VcovSpec) else spec
    if kind == "iid":
        if not isinstance(scores, tuple) or not small_sample:
            raise VcovError("the iid sandwich needs scores as the pair (X, u) and the small-sample variance")
        return vcov_iid(bread, scores[1], N, df_k), N - df_k, None
    if kind in ("hetero", "HC1"):
        sc = scores[0] * scores[1][:, None] if isinstance(scores, tuple) else scores
        if not small_sample:
            return bread @ (sc.T @ sc) @ bread, N - df_k, None
        return vcov_hetero(bread, sc, N, df_k), N - df_k, None
    if kind != "CRV1":
        raise VcovError(f"sandwich computes iid, hetero and CRV1 variances, not {kind!r}")
    V, G = vcov_crv1(bread, scores, clusters, N, df_k, small_sample=small_sample)
    return V, G - 1, G
