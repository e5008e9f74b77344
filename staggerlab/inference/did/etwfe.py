"""Extended two-way fixed effects (Wooldridge 2021): one coefficient per
treated cohort x period cell, aggregated with delta-method standard errors."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import polars as pl

from ...errors import ArgumentError, EventStudyError
from ...panels.panel import factorize_column
from ..regression.feols import feols
from ..results import Aggregate
from .event_study import EventStudyResult, EventStudyTuning
from .lpdid import integer_times
from .staggered_data import COHORT, StaggeredData

__all__ = ["etwfe"]


def _cells(g: np.ndarray, t: np.ndarray, control: str, lo: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (cohort, period) cells that get a coefficient and each row's cell (-1: none)."""
    treated = g > 0
    if control == "notyet":
        in_cell = treated & (t >= g)
    else:  # every period of a cohort except the one before adoption (the reference)
        in_cell = treated & (t != g - 1)
    key = np.where(in_cell, g * (int(t.max()) - lo + 2) + (t - lo), -1)
    cells, j = np.unique(key[in_cell], return_inverse=True)
    row = np.full(g.size, -1, dtype=np.int64)
    row[in_cell] = j
    return cells, row


def etwfe(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
          tuning: EventStudyTuning, *, control: Literal["notyet", "never"] = "notyet") -> EventStudyResult:
    """Extended TWFE event study (``event_study(..., method="etwfe")``).

    Regresses the outcome on one dummy per treated (cohort g, period t)
    cell with unit and period fixed effects, CRV1 standard errors by
    ``cluster`` (pyfixest's small-sample factor). ``control="notyet"``
    (Wooldridge's estimator) gives a dummy to every cell with ``t >= g``: the
    fixed effects are then fitted on all untreated rows (never treated and
    not yet treated). ``control="never"`` gives a dummy to every cell of a
    treated cohort except ``t = g - 1`` (the reference): the fixed effects
    come from never-treated units and each cohort's reference period, and
    pre-treatment cells estimate placebo effects (so only this version has
    leads for ``pretrend_test`` and HonestDiD).

    With ``controls``, each control enters with period-specific slopes
    (control x period dummies, the control's own slope absorbed by its first
    period) and interacted with every cell after subtracting its cohort's
    mean (over the cohort's rows), so a cell's coefficient is its ATT at the
    cohort's mean covariates.

    Event-time estimates average the cells with the same relative period
    ``t - g`` (binned into the window's endpoints when ``bin_endpoints``),
    weighted by their numbers of observations; ``aggregate("simple")``
    averages every post-treatment cell by its observations,
    ``"group"`` the cohorts' observation-weighted post cells (overall:
    weighted by the cohorts' numbers of units), ``"calendar"`` the periods'
    (overall: equally weighted), ``"dynamic"`` the post event times equally.
    Every standard error is the delta method on the cells' covariance (the
    weights held fixed). Treated rows whose unit or period has no untreated
    row are dropped with a warning (no counterfactual for them); analytic
    weights are refused.
    """
    lo, hi = window
    if ref != -1:
        raise EventStudyError(f"ETWFE's reference is the period before adoption: ref must be -1, got {ref}")
    if control not in ("notyet", "never"):
        raise ArgumentError(f"control must be 'notyet' or 'never', got {control!r}")
    if sd.weights is not None:
        raise ArgumentError("method='etwfe' does not take weights=")
    frame = sd.frame
    t = integer_times(sd)
    g = frame[COHORT].to_numpy().astype(np.int64)
    ucode, tcode = sd.codes()
    if control == "never":
        if not (g == 0).any():
            raise EventStudyError("control='never' needs never-treated units; there are none")
        has_ref = np.unique(g[(g > 0) & (t == g - 1)])
        lost = np.setdiff1d(np.unique(g[g > 0]), has_ref)
        untreated = (g == 0) | (t == g - 1)
    else:
        lost = np.empty(0, dtype=np.int64)
        untreated = (g == 0) | (t < g)
    keep = ~np.isin(g, lost)
    # a treated row needs untreated rows of its unit and of its period
    U, T = int(ucode.max()) + 1, int(tcode.max()) + 1
    u_ok = np.bincount(ucode, weights=untreated & keep, minlength=U) > 0
    t_ok = np.bincount(tcode, weights=untreated & keep, minlength=T) > 0
    keep &= untreated | (u_ok[ucode] & t_ok[tcode])
    if lost.size:
        warnings.warn(f"cohort(s) {lost.tolist()} have no observation at the reference period and are dropped",
                      stacklevel=4)
    n_drop = int((~keep).sum()) - int(np.isin(g, lost).sum())
    if n_drop:
        warnings.warn(f"dropped {n_drop} treated row(s) whose unit or period has no untreated observation "
                      "(their untreated outcome cannot be identified)", stacklevel=4)
    rows = np.flatnonzero(keep)
    g, t = g[rows], t[rows]
    cells, cell = _cells(g, t, control, int(t.min()))
    if cells.size == 0:
        raise EventStudyError("no treated cohort x period cell is observed")
    span = int(t.max()) - int(t.min()) + 2
    cg, ct = cells // span, cells % span + int(t.min())
    cols: dict[str, np.ndarray] = {"y": frame[sd.y].cast(pl.Float64).to_numpy()[rows],
                                   "u": ucode[rows], "tt": tcode[rows]}
    cl = ucode if sd.cluster == sd.unit else factorize_column(frame[sd.cluster])
    cols["cl"] = cl[rows]
    names = [f"c{j}" for j in range(cells.size)]
    for j, n in enumerate(names):
        cols[n] = (cell == j).astype(np.float64)
    xnames: list[str] = []
    for k, c in enumerate(sd.controls):
        x = frame[c].cast(pl.Float64).to_numpy()[rows]
        cols[f"x{k}"] = x
        xnames.append(f"x{k}")
        tt = cols["tt"]
        for s in np.unique(tt)[1:]:
            cols[f"x{k}_t{s}"] = np.where(tt == s, x, 0.0)
            xnames.append(f"x{k}_t{s}")
        # demeaned within cohort: the cell coefficient is the ATT at the cohort's mean
        gcode = np.unique(g, return_inverse=True)[1]
        xd = x - (np.bincount(gcode, weights=x) / np.bincount(gcode))[gcode]
        for j in range(cells.size):
            cols[f"c{j}_x{k}"] = np.where(cell == j, xd, 0.0)
            xnames.append(f"c{j}_x{k}")
    fml = "y ~ " + " + ".join([*names, *xnames]) + " | u + tt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singletons and collinear controls: checked below
        fit = feols(fml, pl.DataFrame(cols), vcov={"CRV1": "cl"})
    pos = {n: j for j, n in enumerate(fit.coefnames)}
    missing = [j for j, n in enumerate(names) if n not in pos]
    if missing:
        bad = ", ".join(f"cohort {cg[j]} period {ct[j]}" for j in missing[:5])
        raise EventStudyError(f"the effect of {bad} is not identified (collinear with the fixed effects or controls)")
    idx = [pos[n] for n in names]
    b_c = fit.beta[idx]
    V_c = fit.vcov()[np.ix_(idx, idx)]
    used = cell[fit.design.rows]
    n_c = np.bincount(used[used >= 0], minlength=cells.size).astype(float)
    e_c = ct - cg
    e_b = np.clip(e_c, lo, hi) if bin_endpoints else e_c
    rel = np.array(sorted({int(e) for e in e_b if lo <= e <= hi and e != ref}), dtype=np.int64)
    if rel.size == 0:
        raise EventStudyError("no relative period other than the reference is observed in the window")

    def weights_by(levels: np.ndarray, of: np.ndarray, post_only: bool) -> np.ndarray:
        R = np.zeros((levels.size, cells.size))
        for i, v in enumerate(levels):
            m = (of == v) & ((e_c >= 0) if post_only else True)
            R[i, m] = n_c[m] / n_c[m].sum()
        return R

    R = weights_by(rel, e_b, False)
    df = fit.df_t
    g_unit = g[fit.design.rows]
    u_unit = cols["u"][fit.design.rows]

    def aggregator(kind: str) -> Aggregate:
        post = e_c >= 0
        if kind == "simple":
            w = np.where(post, n_c, 0.0)
            w /= w.sum()
            return Aggregate("simple", w @ b_c, np.sqrt(w @ V_c @ w), df)
        if kind in ("group", "calendar"):
            of = cg if kind == "group" else ct
            levels = np.unique(of[post])
            Rk = weights_by(levels, of, True)
            if kind == "group":
                pi = np.array([np.unique(u_unit[g_unit == v]).size for v in levels], float)
            else:
                pi = np.ones(levels.size)
            pi /= pi.sum()
            Vk = Rk @ V_c @ Rk.T
            comp = pl.DataFrame({"level": levels, "estimate": Rk @ b_c, "se": np.sqrt(np.diag(Vk))})
            return Aggregate(kind, pi @ Rk @ b_c, np.sqrt(pi @ Vk @ pi), df, comp)
        return res.default_aggregate(kind)

    res = EventStudyResult(rel, R @ b_c, R @ V_c @ R.T, ref, "etwfe", fit.nobs, df,
                           {"aggregator": aggregator, "fit": fit, "control": control,
                            "n_rel": np.array([n_c[e_b == r].sum() for r in rel]),
                            "cells": pl.DataFrame({"cohort": cg, "period": ct, "estimate": b_c,
                                                   "se": np.sqrt(np.diag(V_c)), "n": n_c})})
    return res
