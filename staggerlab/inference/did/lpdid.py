"""Local projections difference-in-differences (LP-DiD; Dube, Girardi, Jorda
and Taylor 2023) for an absorbing staggered treatment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from ...errors import ArgumentError, EventStudyError
from ...panels.panel import factorize_column
from ..regression.absorb import Absorber, drop_singletons
from ..regression.rank import independent_columns
from ..regression.vcov import ssc_df_k, ssc_factor
from ..results import Aggregate
from .event_study import EventStudyResult, EventStudyTuning
from .staggered_data import COHORT, StaggeredData

__all__ = ["lpdid", "integer_times", "unit_time_index"]


def integer_times(sd: StaggeredData) -> np.ndarray:
    """The period column as int64 (``prepare`` refused non-integer periods:
    leads, lags and event windows count periods)."""
    return np.asarray(sd.frame[sd.time].to_numpy()).astype(np.int64)


def unit_time_index(ucode: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(pos, tmin, span)``: ``pos[u * span + t - tmin]`` is the row of unit
    ``u`` at period ``t`` (-1 when that period is not observed)."""
    tmin = int(t.min())
    span = int(t.max()) - tmin + 1
    U = int(ucode.max()) + 1
    pos = np.full(U * span, -1, dtype=np.int64)
    pos[ucode * span + (t - tmin)] = np.arange(t.size)
    return pos, tmin, span


class _Shifts:
    """Rows of the same unit ``h`` periods later (``h < 0``: earlier), by period
    value, not row order: a gap in a unit's periods makes the lead missing."""

    def __init__(self, ucode: np.ndarray, t: np.ndarray):
        self.pos, self.tmin, self.span = unit_time_index(ucode, t)
        self.base = ucode * self.span
        self.rel = t - self.tmin

    def rows(self, h: int) -> np.ndarray:
        tt = self.rel + h
        out = np.full(tt.size, -1, dtype=np.int64)
        ok = (tt >= 0) & (tt < self.span)
        out[ok] = self.pos[self.base[ok] + tt[ok]]
        return out


@dataclass(frozen=True)
class _Horizon:
    """One horizon's regression: the event coefficient, its per-cluster scores
    (``factor * scores @ scores`` is its CRV1 variance), rows and events used."""

    beta: float
    scores: np.ndarray
    factor: float
    nobs: int
    n_events: float
    df_t: int

    @property
    def se(self) -> float:
        return float(np.sqrt(self.factor * (self.scores @ self.scores)))


def _fit(dy: np.ndarray, event: np.ndarray, sample: np.ndarray, tcode: np.ndarray, cl: np.ndarray,
         X: list[np.ndarray], reweight: bool, G: int) -> _Horizon:
    """``dy ~ event + controls | period`` on ``sample``, CRV1 by ``cl``.

    The same fit as ``feols`` (singletons of the period FE dropped, the rank
    rule for collinear controls, pyfixest's small-sample factor), built from
    the regression core's pieces: one horizon is a one-FE regression on a few
    columns, and going through a data frame would cost more than the algebra."""
    ok = sample & np.isfinite(dy)
    for x in X:
        ok &= np.isfinite(x)
    rows = np.flatnonzero(ok)
    tc = tcode[rows]
    keep = drop_singletons([tc])
    rows, tc = rows[keep], tc[keep]
    ev = event[rows].astype(np.float64)
    w = None
    if reweight:
        # equally weighted ATT: each period's observations get 1 / (1 - p_t),
        # p_t its share of newly treated rows (Stata lpdid's `rw`)
        T = int(tcode.max()) + 1
        n_t = np.bincount(tc, minlength=T)
        p_t = np.bincount(tc, weights=ev, minlength=T) / np.maximum(n_t, 1)
        live = p_t[tc] < 1  # a period without clean controls identifies nothing
        rows, tc, ev = rows[live], tc[live], ev[live]
        w = 1.0 / (1.0 - p_t[tc])
    if not ev.any():
        raise EventStudyError("no newly treated observation has the outcomes this horizon needs")
    Z = np.column_stack([ev, *(x[rows] for x in X), dy[rows]])
    Zd = Absorber([tc], weights=w).demean(Z)
    if w is not None:
        Zd *= np.sqrt(w)[:, None]
    Xw, yw = Zd[:, :-1], Zd[:, -1]
    ss = ((Z[:, :-1] - Z[:, :-1].mean(axis=0)) ** 2).sum(axis=0)
    cols = independent_columns(Xw.T @ Xw, ss)
    if not cols or cols[0] != 0:
        raise EventStudyError("the treatment event is collinear with the period effects at some horizon")
    Xw = Xw[:, cols]
    bread = np.linalg.inv(Xw.T @ Xw)
    beta = bread @ (Xw.T @ yw)
    uw = yw - Xw @ beta
    clr = cl[rows]
    s = np.bincount(clr, weights=(Xw @ bread[:, 0]) * uw, minlength=G)
    cl_dense = np.unique(clr, return_inverse=True)[1]
    g = int(cl_dense.max()) + 1
    if g < 2:
        raise EventStudyError("a horizon's sample has fewer than 2 clusters")
    df_k = ssc_df_k(len(cols), [np.unique(tc, return_inverse=True)[1]], None, [cl_dense])
    return _Horizon(float(beta[0]), s, ssc_factor("CRV1", rows.size, df_k, g), int(rows.size), float(ev.sum()),
                    g - 1)


def lpdid(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
          tuning: EventStudyTuning, *, control: Literal["notyet", "never"] = "notyet",
          reweight: bool = False) -> EventStudyResult:
    """LP-DiD event study (``event_study(..., method="lpdid")``).

    For each horizon ``h`` in ``0..hi`` the long difference
    ``y[i, t+h] - y[i, t-1]`` is regressed on the treatment event
    ``D[i, t] - D[i, t-1]`` (1 when unit i adopts at t and is observed at
    t-1) with period fixed effects, on the newly treated observations and the
    clean controls: with ``control="notyet"`` the units not yet treated at
    ``t+h``; with ``"never"`` the never-treated units only. Pre-treatment
    horizons ``h`` in ``2..-lo`` (reported as ``-h``) regress
    ``y[i, t-h] - y[i, t-1]`` on the event, with controls untreated at ``t``
    (``"notyet"``) or never treated. Horizon -1 is the reference (zero by
    construction). Leads and lags are taken by period value, so a unit's
    gaps make the long differences across them missing (such rows are left
    out). Time-varying controls enter at their period-t values.

    ``reweight=False`` is the variance-weighted estimator (each period's
    2x2 comparison weighted by its observations times ``p_t (1 - p_t)``);
    ``reweight=True`` weights every observation of period t by
    ``1 / (1 - p_t)`` (``p_t``: share of newly treated rows in the
    horizon's sample), which makes every newly treated observation count
    equally (equally weighted ATT; Stata ``lpdid, rw``).

    Standard errors: CRV1 by ``cluster`` with pyfixest's small-sample
    factor, per horizon; the covariance between horizons (for the pre-trend
    test, the ``"dynamic"`` aggregate and HonestDiD) stacks the horizons'
    per-cluster scores, each scaled by the square root of its horizon's
    factor. ``aggregate("simple")`` is the pooled post-treatment estimate:
    the regression of the mean of ``y[t..t+hi]`` minus ``y[t-1]`` (clean
    controls at ``t+hi``); ``aggregate("pre")`` the pooled pre-treatment
    estimate (mean of ``y[t+lo..t-2]`` minus ``y[t-1]``, controls as for the
    pre horizons). ``bin_endpoints`` is not used (every horizon is its own
    regression); analytic weights are refused.
    """
    lo, hi = window
    if ref != -1:
        raise EventStudyError(f"LP-DiD differences against the period before adoption: ref must be -1, got {ref}")
    if hi < 0:
        raise EventStudyError(f"LP-DiD needs post-treatment horizons: window {window!r} ends before 0")
    if control not in ("notyet", "never"):
        raise ArgumentError(f"control must be 'notyet' or 'never', got {control!r}")
    if sd.weights is not None:
        raise ArgumentError("method='lpdid' does not take weights= (its reweighting is reweight=True)")
    frame = sd.frame
    ucode, tcode = sd.codes()
    t = integer_times(sd)
    g = frame[COHORT].to_numpy().astype(np.int64)
    y = frame[sd.y].cast(pl.Float64).to_numpy()
    if control == "never" and not (g == 0).any():
        raise EventStudyError("control='never' needs never-treated units; there are none")
    X = [frame[c].cast(pl.Float64).to_numpy() for c in sd.controls]
    cl = ucode if sd.cluster == sd.unit else factorize_column(frame[sd.cluster])
    G = int(cl.max()) + 1
    sh = _Shifts(ucode, t)

    def at(h: int) -> np.ndarray:
        r = sh.rows(h)
        return np.where(r >= 0, y[np.maximum(r, 0)], np.nan)

    y_lag = at(-1)
    event = (g == t) & (sh.rows(-1) >= 0)
    never = g == 0

    def post_sample(h: int) -> np.ndarray:
        return event | (never if control == "never" else never | (t + h < g))

    pre_sample = event | (never if control == "never" else never | (t < g))
    horizons = [h for h in range(lo, hi + 1) if h != -1]
    fits: dict[int, _Horizon] = {}
    for h in horizons:
        sample = post_sample(h) if h >= 0 else pre_sample
        try:
            fits[h] = _fit(at(h) - y_lag, event, sample, tcode, cl, X, reweight, G)
        except EventStudyError as err:
            # name the horizon and the window that the panel's periods support
            raise EventStudyError(f"LP-DiD horizon {h} of window ({lo}, {hi}): {err}; the panel's periods "
                                  f"support a narrower window, e.g. window=({max(lo, -2)}, {min(hi, 2)})") from err
    Smat = np.column_stack([f.scores for f in fits.values()])
    root = np.sqrt([f.factor for f in fits.values()])
    V = (Smat.T @ Smat) * np.outer(root, root)
    coef = np.array([f.beta for f in fits.values()])
    n_obs = np.array([f.nobs for f in fits.values()])
    n_events = np.array([f.n_events for f in fits.values()])
    df = min(f.df_t for f in fits.values())
    pooled: dict[str, Aggregate] = {}
    pooled_nobs: dict[str, int] = {}

    def aggregator(kind: str) -> Aggregate:
        if kind in pooled:
            return pooled[kind]
        if kind == "simple":
            ybar = np.mean([at(k) for k in range(0, hi + 1)], axis=0)
            fit = _fit(ybar - y_lag, event, post_sample(hi), tcode, cl, X, reweight, G)
        elif kind == "pre":
            if lo > -2:
                raise EventStudyError("the pooled pre-treatment estimate needs a window starting at -2 or earlier")
            ybar = np.mean([at(k) for k in range(lo, -1)], axis=0)
            fit = _fit(ybar - y_lag, event, pre_sample, tcode, cl, X, reweight, G)
        else:
            return res.default_aggregate(kind)
        pooled[kind] = Aggregate(kind, fit.beta, fit.se, fit.df_t)
        pooled_nobs[kind] = fit.nobs
        return pooled[kind]

    res = EventStudyResult(horizons, coef, V, ref, "lpdid", int(n_obs.max()), df,
                           {"aggregator": aggregator, "n_rel": n_events, "n_obs": n_obs,
                            "pooled_nobs": pooled_nobs, "control": control, "reweight": reweight})
    return res
