"""Randomization inference of a TWFE, Sun-Abraham or imputation event study:
placebo adoption times drawn by the design-respecting schemes of
:func:`placebo`, and every event-study coefficient and aggregate refitted
exactly for each draw (the imputation estimator's tables are in
``es_placebo_imputation``; the regression event studies' below).

Notation: ``F = M_u [period dummies 2..T, controls]`` (``M_u`` the unit
demeaning; ``m`` columns), ``C = F'F``, ``y~`` the residual of the outcome on
the fixed effects and controls. A draw gives unit ``i`` the adoption time
``g_i``; its dummies ``D_i`` (event times binned as the event study; for
Sun-Abraham, cohort x event time) depend on ``(i, g_i)`` only. By
Frisch-Waugh-Lovell the dummies' coefficients are ``beta = (U - E C^-1 E')^-1
s`` with, summed over the draw's treated units, ``s = sum D_i' y~_i``, ``E =
sum D_i' F_i`` and ``U = sum diag(c_i) - c_i c_i' / T_i`` (``c_i`` the counts
of unit ``i``'s rows in each dummy, ``T_i`` its rows). Those are tabulated once
per (unit, candidate adoption time), so a draw costs O(treated units x k m),
not O(rows). Each draw's event-study coefficients and aggregates are the ones
a refit of the event study on the draw reports (Sun-Abraham: cohort-share
averages; aggregates ``simple``, ``dynamic`` and, for Sun-Abraham, ``group``);
an event time no treated unit reaches in a draw has no coefficient (NaN, not
counted), and a draw that Sun-Abraham would refit on fewer cohorts (a cohort
unobserved at the reference period) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ..._parallel import run_blocks
from ..._seed import SeedLike, as_seedsequence, block_generator
from ..._validate import check_alternative, check_draws, check_level
from ...errors import ArgumentError, EventStudyError
from ...panels.adoption import adoption_times
from ..regression.rank import psd_pinv
from ..results import Result
from .placebo import SCHEMES, TIE_RTOL, clopper_pearson
from .placebo_sampler import Sampler
from .placebo_tuning import PlaceboTuning

__all__ = ["event_study_placebo", "EventStudyPlaceboResult"]

#: draws per seeded block (as :func:`placebo`)
_BLOCK = 250
#: relative size under which a draw's normal matrix counts as singular
_SINGULAR = 1e-10


@dataclass(eq=False, repr=False)
class EventStudyPlaceboResult(Result):
    """Randomization distribution of every coefficient and aggregate of an event study.

    Attributes
    ----------
    rel_time, estimate : ndarray
        The event study's periods and estimates.
    pvalue : ndarray
        Randomization p-value of each coefficient, ``(1 + count) / (1 + valid draws)``
        (``|placebo| >= |observed|`` two-sided; ties count as extreme).
    pvalue_ci : ndarray
        ``n x 2`` Clopper-Pearson intervals of the p-values' Monte Carlo error.
    statistics : ndarray
        ``draws x k`` placebo coefficients (NaN: an event time no treated
        unit reaches in the draw, or a draw left out; not counted).
    aggregates : dict
        ``kind -> (estimate, pvalue, (ci_low, ci_high), placebo statistics)``.
    fisher_pvalue : float
        The randomization p-value of the ``simple`` aggregate: with
        ``scheme="units"`` (adoption times permuted over all units) the timing
        Fisher randomization test of ``staggered::compute_fisher``.
    """

    rel_time: np.ndarray
    estimate: np.ndarray
    pvalue: np.ndarray
    pvalue_ci: np.ndarray
    statistics: np.ndarray = field(repr=False)
    counts: np.ndarray
    n_valid: np.ndarray
    aggregates: dict[str, tuple[float, float, tuple[float, float], np.ndarray]]
    scheme: str
    alternative: str
    level: float
    draws: int
    adoption: np.ndarray | None = field(default=None, repr=False)
    units: np.ndarray | None = field(default=None, repr=False)

    @property
    def fisher_pvalue(self) -> float:
        """Randomization p-value of the simple aggregate (see the class notes)."""
        return self.aggregates["simple"][1]

    def aggregate(self, kind: str = "simple") -> pl.DataFrame:
        """``kind, estimate, pvalue, pvalue_ci_low, pvalue_ci_high`` of an aggregate (``simple``, ``dynamic``,
        and ``group`` for Sun-Abraham)."""
        if kind not in self.aggregates:
            raise EventStudyError(f"aggregate {kind!r} is not available; use one of {sorted(self.aggregates)}")
        est, p, (lo, hi), _ = self.aggregates[kind]
        return pl.DataFrame({"kind": [kind], "estimate": [est], "pvalue": [p], "pvalue_ci_low": [lo],
                             "pvalue_ci_high": [hi]})

    def tidy(self) -> pl.DataFrame:
        """``rel_time, estimate, pvalue, pvalue_ci_low, pvalue_ci_high, valid_draws``."""
        return pl.DataFrame({"rel_time": self.rel_time, "estimate": self.estimate, "pvalue": self.pvalue,
                             "pvalue_ci_low": self.pvalue_ci[:, 0], "pvalue_ci_high": self.pvalue_ci[:, 1],
                             "valid_draws": self.n_valid})

    def summary(self) -> str:
        """Printable table."""
        pct = int(round(self.level * 100))
        lines = [f"Randomization inference of an event study (scheme {self.scheme}, {self.draws:,} draws, "
                 f"coefficients, {self.alternative})",
                 f"{'rel_time':>8}{'estimate':>11}{'RI p':>9}  {pct}% MC interval"]
        for r in self.tidy().iter_rows(named=True):
            lines.append(f"{r['rel_time']:>8}{r['estimate']:>11.5f}{r['pvalue']:>9.4f}  "
                         f"[{r['pvalue_ci_low']:.4f}, {r['pvalue_ci_high']:.4f}]")
        for kind, (est, p, (lo, hi), _) in self.aggregates.items():
            lines.append(f"aggregate {kind}: {est:.5f}, RI p = {p:.4f} [{lo:.4f}, {hi:.4f}]")
        return "\n".join(lines)


def _pvalues(obs: float, s: np.ndarray, alternative: str, level: float) -> tuple[float, tuple[float, float], int, int]:
    s = s[np.isfinite(s)]
    tol = TIE_RTOL * max(abs(obs), 1e-300)
    if alternative == "two-sided":
        count = int((np.abs(s) >= abs(obs) - tol).sum())
    elif alternative == "greater":
        count = int((s >= obs - tol).sum())
    else:
        count = int((s <= obs + tol).sum())
    n = s.size
    return (1 + count) / (1 + n), clopper_pearson(count, n, level), count, n


@dataclass(eq=False)
class _Tables:
    """Per-(unit, candidate adoption time) tables of one event study.

    ``k`` counts every binned event time of the window but the references
    (a draw may reach event times the data did not); with ``by_cohort``
    (Sun-Abraham) the dummies are cohort x event time, ``L k`` of them.
    """

    s: np.ndarray  # U x L x k
    E: np.ndarray  # U x L x k x m
    c: np.ndarray  # U x L x k
    has_ref: np.ndarray  # U x L: the unit has a row at the reference period given that adoption time
    inv_T: np.ndarray  # U
    Cinv: np.ndarray  # m x m
    sampler: Sampler
    by_cohort: bool
    keep: bool

    def __call__(self, block: tuple[int, int, np.random.SeedSequence]) -> tuple[np.ndarray, ...]:
        index, size, seed = block
        rng = block_generator(seed, index)
        out: list[list[np.ndarray]] = [[], [], [], []]
        L, k = self.s.shape[1], self.s.shape[2]
        for _, pick, lidx in self.sampler.slabs(rng, size):
            S, Eu, c = self.s[pick, lidx], self.E[pick, lidx], self.c[pick, lidx]
            cw = c * self.inv_T[pick][:, :, None]
            B = pick.shape[0]
            oh = (lidx[:, :, None] == np.arange(L)).astype(float)  # B x K x L
            if self.by_cohort:
                s = np.einsum("bil,bik->blk", oh, S).reshape(B, L * k)
                E = np.einsum("bil,bikm->blkm", oh, Eu).reshape(B, L * k, -1)
                n = np.einsum("bil,bik->blk", oh, c).reshape(B, L * k)
                blocks = np.einsum("bil,bik,bij->blkj", oh, cw, c)
                U = np.zeros((B, L * k, L * k))
                for q in range(L):
                    U[:, q * k:(q + 1) * k, q * k:(q + 1) * k] = -blocks[:, q]
                # Sun-Abraham drops a cohort never observed at the reference period: not this refit
                present = oh.sum(axis=1) > 0
                seen = np.einsum("bil,bi->bl", oh, self.has_ref[pick, lidx].astype(float)) > 0
                cohort_ok = np.all(seen | ~present, axis=1)
            else:
                s, E, n = S.sum(axis=1), Eu.sum(axis=1), c.sum(axis=1)
                U = -np.einsum("bik,bil->bkl", cw, c)
                cohort_ok = np.ones(B, dtype=bool)
            idx = np.arange(n.shape[1])
            U[:, idx, idx] += np.where(n > 0, n, 1.0)  # an event time no unit reaches has no dummy
            A = U - np.einsum("bkm,mn,bln->bkl", E, self.Cinv, E)
            b = np.full(s.shape, np.nan)
            scale = np.maximum(np.abs(np.diagonal(A, axis1=1, axis2=2)).max(axis=1), 1e-300)
            ok = cohort_ok.copy()
            ok[ok] = np.linalg.eigvalsh(A[ok]).min(axis=1) > _SINGULAR * scale[ok]
            if ok.any():
                b[ok] = np.linalg.solve(A[ok], s[ok][:, :, None])[:, :, 0]
            out[0].append(b)
            out[1].append(n)
            out[2].append(oh.sum(axis=1))  # units per cohort
            if self.keep:
                out[3].append(self.sampler.dense(pick, lidx))
        return tuple(np.vstack(o) for o in out if o)


def _event_time_stats(b: np.ndarray, n: np.ndarray, units: np.ndarray, levels: np.ndarray, es_rel: np.ndarray,
                      by_cohort: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each draw's event-study coefficients (at ``es_rel``; NaN where no unit
    reaches it) and aggregates, as a refit of the draw would report them."""
    B, k = b.shape[0], levels.size
    L = b.shape[1] // k
    bl, nl = b.reshape(B, L, k), n.reshape(B, L, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_r = nl.sum(axis=1)
        coef = np.where(n_r > 0, np.nansum(np.where(nl > 0, nl * bl, 0.0), axis=1) / n_r, np.nan)
        post = levels >= 0
        reach = (n_r > 0) & post
        pn = np.where(nl > 0, nl, 0.0) * post
        simple = np.nansum(pn * np.where(nl > 0, bl, 0.0), axis=(1, 2)) / pn.sum(axis=(1, 2))
        dynamic = np.nansum(np.where(reach, coef, 0.0), axis=1) / reach.sum(axis=1)
        aggs = {"simple": simple, "dynamic": dynamic}
        if by_cohort:
            pw = pn.sum(axis=2)  # post rows by cohort
            comp = np.nansum(pn * np.where(nl > 0, bl, 0.0), axis=2) / pw
            pi = np.where(pw > 0, units, 0.0)
            aggs["group"] = np.nansum(np.where(pw > 0, comp, 0.0) * pi, axis=1) / pi.sum(axis=1)
    invalid = ~np.isfinite(b).all(axis=1)
    coef[invalid] = np.nan
    for v in aggs.values():
        v[invalid] = np.nan
    col = np.searchsorted(levels, es_rel)
    return coef[:, col], aggs


def event_study_placebo(es: Any, draws: int = 1000, scheme: str = "units+timing", alternative: str = "two-sided",
                        seed: SeedLike = 0, n_jobs: int | None = 1, backend: str | None = None, *,
                        level: float = 0.95, keep_draws: bool = False) -> EventStudyPlaceboResult:
    """Randomization inference of every coefficient and aggregate of a TWFE, Sun-Abraham or imputation event study.

    Called by :func:`~staggerlab.inference.resampling.placebo.placebo` when given
    an event-study result.

    Parameters
    ----------
    es : EventStudyResult
        ``method="twfe"`` or ``"sunab"``, fitted through ``feols``, unweighted,
        with binned endpoints (the default); Sun-Abraham with never-treated
        units (draws that leave a cohort unobserved at the reference period,
        which Sun-Abraham would drop, are left out); or ``"imputation"``,
        unweighted, with no treated row dropped by the fit (aggregates
        ``simple`` and ``dynamic``; a unit left without untreated rows in a
        draw is dropped as the estimator drops it, and a draw with a period
        without untreated rows is left out).
    draws : int
        Placebo draws.
    scheme : {"units", "timing", "units+timing"}
        As :func:`placebo`: permute adoption times over all units (the timing
        Fisher test of ``staggered::compute_fisher``), among the treated, or
        draw treated units and their adoption times.
    alternative : {"two-sided", "greater", "less"}
    seed, n_jobs, backend
        As :func:`placebo` (statistics do not depend on ``n_jobs``).
    level : float
        Level of the Clopper-Pearson intervals of the p-values.
    keep_draws : bool
        Keep every draw's adoption times (``draws x units``, attribute
        ``adoption``; unit ids in ``units``).

    Returns
    -------
    EventStudyPlaceboResult

    Raises
    ------
    EventStudyError
        Another method; a lean-path, weighted or unbinned regression event
        study; a weighted imputation event study or one whose fit dropped rows.
    """
    if es.method not in ("twfe", "sunab", "imputation"):
        raise EventStudyError("randomization inference of an event study covers method='twfe', 'sunab' and "
                              f"'imputation'; got {es.method!r}")
    if scheme not in SCHEMES or scheme == "iid":
        raise ArgumentError(f"scheme must be 'units', 'timing' or 'units+timing', got {scheme!r}")
    check_alternative(alternative, ("two-sided", "greater", "less"))
    check_level(level)
    draws = check_draws(int(draws))
    if "partitioned" in es.extra:  # rows gathered: bit-identical to the in-memory event study's
        from ..distributed.event_study import gathered_event_study

        es = gathered_event_study(es, "placebo")
    if es.method == "imputation":
        return _imputation(es, draws, scheme, alternative, seed, n_jobs, backend, level, keep_draws)
    fit = es.extra.get("fit")
    if fit is None or "window" not in es.extra:
        raise EventStudyError("randomization inference needs an event study fitted through feols (not the lean "
                              "path for big panels)")
    if not es.extra["bin_endpoints"]:
        raise EventStudyError("randomization inference of an event study needs binned endpoints "
                              "(event_study(..., bin_endpoints=True))")
    d = fit.design
    if d.weights_name is not None:
        raise EventStudyError("randomization inference of a weighted event study is not supported")
    from ..did.relative_periods import rel_label
    from ..did.staggered_data import COHORT

    unit, time = es.extra["unit"], es.extra["time"]
    by_cohort = es.method == "sunab"
    es_cols = {n for n in d.regressors if n.startswith("_sa_" if by_cohort else "_es_")}
    if not by_cohort and set(f"_es_{rel_label(int(r))}" for r in es.rel_time) != es_cols:
        raise EventStudyError("randomization inference needs every event-time dummy in the window "
                              "(event_study(..., bin_endpoints=True))")
    controls = [r for r in d.regressors if r not in es_cols]
    ids, unit_N = d.ids(unit), d.codes(unit)
    tvals, per_N = d.ids(time), d.codes(time)
    time_N = np.asarray(tvals, dtype=np.int64)[per_N]
    nU, nT = ids.size, tvals.size
    g_U = adoption_times(d.column(COHORT) if COHORT in d.columns else d.frame[COHORT].cast(pl.Float64).to_numpy(),
                         time_N, column="cohort", units=ids, unit_codes=unit_N, cohort=True).g
    gvals = np.unique(g_U[g_U != 0])
    if by_cohort and (not (g_U == 0).any()
                      or set(es.extra["cells"]["cohort"].unique().to_list()) != set(gvals.tolist())):
        raise EventStudyError("randomization inference of a Sun-Abraham event study needs never-treated units "
                              "and every cohort observed at the reference period")

    # F = M_u [period dummies 2..T, controls]; y~ the outcome's residual on FEs + controls
    T_U = np.bincount(unit_N, minlength=nU).astype(float)

    def unit_demean(x: np.ndarray) -> np.ndarray:
        means = np.vstack([np.bincount(unit_N, weights=x[:, j], minlength=nU) for j in range(x.shape[1])]).T
        return x - means[unit_N] / T_U[unit_N, None]

    P = np.zeros((unit_N.size, nT - 1 + len(controls)))
    hit = per_N > 0
    P[np.flatnonzero(hit), per_N[hit] - 1] = 1.0
    for j, cname in enumerate(controls):
        P[:, nT - 1 + j] = d.column(cname)
    F = unit_demean(P)
    Cinv = psd_pinv(F.T @ F)
    yu = unit_demean(fit.y_raw[:, None])[:, 0]
    yt = yu - F @ (Cinv @ (F.T @ yu))

    lo, hi = es.extra["window"]
    refs = set(es.refs)
    levels = np.array([r for r in range(lo, hi + 1) if r not in refs], dtype=np.int64)
    k, m, L = levels.size, F.shape[1], gvals.size
    lut = np.searchsorted(levels, np.arange(lo, hi + 1))
    lut[np.isin(np.arange(lo, hi + 1), list(refs))] = -1
    s_t, E_t, c_t = np.zeros((nU, L, k)), np.zeros((nU, L, k, m)), np.zeros((nU, L, k))
    has_ref = np.zeros((nU, L), dtype=bool)
    for li, g in enumerate(gvals):
        rel = np.clip(time_N - g, lo, hi)
        j_N = lut[rel - lo]
        rows = np.flatnonzero(j_N >= 0)
        cell = unit_N[rows] * k + j_N[rows]
        s_t[:, li] = np.bincount(cell, weights=yt[rows], minlength=nU * k).reshape(nU, k)
        c_t[:, li] = np.bincount(cell, minlength=nU * k).reshape(nU, k)
        for q in range(m):
            E_t[:, li, :, q] = np.bincount(cell, weights=F[rows, q], minlength=nU * k).reshape(nU, k)
        has_ref[unit_N[rel == es.ref], li] = True
    sampler = Sampler(scheme, g_U, np.zeros(nU, dtype=np.int64), np.arange(nU), gvals, PlaceboTuning())
    tables = _Tables(s_t, E_t, c_t, has_ref, 1.0 / T_U, Cinv, sampler, by_cohort, keep_draws)
    ss = as_seedsequence(seed)
    blocks = [(i, min(_BLOCK, draws - i * _BLOCK), ss) for i in range(-(-draws // _BLOCK))]
    parts = run_blocks(_call, blocks, shared=tables, n_jobs=n_jobs, backend=backend, desc="placebo")
    b, n, units = (np.vstack([p[j] for p in parts]) for j in range(3))
    adoption = np.vstack([p[3] for p in parts]) if keep_draws else None
    stats, agg_stats = _event_time_stats(b, n, units, levels, es.rel_time, by_cohort)

    return _result(es, stats, agg_stats, scheme, alternative, level, draws, adoption, ids if keep_draws else None)


def _result(es: Any, stats: np.ndarray, agg_stats: dict, scheme: str, alternative: str, level: float, draws: int,
            adoption: np.ndarray | None, units: Any) -> EventStudyPlaceboResult:
    """The result from the draws' statistics of every coefficient and aggregate: p-values against the fit's."""
    pv, ci, cnt, nv = zip(*(_pvalues(float(es.coef[j]), stats[:, j], alternative, level)
                            for j in range(es.rel_time.size)))
    aggs = {}
    for kind, a_stats in agg_stats.items():
        est = es.aggregate(kind).estimate
        p, c, _, _ = _pvalues(est, a_stats, alternative, level)
        aggs[kind] = (est, p, c, a_stats)
    return EventStudyPlaceboResult(
        rel_time=es.rel_time.copy(), estimate=es.coef.copy(), pvalue=np.array(pv), pvalue_ci=np.array(ci),
        statistics=stats, counts=np.array(cnt), n_valid=np.array(nv), aggregates=aggs, scheme=scheme,
        alternative=alternative, level=level, draws=draws, adoption=adoption, units=units)


def _call(tables: Any, block: tuple[int, int, np.random.SeedSequence]) -> tuple[np.ndarray, ...]:
    return tables(block)


def _imputation(es: Any, draws: int, scheme: str, alternative: str, seed: SeedLike, n_jobs: int | None,
                backend: str | None, level: float, keep_draws: bool) -> EventStudyPlaceboResult:
    """Randomization inference of an imputation event study (exact refits, see ``es_placebo_imputation``)."""
    from .es_placebo_imputation import imputation_tables

    tables, levels, ids = imputation_tables(es, scheme, PlaceboTuning(), keep_draws)
    ss = as_seedsequence(seed)
    blocks = [(i, min(_BLOCK, draws - i * _BLOCK), ss) for i in range(-(-draws // _BLOCK))]
    parts = run_blocks(_call, blocks, shared=tables, n_jobs=n_jobs, backend=backend, desc="placebo")
    b, n = (np.vstack([p[j] for p in parts]) for j in range(2))
    adoption = np.vstack([p[2] for p in parts]) if keep_draws else None
    k = levels.size
    stats = b[:, np.searchsorted(levels, es.rel_time)]
    post = levels >= 0
    with np.errstate(invalid="ignore"):
        reached = np.where(post & (n[:, :k] > 0), 1.0, 0.0)
        dynamic = np.where(reached.sum(axis=1) > 0,
                           np.nansum(np.where(reached > 0, b[:, :k], 0.0), axis=1) / reached.sum(axis=1), np.nan)
    agg_stats = {"simple": b[:, k], "dynamic": np.where(np.isfinite(b[:, k]), dynamic, np.nan)}
    return _result(es, stats, agg_stats, scheme, alternative, level, draws, adoption, ids if keep_draws else None)
