"""Randomization inference of a dynamic TWFE event study: placebo adoption
times drawn by the design-respecting schemes of :func:`placebo`, and every
event-study coefficient and aggregate refitted exactly for each draw.

Notation: ``F = M_u [period dummies 2..T, controls]`` (``M_u`` the unit
demeaning; ``m`` columns), ``C = F'F``, ``y~`` the residual of the outcome on
the fixed effects and controls. A draw gives unit ``i`` the adoption time
``g_i``; its event-time dummies ``D_i`` (k columns, mutually exclusive,
binned as the event study) depend on ``(i, g_i)`` only. By Frisch-Waugh-Lovell
the coefficients are ``beta = (U - E C^-1 E')^-1 s`` with, summed over the
draw's treated units, ``s = sum D_i' y~_i``, ``E = sum D_i' F_i`` and
``U = sum diag(c_i) - c_i c_i' / T_i`` (``c_i`` the counts of unit ``i``'s rows
in each event time, ``T_i`` its rows). Those three are tabulated once per
(unit, candidate adoption time), so a draw costs O(treated units x k m), not
O(rows). The aggregates are the event study's: ``simple`` weights the post
periods by the draw's treated rows, ``dynamic`` equally.
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
        ``draws x k`` placebo coefficients (NaN: a draw leaving an event time
        without treated rows, not counted).
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
        """``kind, estimate, pvalue, ci_low, ci_high`` of an aggregate (``simple`` or ``dynamic``)."""
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
    """Per-(unit, candidate adoption time) tables of one event study."""

    s: np.ndarray  # U x L x k
    E: np.ndarray  # U x L x k x m
    c: np.ndarray  # U x L x k
    inv_T: np.ndarray  # U
    Cinv: np.ndarray  # m x m
    sampler: Sampler
    post: np.ndarray  # k bool
    keep: bool

    def __call__(self, block: tuple[int, int, np.random.SeedSequence]) -> tuple[np.ndarray, ...]:
        index, size, seed = block
        rng = block_generator(seed, index)
        bs, cs, adopt = [], [], []
        for _, pick, lidx in self.sampler.slabs(rng, size):
            s = self.s[pick, lidx].sum(axis=1)
            E = self.E[pick, lidx].sum(axis=1)
            c = self.c[pick, lidx]
            n = c.sum(axis=1)
            U = np.einsum("bk,kl->bkl", n, np.eye(n.shape[1])) - np.einsum(
                "bik,bil->bkl", c * self.inv_T[pick][:, :, None], c)
            A = U - np.einsum("bkm,mn,bln->bkl", E, self.Cinv, E)
            b = np.full(s.shape, np.nan)
            # a draw leaving an event time without treated rows (or collinear) has no coefficients
            scale = np.maximum(np.abs(np.diagonal(A, axis1=1, axis2=2)).max(axis=1), 1e-300)
            ok = (n > 0).all(axis=1)
            ok[ok] = np.linalg.eigvalsh(A[ok]).min(axis=1) > _SINGULAR * scale[ok]
            if ok.any():
                b[ok] = np.linalg.solve(A[ok], s[ok][:, :, None])[:, :, 0]
            bs.append(b)
            cs.append(n)
            if self.keep:
                adopt.append(self.sampler.dense(pick, lidx))
        return (np.vstack(bs), np.vstack(cs), *([np.vstack(adopt)] if self.keep else []))


def event_study_placebo(es: Any, draws: int = 1000, scheme: str = "units+timing", alternative: str = "two-sided",
                        seed: SeedLike = 0, n_jobs: int | None = 1, backend: str | None = None, *,
                        level: float = 0.95, keep_draws: bool = False) -> EventStudyPlaceboResult:
    """Randomization inference of every coefficient and aggregate of a dynamic TWFE event study.

    Called by :func:`~staggerlab.inference.resampling.placebo.placebo` when given
    an event-study result.

    Parameters
    ----------
    es : EventStudyResult
        ``method="twfe"``, fitted through ``feols``, unweighted, with binned
        endpoints (the default).
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
        Another method, a lean-path, weighted or unbinned event study.
    """
    if es.method != "twfe":
        raise EventStudyError(f"randomization inference of an event study covers method='twfe'; got {es.method!r}")
    fit = es.extra.get("fit")
    if fit is None or "window" not in es.extra:
        raise EventStudyError("randomization inference needs an event study fitted through feols (not the lean "
                              "path for big panels)")
    if not es.extra["bin_endpoints"]:
        raise EventStudyError("randomization inference of an event study needs binned endpoints "
                              "(event_study(..., bin_endpoints=True))")
    if scheme not in SCHEMES or scheme == "iid":
        raise ArgumentError(f"scheme must be 'units', 'timing' or 'units+timing', got {scheme!r}")
    check_alternative(alternative, ("two-sided", "greater", "less"))
    check_level(level)
    draws = check_draws(int(draws))
    d = fit.design
    if d.weights_name is not None:
        raise EventStudyError("randomization inference of a weighted event study is not supported")
    from ..did.relative_periods import rel_label
    from ..did.staggered_data import COHORT

    unit, time = es.extra["unit"], es.extra["time"]
    names = [f"_es_{rel_label(int(r))}" for r in es.rel_time]
    es_cols = {n for n in d.regressors if n.startswith("_es_")}
    if set(names) != es_cols:
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
    k, m, L = es.rel_time.size, F.shape[1], gvals.size
    col = {int(r): j for j, r in enumerate(es.rel_time)}
    lut = np.array([col.get(r, -1) for r in range(lo, hi + 1)])
    s_t, E_t, c_t = np.zeros((nU, L, k)), np.zeros((nU, L, k, m)), np.zeros((nU, L, k))
    for li, g in enumerate(gvals):
        rel = np.clip(time_N - g, lo, hi)
        j_N = lut[rel - lo]
        rows = np.flatnonzero(j_N >= 0)
        cell = unit_N[rows] * k + j_N[rows]
        s_t[:, li] = np.bincount(cell, weights=yt[rows], minlength=nU * k).reshape(nU, k)
        c_t[:, li] = np.bincount(cell, minlength=nU * k).reshape(nU, k)
        for q in range(m):
            E_t[:, li, :, q] = np.bincount(cell, weights=F[rows, q], minlength=nU * k).reshape(nU, k)
    assert not refs & set(col)  # the reference periods carry no dummy
    sampler = Sampler(scheme, g_U, np.zeros(nU, dtype=np.int64), np.arange(nU), gvals, PlaceboTuning())
    tables = _Tables(s_t, E_t, c_t, 1.0 / T_U, Cinv, sampler, es.rel_time >= 0, keep_draws)
    ss = as_seedsequence(seed)
    blocks = [(i, min(_BLOCK, draws - i * _BLOCK), ss) for i in range(-(-draws // _BLOCK))]
    parts = run_blocks(_call, blocks, shared=tables, n_jobs=n_jobs, backend=backend, desc="placebo")
    stats = np.vstack([p[0] for p in parts])
    n_rel = np.vstack([p[1] for p in parts])
    adoption = np.vstack([p[2] for p in parts]) if keep_draws else None

    pv, ci, cnt, nv = zip(*(_pvalues(float(es.coef[j]), stats[:, j], alternative, level) for j in range(k)))
    post = es.rel_time >= 0
    aggs = {}
    for kind in ("simple", "dynamic"):
        w_obs = es.default_weights(kind)
        if kind == "simple":
            w = np.where(post, n_rel, 0.0)
            w = w / w.sum(axis=1, keepdims=True)
        else:
            w = np.broadcast_to(w_obs, stats.shape)
        a_stats = np.einsum("bk,bk->b", w, stats)
        est = float(w_obs @ es.coef)
        p, c, _, _ = _pvalues(est, a_stats, alternative, level)
        aggs[kind] = (est, p, c, a_stats)
    return EventStudyPlaceboResult(
        rel_time=es.rel_time.copy(), estimate=es.coef.copy(), pvalue=np.array(pv), pvalue_ci=np.array(ci),
        statistics=stats, counts=np.array(cnt), n_valid=np.array(nv), aggregates=aggs, scheme=scheme,
        alternative=alternative, level=level, draws=draws, adoption=adoption, units=ids if keep_draws else None)


def _call(tables: _Tables, block: tuple[int, int, np.random.SeedSequence]) -> tuple[np.ndarray, ...]:
    return tables(block)
