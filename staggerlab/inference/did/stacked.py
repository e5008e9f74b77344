"""Stacked difference-in-differences (Cengiz, Dube, Lindner and Zipperer 2019)
with the corrective weights of Wing, Freedman and Hollingsworth (2024)."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import polars as pl

from ...errors import ArgumentError, EventStudyError
from ...panels.panel import factorize_column
from ..regression.feols import feols
from .event_study import EventStudyResult, EventStudyTuning
from .lpdid import integer_times
from .staggered_data import COHORT, StaggeredData

__all__ = ["stacked", "stack_rows"]


def stack_rows(g: np.ndarray, t: np.ndarray, window: tuple[int, int]) -> tuple[list[int], list[np.ndarray], list[int]]:
    """The sub-experiments of a stack: ``(cohorts, rows, dropped)``.

    Cohort ``a`` forms one sub-experiment when the panel covers its whole
    event window ``[a + lo, a + hi]`` (trimming) and has a clean control:
    a unit never treated or first treated after ``a + hi``. Its rows are the
    cohort's and its clean controls' rows inside the window.
    """
    lo, hi = window
    tmin, tmax = int(t.min()), int(t.max())
    cohorts, rows, dropped = [], [], []
    for a in np.unique(g[g > 0]).tolist():
        inside = (t >= a + lo) & (t <= a + hi)
        clean = (g == 0) | (g > a + hi)
        if a + lo < tmin or a + hi > tmax or not (inside & clean).any():
            dropped.append(int(a))
            continue
        cohorts.append(int(a))
        rows.append(np.flatnonzero(inside & ((g == a) | clean)))
    return cohorts, rows, dropped


def stacked(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
            tuning: EventStudyTuning, *, weighting: Literal["corrective", "none"] = "corrective") -> EventStudyResult:
    """Stacked DiD event study (``event_study(..., method="stacked")``).

    One sub-experiment per treated cohort ``a`` whose event window
    ``[a + lo, a + hi]`` lies inside the panel (other cohorts are trimmed,
    with a warning): the cohort's rows in that window and those of its clean
    controls (units never treated or first treated after ``a + hi``). The
    sub-experiments are stacked and the outcome regressed on
    treated-cohort x event-time dummies (``t - a``, every period of the
    window except ``ref``) with sub-experiment x unit and sub-experiment x
    period fixed effects (plus ``controls`` as regressors), CRV1 standard
    errors by ``cluster`` (a unit's copies in several sub-experiments form
    one cluster; pyfixest's small-sample factor).

    ``weighting="corrective"`` (Wing, Freedman and Hollingsworth 2024)
    weights treated rows by 1 and the control rows of sub-experiment ``a``
    at event time ``e`` by ``(N^D_ae / N^D_e) / (N^C_ae / N^C_e)`` (treated
    and control units of the sub-experiment observed at ``e``, over their
    totals across the stack), so each event-time coefficient estimates the
    trimmed aggregate ATT: the average of the cohorts' ATTs weighted by
    their treated units. ``"none"`` is the unweighted stacked regression
    of Cengiz et al. (implicit variance weights).
    ``aggregate("simple")`` averages the post-treatment event-time
    coefficients by their treated observations. ``bin_endpoints`` is not
    used (the window is the event window); analytic weights are refused.
    """
    lo, hi = window
    if weighting not in ("corrective", "none"):
        raise ArgumentError(f"weighting must be 'corrective' or 'none', got {weighting!r}")
    if sd.weights is not None:
        raise ArgumentError("method='stacked' does not take weights= (its weights are weighting='corrective')")
    if lo > ref or hi <= ref or hi < 0:
        raise EventStudyError(f"the event window {window!r} must contain the reference period {ref} and a "
                              "post-treatment period")
    frame = sd.frame
    t = integer_times(sd)
    g = frame[COHORT].to_numpy().astype(np.int64)
    cohorts, parts, dropped = stack_rows(g, t, window)
    if dropped:
        warnings.warn(f"cohort(s) {dropped} are left out of the stack: the panel does not cover their event "
                      f"window {window!r} or they have no clean control", stacklevel=4)
    if not cohorts:
        raise EventStudyError(f"no cohort has its whole event window {window!r} in the panel and a clean control")
    rows = np.concatenate(parts)
    sub = np.repeat(np.arange(len(cohorts)), [p.size for p in parts])
    a = np.asarray(cohorts, dtype=np.int64)[sub]
    ucode, tcode = sd.codes()
    U, T = int(ucode.max()) + 1, int(tcode.max()) + 1
    treated = g[rows] == a
    e = t[rows] - a
    cl = ucode if sd.cluster == sd.unit else factorize_column(frame[sd.cluster])
    cols: dict[str, np.ndarray] = {"y": frame[sd.y].cast(pl.Float64).to_numpy()[rows],
                                   "su": sub * U + ucode[rows], "st": sub * T + tcode[rows], "cl": cl[rows]}
    rel = np.array([k for k in range(lo, hi + 1) if k != ref], dtype=np.int64)
    names = [f"e{j}" for j in range(rel.size)]
    for n, k in zip(names, rel):
        cols[n] = (treated & (e == k)).astype(np.float64)
    xnames = [f"x{k}" for k in range(len(sd.controls))]
    for n, c in zip(xnames, sd.controls):
        cols[n] = frame[c].cast(pl.Float64).to_numpy()[rows]
    w = None
    if weighting == "corrective":
        cols["w"] = _corrective_weights(sub, e - lo, treated, len(cohorts), hi - lo + 1)
        w = "w"
    fml = "y ~ " + " + ".join([*names, *xnames]) + " | su + st"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singletons: dropped as in feols; collinear dummies: checked below
        fit = feols(fml, pl.DataFrame(cols), vcov={"CRV1": "cl"}, weights=w)
    pos = {n: j for j, n in enumerate(fit.coefnames)}
    lost = [int(k) for n, k in zip(names, rel) if n not in pos]
    if lost:
        raise EventStudyError(f"event time(s) {lost} are not identified in the stack (no treated observation "
                              "or collinear with the fixed effects)")
    idx = [pos[n] for n in names]
    kept = fit.design.rows
    n_rel = np.array([float((treated[kept] & (e[kept] == k)).sum()) for k in rel])
    return EventStudyResult(rel, fit.beta[idx], fit.vcov()[np.ix_(idx, idx)], ref, "stacked", fit.nobs, fit.df_t,
                            {"fit": fit, "n_rel": n_rel, "cohorts": cohorts, "dropped_cohorts": dropped,
                             "weighting": weighting, "stack_rows": rows, "stack_cohort": a})


def _corrective_weights(sub: np.ndarray, e_code: np.ndarray, treated: np.ndarray, S: int, E: int) -> np.ndarray:
    """Wing et al.'s weights: 1 for treated rows; for the controls of
    sub-experiment s at event time e, its share of the treated units at e
    over its share of the control units at e."""
    key = sub * E + e_code
    nD = np.bincount(key, weights=treated, minlength=S * E).reshape(S, E)
    nC = np.bincount(key, weights=~treated, minlength=S * E).reshape(S, E)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = (nD / nD.sum(axis=0)) / (nC / nC.sum(axis=0))
    out = np.where(treated, 1.0, q.ravel()[key])
    if not (np.isfinite(out) & (out > 0)).all():
        raise EventStudyError("a sub-experiment has control rows at an event time where none of its treated "
                              "units is observed; the corrective weights are undefined (balance the panel)")
    return out
