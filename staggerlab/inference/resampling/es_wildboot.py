"""Wild cluster bootstrap of a whole event study: every lead and lag, every
aggregate, the joint pre-trend test and a sup-t simultaneous band, from one
set of draws.

Dynamic TWFE and Sun-Abraham event-study coefficients are linear
combinations ``c'beta`` of the coefficients of one regression (TWFE: the
relative-period dummies themselves; Sun-Abraham: cohort-share averages of
the cohort x period dummies), and so are their aggregates. The bootstrap of
each combination is :func:`~staggerlab.inference.resampling.wildboot.wildboot`'s
algebra with the tested column ``a = A e_p`` replaced by ``a = A c``
(``wildboot_algebra.algebra(contrast=...)``); every combination is fed the
same weights (``SharedRunner``), so for a coefficient the result is the one
``wildboot`` gives on it with the same seed.

* Per coefficient and aggregate: WCR (null ``c'beta = 0`` imposed; intervals
  by test inversion, each null value re-imposed) or WCU p-values and intervals.
* Sup-t band (Montiel Olea and Plagborg-Moller 2019): with WCU bootstrap t's
  ``t*_k = (c_k'beta* - c_k'beta) / se*_k`` (each draw's own CRV1 se), the
  critical value is the ``level`` quantile of ``max_k |t*_k|`` over the band's
  periods, and the band is ``estimate_k +- crit * se_k``.
* Imputation event studies (not regression coefficients, but linear in the
  outcome): WCR and WCU for every coefficient and the four aggregates, from
  per-cluster pieces built in one pass over the rows
  (``es_wildboot_imputation``).
* Callaway-Sant'Anna (``method="cs"``): its own multiplier bootstrap of the
  influence functions (did's ``mboot``), summarised the same way from one set
  of multiplier draws (IQR standard errors, symmetric percentile-t).
* Joint pre-trend test: the Wald statistic ``W = b' V^-1 b`` of the leads
  (``V`` their CRV1 covariance, as :meth:`EventStudyResult.pretrend_test`)
  against its WCU distribution ``W* = d*' V^-1 d*``, ``d* = b* - b`` (the
  weight matrix is held at ``V``; the per-draw covariance of several
  coefficients is not formed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from ..._seed import SeedLike, resolve_entropy
from ..._validate import check_alternative, check_draws, check_level
from ...errors import WildBootError
from ..results import Result
from .es_wildboot_types import TypedBatchRunner, cluster_types
from .wildboot import (
    ALTERNATIVES,
    WildBootTuning,
    boot_inference,
    draw_plan,
    run_draws,
)
from .wildboot_algebra import BatchRunner, Runner, SharedRunner, algebras, batchable
from .wildboot_design import boot_clusters, boot_design
from .wildboot_weights import WEIGHT_TYPES, enumeration_probabilities

__all__ = ["event_study_wildboot", "EventStudyBootResult", "BootAggregate"]

#: largest design (bytes) whose row chunks are kept for all the combinations' passes
_KEEP_BLOCKS_BYTES = 1 << 28
#: bootstrap Wald statistics this close (relative) to the observed one count as ties
_TIE_RTOL = 1e-10


@dataclass(eq=False, repr=False)
class BootAggregate(Result):
    """Bootstrap inference on one aggregate of an event study.

    Attributes
    ----------
    kind : str
        ``"simple"``, ``"dynamic"`` or ``"group"``.
    estimate, se : float
        The aggregate and its CRV1 standard error.
    pvalue : float
        Bootstrap p-value of ``aggregate = 0``.
    confint : tuple of float or None
        Test-inversion interval (None if not asked for).
    """

    kind: str
    estimate: float
    se: float
    pvalue: float
    confint: tuple[float, float] | None

    def tidy(self) -> pl.DataFrame:
        """One row: ``kind, estimate, se, pvalue, ci_low, ci_high``."""
        lo, hi = self.confint if self.confint is not None else (None, None)
        return pl.DataFrame({"kind": [self.kind], "estimate": [self.estimate], "se": [self.se],
                             "pvalue": [self.pvalue], "ci_low": [lo], "ci_high": [hi]},
                            schema_overrides={"ci_low": pl.Float64, "ci_high": pl.Float64})

    def summary(self) -> str:
        """Printable line."""
        ci = "" if self.confint is None else f", CI [{self.confint[0]:.5g}, {self.confint[1]:.5g}]"
        return f"Aggregate ({self.kind}): {self.estimate:.5f} (se {self.se:.5f}), bootstrap p = {self.pvalue:.4f}{ci}"


@dataclass(eq=False, repr=False)
class EventStudyBootResult(Result):
    """Result of the wild cluster bootstrap of an event study.

    Attributes
    ----------
    rel_time, estimate, se : ndarray
        Relative periods, estimates and CRV1 standard errors (as the event study).
    pvalue : ndarray
        Bootstrap p-value of each coefficient being zero.
    ci_low, ci_high : ndarray or None
        Test-inversion intervals (None if ``confint=False``).
    band_low, band_high : ndarray
        Sup-t simultaneous band; NaN-free on the band's periods, and null in
        :meth:`tidy` outside them (the leads when ``band="post"``).
    band_crit : float
        The band's critical value (the ``level`` quantile of ``max |t*|``).
    band : {"post", "all"}
        Periods the band covers jointly.
    pretrend_pvalue : float or None
        Bootstrap p-value of the joint Wald test that every lead is zero (None
        without leads).
    pretrend_wald : float or None
        Its Wald statistic.
    unbounded : ndarray of bool
        Per coefficient: whether its interval is unbounded (too few distinct
        draws for the level; see :func:`wildboot`).
    level : float
    draws : int
    notes : list of str
    refs : tuple of int
        The event study's reference (normalised) periods.
    """

    rel_time: np.ndarray
    estimate: np.ndarray
    se: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None
    band_low: np.ndarray
    band_high: np.ndarray
    band_mask: np.ndarray
    band_crit: float
    band: str
    pretrend_pvalue: float | None
    pretrend_wald: float | None
    unbounded: np.ndarray
    level: float
    draws: int
    weights: str
    impose_null: bool
    full_enumeration: bool
    n_bootclusters: int
    method: str
    ref: int
    aggregates: dict[str, BootAggregate]
    tstar: np.ndarray = field(repr=False)
    notes: list[str] = field(default_factory=list)
    refs: tuple[int, ...] = ()
    _pfuns: list[Callable[[float], float] | None] = field(default_factory=list, repr=False)

    @property
    def bootstrap_type(self) -> str:
        """``"WCR"`` or ``"WCU"`` (the band and the pre-trend test are WCU either way)."""
        return "WCR" if self.impose_null else "WCU"

    def aggregate(self, kind: str = "simple") -> BootAggregate:
        """Bootstrap inference on the aggregate ``kind`` (``estimate``, ``pvalue``, ``confint``)."""
        if kind not in self.aggregates:
            raise WildBootError(f"aggregate {kind!r} is not available for method={self.method!r}; "
                                f"available: {sorted(self.aggregates)}")
        return self.aggregates[kind]

    def pvalue_at(self, rel_time: int, h0: float) -> float:
        """Bootstrap p-value of ``coefficient(rel_time) = h0`` from the same draws."""
        hit = np.flatnonzero(self.rel_time == rel_time)
        if hit.size == 0:
            raise WildBootError(f"rel_time {rel_time} is not estimated; estimated: {self.rel_time.tolist()}")
        f = self._pfuns[int(hit[0])] if self._pfuns else None
        if f is None:
            raise WildBootError("pvalue_at needs the per-draw pieces; rerun with confint=True")
        return f(float(h0))

    def tidy(self) -> pl.DataFrame:
        """``rel_time, estimate, se, pvalue, ci_low, ci_high, band_low, band_high`` (band null off its periods)."""
        n = self.rel_time.size
        lo = self.ci_low if self.ci_low is not None else [None] * n
        hi = self.ci_high if self.ci_high is not None else [None] * n
        blo = [float(v) if m else None for v, m in zip(self.band_low, self.band_mask)]
        bhi = [float(v) if m else None for v, m in zip(self.band_high, self.band_mask)]
        return pl.DataFrame({"rel_time": self.rel_time, "estimate": self.estimate, "se": self.se,
                             "pvalue": self.pvalue, "ci_low": lo, "ci_high": hi, "band_low": blo,
                             "band_high": bhi},
                            schema_overrides={c: pl.Float64 for c in ("ci_low", "ci_high", "band_low", "band_high")})

    def summary(self) -> str:
        """Printable table."""
        pct = int(round(self.level * 100))
        kind = "Multiplier bootstrap" if self.method == "cs" else "Wild cluster bootstrap"
        lines = [f"{kind} of an event study ({self.method}; {self.bootstrap_type}, {self.weights} "
                 f"weights, {self.draws:,} draws{', full enumeration' if self.full_enumeration else ''}; "
                 f"G = {self.n_bootclusters})",
                 f"{'rel_time':>8}{'estimate':>11}{'boot p':>9}  {pct}% CI{'':>16}{pct}% sup-t band"]
        for r in self.tidy().iter_rows(named=True):
            ci = "" if r["ci_low"] is None else f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
            bd = "" if r["band_low"] is None else f"[{r['band_low']:.4f}, {r['band_high']:.4f}]"
            lines.append(f"{r['rel_time']:>8}{r['estimate']:>11.5f}{r['pvalue']:>9.4f}  {ci:<24}{bd}")
        lines.append(f"sup-t critical value {self.band_crit:.4f} over the {self.band} periods")
        if self.pretrend_pvalue is not None:
            lines.append(f"joint pre-trend Wald {self.pretrend_wald:.4f}, bootstrap p = {self.pretrend_pvalue:.4f}")
        lines.extend(a.summary() for a in self.aggregates.values())
        lines.extend(f"Note: {n}" for n in self.notes)
        return "\n".join(lines)

    def plot(self, path: str | None = None, **kwargs: Any) -> Any:
        """Event study with bootstrap intervals and the sup-t band (see
        :func:`staggerlab.plots.event_study.plot_event_study_band`)."""
        from ...plots.event_study import plot_event_study_band

        return plot_event_study_band(self, path=path, **kwargs)


def _quantile(x: np.ndarray, prob: np.ndarray, level: float) -> float:
    """The smallest ``x`` whose (probability-weighted) share of draws at or below it is >= ``level``."""
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(prob[order]) / prob.sum()
    return float(x[order][min(int(np.searchsorted(cum, level * (1 - 1e-12))), x.size - 1)])


def _band_mask(es: Any, band: str) -> np.ndarray:
    mask = es.rel_time >= 0 if band == "post" else np.ones(es.rel_time.size, dtype=bool)
    if not mask.any():
        raise WildBootError("no post-treatment period (rel_time >= 0) is estimated; use band='all'")
    return mask


def _pretrend(es: Any, est: np.ndarray, dstar: np.ndarray, prob: np.ndarray,
              notes: list[str]) -> tuple[float | None, float | None]:
    """Bootstrap p-value and statistic of the leads' Wald test (``dstar``: draws x k deviations)."""
    lead = np.flatnonzero(es.rel_time < 0)
    if not lead.size:
        notes.append("no lead is estimated: no pre-trend test")
        return None, None
    Vp = np.linalg.pinv(es.vcov[np.ix_(lead, lead)])
    b = est[lead]
    w = float(b @ Vp @ b)
    ws = np.einsum("bi,ij,bj->b", dstar[:, lead], Vp, dstar[:, lead])
    return float(prob @ (ws >= w * (1.0 - _TIE_RTOL)) / prob.sum()), w


def _imputation(es: Any, draws: int, weights: str, impose_null: bool, alternative: str, confint: bool,
                level: float, seed: SeedLike, n_jobs: int, backend: str | None, band: str,
                weight_matrix: np.ndarray | None) -> EventStudyBootResult:
    """The imputation event study's bootstrap (``es_wildboot_imputation``)."""
    from types import SimpleNamespace

    from .es_wildboot_imputation import imputation_wildboot

    notes: list[str] = []
    r = imputation_wildboot(es, draws, weights, seed, (n_jobs, backend), weight_matrix, impose_null, notes)
    B, est, se = r["draws"], r["estimate"], r["se"]
    tests = []
    for j, (pc, wcr) in enumerate(zip(r["pieces"], r["restricted"])):
        own: list[str] = []
        cols = (*pc, r["csign"]) if wcr else (*pc, np.zeros(B))
        tests.append(boot_inference(cols, SimpleNamespace(beta_p=est[j], se=se[j]), 1.0, 0.0, wcr, wcr,
                                    alternative, confint, level, own, weights, r["n_boot"], r["enumerate_all"]))
        notes.extend(n for n in own if n not in notes)
    k = es.rel_time.size
    # WCU pieces (numerator, score sum of squares) of the coefficients: the band and the pre-trend test
    wcu = [(pc[0], pc[2] if wcr else pc[1]) for pc, wcr in zip(r["pieces"][:k], r["restricted"][:k])]
    with np.errstate(invalid="ignore", divide="ignore"):
        tstar = np.column_stack([n / np.sqrt(np.where(d > 0, d, np.nan)) for n, d in wcu])
    return _assemble(es, tests, tstar, np.column_stack([n for n, _ in wcu]), est, se, r["kinds"], r["prob"], B,
                     weights, weight_matrix, impose_null and any(r["restricted"]), r["enumerate_all"], r["n_boot"],
                     level, band, confint, notes)


def _callaway_santanna(es: Any, draws: int, weights: str, impose_null: bool, alternative: str, confint: bool,
                       level: float, seed: SeedLike, n_jobs: int, band: str,
                       weight_matrix: np.ndarray | None) -> EventStudyBootResult:
    """A Callaway-Sant'Anna event study's own multiplier bootstrap (did's
    ``mboot``: multipliers on the cluster sums of the influence functions, IQR
    standard errors) summarised as the other event studies' bootstraps:
    symmetric percentile-t p-values and intervals of every event time and
    overall aggregate, the sup-t band, the Wald pre-trend test, one set of draws."""
    from ..did.cs import CSTuning
    from ..did.cs_influence import BootSpec, iqr_se, multiplier_draws
    from ..results import critical_value

    if weights not in ("rademacher", "mammen"):
        raise WildBootError(f"the multiplier bootstrap of a Callaway-Sant'Anna event study takes weights "
                            f"'rademacher' or 'mammen', got {weights!r}")
    if alternative != "two-sided" or weight_matrix is not None:
        raise WildBootError("the multiplier bootstrap of a Callaway-Sant'Anna event study is two-sided, with "
                            "drawn multipliers (no alternative= or weight_matrix=)")
    notes = ["Callaway-Sant'Anna: multiplier bootstrap of the influence functions (unrestricted), IQR standard "
             "errors, symmetric percentile-t intervals"] if impose_null else []
    spec = BootSpec(int(draws), weights, resolve_entropy(seed), n_jobs, 1.0 - level, CSTuning().boot_multipliers)
    kinds = ("simple", "dynamic", "group", "calendar")
    aggs = [es.aggregate(kind) for kind in kinds]
    dyn = aggs[1]
    k = es.rel_time.size
    sums = np.column_stack([dyn.cluster_sums()[:, :k]] + [a.cluster_sums()[:, -1] for a in aggs])
    dstar = multiplier_draws(sums, es.n_units, spec)
    se = iqr_se(dstar)
    est = np.r_[es.coef, [a.estimate for a in aggs]]
    with np.errstate(invalid="ignore", divide="ignore"):
        tstar = dstar / se
        a = np.abs(tstar)
        t_obs = np.abs(est / se)
    ok = np.isfinite(se)
    pv = np.where(ok, (a >= t_obs * (1.0 - _TIE_RTOL)).mean(axis=0), np.nan)
    q = np.where(ok, np.quantile(np.where(ok, a, 0.0), level, axis=0), np.nan)
    lo, hi = est - q * se, est + q * se
    if not ok[:k].all():
        notes.append(f"rel_time {es.rel_time[~ok[:k]].tolist()}: no variance (the reference period), no test")
    mask = _band_mask(es, band) & ok[:k]
    z = critical_value(1.0 - level, es.df)
    crit = max(float(np.quantile(a[:, :k][:, mask].max(axis=1), level)), z)
    if crit == z:
        notes.append("the sup-t critical value is below the pointwise one: the band uses the pointwise value "
                     "(as did)")
    pre_p, pre_w = _pretrend(es, es.coef, dstar[:, :k], np.ones(dstar.shape[0]), notes)

    def pfun(j: int) -> Callable[[float], float]:
        return lambda h: float((a[:, j] >= abs((est[j] - h) / se[j]) * (1.0 - _TIE_RTOL)).mean())

    out = {kind: BootAggregate(kind, float(est[k + i]), float(se[k + i]), float(pv[k + i]),
                               (float(lo[k + i]), float(hi[k + i])) if confint else None)
           for i, kind in enumerate(kinds)}
    return EventStudyBootResult(
        rel_time=es.rel_time.copy(), estimate=es.coef.copy(), se=se[:k], pvalue=pv[:k],
        ci_low=lo[:k] if confint else None, ci_high=hi[:k] if confint else None,
        band_low=es.coef - crit * se[:k], band_high=es.coef + crit * se[:k], band_mask=mask, band_crit=crit,
        band=band, pretrend_pvalue=pre_p, pretrend_wald=pre_w, unbounded=np.zeros(k, dtype=bool), level=level,
        draws=int(draws), weights=weights, impose_null=False, full_enumeration=False,
        n_bootclusters=int(sums.shape[0]), method="cs", ref=es.ref, aggregates=out, tstar=tstar[:, :k],
        notes=notes, refs=(es.ref,) if es.base_period == "universal" else (),
        _pfuns=[pfun(j) if ok[j] else None for j in range(k)])


def _combinations(es: Any) -> tuple[Any, list[str], np.ndarray, Callable[[str], np.ndarray], tuple[str, ...]]:
    """The regression behind ``es``, its coefficient names, the event-study
    coefficients and the aggregates as weights on them."""
    if es.method not in ("twfe", "sunab"):
        raise WildBootError(
            f"the bootstrap of an event study covers method='twfe', 'sunab', 'imputation' (wild) and 'cs' (its "
            f"multiplier bootstrap); method={es.method!r} keeps its own inference")
    fit = es.extra.get("fit")
    if fit is None:
        raise WildBootError(
            "this event study was fitted by the lean path (no regression design is kept, as the dense design "
            "exceeds tuning.lean_bytes); refit with event_study(..., tuning=EventStudyTuning(lean_bytes=...)) "
            "above the design's size to bootstrap it")
    if "cell_names" in es.extra:
        return fit, list(es.extra["cell_names"]), np.asarray(es.extra["cell_R"]), es.extra["cell_weights"], \
            tuple(es.extra["aggregates"])
    from ..did.relative_periods import rel_label

    names = [f"_es_{rel_label(int(r))}" for r in es.rel_time]
    return fit, names, np.eye(len(names)), es.default_weights, ("simple", "dynamic")


def event_study_wildboot(
    es: Any,
    draws: int = 9999,
    weights: str = "rademacher",
    impose_null: bool = True,
    alternative: str = "two-sided",
    confint: bool = True,
    level: float = 0.95,
    seed: SeedLike = 0,
    n_jobs: int = 1,
    backend: str | None = None,
    band: Literal["post", "all"] = "post",
    *,
    weight_matrix: np.ndarray | None = None,
    tuning: WildBootTuning = WildBootTuning(),
) -> EventStudyBootResult:
    """Wild cluster bootstrap of every coefficient and aggregate of an event study.

    Called by :func:`~staggerlab.inference.resampling.wildboot.wildboot` when
    given an event-study result; the arguments are ``wildboot``'s (see there)
    plus ``band``.

    Parameters
    ----------
    es : EventStudyResult
        A ``method="twfe"`` or ``"sunab"`` event study fitted through ``feols``
        (the clusters are the event study's), or a ``method="imputation"`` one
        (clusters nesting the units; WCR restricts each statistic's group means
        by least squares, leads are bootstrapped without restriction; aggregates
        ``simple``, ``dynamic``, ``group``, ``calendar``; see
        ``es_wildboot_imputation``), or a Callaway-Sant'Anna result (``method="cs"``): its own
        multiplier bootstrap (``weights`` ``"rademacher"`` or ``"mammen"``; the
        draws of ``event_study(..., method="cs", bootstrap=True)`` with the same
        seed, count and multipliers), with IQR standard errors, percentile-t
        p-values and intervals of every event time and of the four overall
        aggregates, and did's sup-t band (never below the pointwise critical value).
    draws, weights, impose_null, alternative, confint, level, seed, n_jobs, backend, weight_matrix, tuning
        As :func:`wildboot`; the null of every test is zero.
    band : {"post", "all"}
        Periods the sup-t band covers jointly: ``rel_time >= 0`` or every
        estimated period.

    Returns
    -------
    EventStudyBootResult

    Raises
    ------
    WildBootError
        Another method, a lean-path fit, bad options.
    """
    if weights not in WEIGHT_TYPES:
        raise WildBootError(f"weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    if band not in ("post", "all"):
        raise WildBootError(f"band must be 'post' or 'all', got {band!r}")
    check_alternative(alternative, ALTERNATIVES)
    check_level(level)
    if weight_matrix is None:
        check_draws(draws)
    gathered = "partitioned" in getattr(es, "extra", {})
    if gathered:  # rows gathered to the client: bit-identical to the in-memory event study's bootstrap
        from ..distributed.event_study import gathered_event_study

        es = gathered_event_study(es, "wildboot")
    # the products here are skinny and the machine is usually shared: extra BLAS threads only contend
    with threadpool_limits(1, user_api="blas"):
        res = _event_study_wildboot(es, draws, weights, impose_null, alternative, confint, level, seed, n_jobs,
                                    backend, band, weight_matrix, tuning)
    if gathered:
        res.notes.append("partitioned event study: rows gathered to the client, bit-identical to the in-memory "
                         "event study of the rows sorted by unit and period")
    return res


def _event_study_wildboot(es: Any, draws: int, weights: str, impose_null: bool, alternative: str, confint: bool,
                          level: float, seed: SeedLike, n_jobs: int, backend: str | None, band: str,
                          weight_matrix: np.ndarray | None, tuning: WildBootTuning) -> EventStudyBootResult:
    if es.method == "cs":
        return _callaway_santanna(es, draws, weights, impose_null, alternative, confint, level, seed, n_jobs, band,
                                  weight_matrix)
    if es.method == "imputation":
        return _imputation(es, draws, weights, impose_null, alternative, confint, level, seed, n_jobs, backend,
                           band, weight_matrix)
    fit, names, R, agg_weights, kinds = _combinations(es)
    d = fit.design
    missing = [n for n in names if n not in d.regressors]
    if missing:  # pragma: no cover - the event study reports only kept coefficients
        raise WildBootError(f"event-study coefficients {missing} are not in the fit")
    idx = np.array([d.regressors.index(n) for n in names])

    def lift(w: np.ndarray) -> np.ndarray:
        c = np.zeros(len(d.regressors))
        c[idx] = w
        return c

    k = es.rel_time.size
    contrasts = [lift(R[i]) for i in range(k)] + [lift(agg_weights(kind)) for kind in kinds]
    notes: list[str] = []
    bc = boot_clusters(fit, None, None, notes)
    bd = boot_design(fit, int(idx[0]), bc.boot, tuning.chunk_rows)
    if bd.explicit_fe:
        notes.append(f"fixed effect(s) {bd.explicit_fe} are not nested in the bootstrap clusters; they enter the "
                     "bootstrap as regressors (exact, as with dummies)")
    parts = [(c, sign) for c, sign, _ in bc.parts]
    # the design's chunks (with the loose FEs' dummies) are built once for every combination when small
    n_cols = d.Xw.shape[1] + (bd.keep_d.size if bd.dummies is not None else 0)
    blocks = list(bd.blocks()) if 8 * d.nobs * n_cols <= _KEEP_BLOCKS_BYTES else None
    algs = algebras(bd, bc.boot, bc.n_boot, parts, bc.adj, impose_null, [(c, float(c @ fit.beta)) for c in contrasts],
                    blocks)
    types = cluster_types(blocks if blocks is not None else bd.blocks(), bc.boot, bc.n_boot, bd.A.shape[0]) \
        if batchable(algs) else None
    del blocks
    enumerate_all, B, wm = draw_plan(weights, bc.n_boot, draws, weight_matrix, notes)
    entropy = resolve_entropy(seed)

    # the pieces of every null value of every combination: WCR tests and
    # intervals from them, and the WCU t's too (the pieces at the estimate)
    runners = [Runner(alg, weights, entropy, enumerate_all, wm, True, tuning.chunk_weights) for alg in algs]
    if types is not None:  # few design types of cluster: O(types x k) per draw and combination
        shared: Any = TypedBatchRunner(algs, runners[0], *types)
    else:
        shared = BatchRunner(algs, runners[0]) if batchable(algs) else SharedRunner(runners)
    res = run_draws(shared, B, bc.n_boot, n_jobs, backend)
    cols = [tuple(np.concatenate([blk[j][q] for blk in res]) for q in range(6)) for j in range(len(algs))]
    no_ties = np.zeros(B)
    cols_wcu = [(c[0], c[2], no_ties) for c in cols]

    tests: list[tuple] = []
    for j, alg in enumerate(algs):
        own: list[str] = []
        pieces = cols[j] if impose_null else cols_wcu[j]
        tests.append(boot_inference(pieces, alg, bc.adj, 0.0, impose_null, impose_null, alternative, confint,
                                    level, own, weights, bc.n_boot, enumerate_all))
        notes.extend(n for n in own if n not in notes)

    # sup-t band from the WCU t's of the event-study coefficients
    with np.errstate(invalid="ignore", divide="ignore"):
        tstar = np.column_stack([num / np.sqrt(np.where(den > 0, bc.adj * den, np.nan))
                                 for num, den in (c[:2] for c in cols_wcu[:k])])
    est = np.array([alg.beta_p for alg in algs])
    se = np.array([alg.se for alg in algs])
    # enumerated Mammen draws count with their probabilities
    prob = enumeration_probabilities(bc.n_boot, weights) if enumerate_all and weights == "mammen" else np.ones(B)
    return _assemble(es, tests, tstar, np.column_stack([c[0] for c in cols_wcu[:k]]), est, se, kinds, prob, B,
                     weights, weight_matrix, impose_null, enumerate_all, bc.n_boot, level, band, confint, notes)


def _assemble(es: Any, tests: list[tuple], tstar: np.ndarray, dstar: np.ndarray, est: np.ndarray, se: np.ndarray,
              kinds: tuple[str, ...], prob: np.ndarray, B: int, weights: str, weight_matrix: np.ndarray | None,
              impose_null: bool, enumerate_all: bool, n_boot: int, level: float, band: str, confint: bool,
              notes: list[str]) -> EventStudyBootResult:
    """The result from every statistic's ``boot_inference`` (the k coefficients,
    then the aggregates ``kinds``), the coefficients' WCU t's ``tstar`` and
    deviations ``dstar`` (draws x k; band and pre-trend test), the estimates
    and standard errors of every statistic and the draws' probabilities."""
    k = es.rel_time.size
    mask = _band_mask(es, band)
    tmax = np.abs(tstar[:, mask]).max(axis=1)
    ok = np.isfinite(tmax)
    crit = _quantile(tmax[ok], prob[ok], level)
    # joint pre-trend test against the WCU distribution of the Wald form
    pre_p, pre_w = _pretrend(es, est[:k], dstar, prob, notes)
    ci = [t[2] for t in tests[:k]]
    aggs = {kind: BootAggregate(kind, float(est[k + i]), float(se[k + i]), tests[k + i][1], tests[k + i][2])
            for i, kind in enumerate(kinds)}
    e, s = est[:k], se[:k]
    return EventStudyBootResult(
        rel_time=es.rel_time.copy(), estimate=e, se=s, pvalue=np.array([t[1] for t in tests[:k]]),
        ci_low=None if not confint else np.array([c[0] if c else math.nan for c in ci]),
        ci_high=None if not confint else np.array([c[1] if c else math.nan for c in ci]),
        band_low=e - crit * s, band_high=e + crit * s, band_mask=mask, band_crit=crit, band=band,
        pretrend_pvalue=pre_p, pretrend_wald=pre_w, unbounded=np.array([t[4] for t in tests[:k]]), level=level, draws=B,
        weights=weights if weight_matrix is None else "injected", impose_null=impose_null,
        full_enumeration=enumerate_all, n_bootclusters=n_boot, method=es.method, ref=es.ref,
        aggregates=aggs, tstar=tstar, notes=notes, refs=tuple(es.refs), _pfuns=[t[3] for t in tests[:k]])
