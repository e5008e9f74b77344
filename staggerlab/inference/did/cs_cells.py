"""Callaway-Sant'Anna data and ATT(g,t) cells: the balanced panel in wide form
(one row per unit) and the 2x2 comparisons of every cohort and period."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from ...errors import MissingValueWarning, TreatmentError
from ...panels.panel import run_lengths
from .staggered_data import COHORT, StaggeredData

__all__ = ["Wide", "Cells", "to_wide", "att_gt", "ControlGroup", "BasePeriod"]

ControlGroup = Literal["never", "notyet"]
BasePeriod = Literal["varying", "universal"]


# --------------------------------------------------------------------------- data
@dataclass(eq=False)
class Wide:
    """Balanced panel in wide form: one row per unit."""

    y: np.ndarray  # n x T outcomes (a view of the frame's column when it is float64)
    g: np.ndarray  # n adoption period (0 = never)
    w: np.ndarray  # n unit weights (ones if unweighted)
    cluster: np.ndarray  # n dense cluster codes (unit codes if clustered by unit)
    times: np.ndarray  # T periods
    by_unit: bool  # clustered by unit (no summing of influence functions)


def _unit_layout(sd: StaggeredData) -> tuple[np.ndarray, np.ndarray]:
    """Rows and adoption period of each unit, in frame order (sorted by unit)."""
    if sd.unit_cohort is not None:
        return sd.unit_rows, sd.unit_cohort
    lens = run_lengths(sd.frame[sd.unit])
    starts = np.cumsum(lens) - lens
    return lens, sd.frame[COHORT].to_numpy()[starts].astype(np.int64)


def to_wide(sd: StaggeredData, anticipation: int) -> Wide:
    frame = sd.frame
    times = sd.times
    n_t = times.size
    lens, g = _unit_layout(sd)
    keep = lens == n_t
    if not keep.all():
        warnings.warn(
            f"Callaway-Sant'Anna needs a balanced panel; dropped {int((~keep).sum())} unit(s) not observed "
            f"in all {n_t} periods",
            MissingValueWarning,
            stacklevel=4,
        )
    first = times[0]
    early = keep & (g > 0) & (g <= first + anticipation)
    if early.any():
        warnings.warn(
            f"dropped {int(early.sum())} unit(s) already treated in the first period "
            f"({first}{' + anticipation' if anticipation else ''}); they have no pre-period",
            UserWarning,
            stacklevel=4,
        )
        keep &= ~early
    if not keep.any():
        raise TreatmentError("no unit is left after balancing the panel")
    if not keep.all():  # one copy of the frame, without the dropped units
        frame = frame.filter(pl.Series(np.repeat(keep, lens)))
        g = g[keep]
    n = g.size
    # prepare() sorted the rows by (unit, time) with no pair repeated, so a
    # unit with all n_t rows has exactly the periods `times`, in order: the
    # long columns reshape to units x periods as they are (no copy for float64)
    y = frame[sd.y].cast(pl.Float64).to_numpy().reshape(n, n_t)
    # adoption after the last period (+ anticipation) is never treated within the sample (as did)
    g = np.where(g > times[-1] + anticipation, 0, g)
    if sd.weights is not None:
        wmat = frame[sd.weights].cast(pl.Float64).to_numpy().reshape(n, n_t)
        if not np.all(wmat == wmat[:, :1]):
            raise TreatmentError(f"weights {sd.weights!r} vary within a unit; give unit-level weights")
        w = wmat[:, 0].copy()
        if np.any(w < 0):
            raise TreatmentError("weights must be non-negative")
    else:
        w = np.ones(n)
    by_unit = sd.cluster == sd.unit
    if by_unit:
        cluster = np.arange(n)
    else:
        cmat = frame[sd.cluster].to_numpy().reshape(n, n_t)
        if not np.all(cmat == cmat[:, :1]):
            raise TreatmentError(
                f"cluster {sd.cluster!r} varies within a unit; Callaway-Sant'Anna clusters must nest units"
            )
        _, cluster = np.unique(cmat[:, 0], return_inverse=True)
    return Wide(y, g, w, cluster.astype(np.int64), np.asarray(times), by_unit)


# --------------------------------------------------------------------------- ATT(g,t)
_NEVER_ONLY = np.iinfo(np.int64).max  # horizon of a cell whose comparison group is the never-treated


@dataclass(eq=False)
class Cells:
    """The ATT(g,t) and what their influence functions are made of.

    Cell c compares the treated cohort ``group[c]`` with the units never
    treated or (not-yet design) treated after ``horizon[c]``, on the outcome
    change ``y[:, t_idx] - y[:, b_idx]``. Its influence function (did's
    scaling, ``se = sqrt(sum inf^2) / n``) is
    ``n w_i (dy_i - mu1) / s1`` on its treated units,
    ``-n w_i (dy_i - mu0) / s0`` on its comparison units and 0 elsewhere:
    it is recomputed from the outcomes when needed, never stored as a
    units x cells matrix (360 MB at a million units).
    """

    group: np.ndarray  # k cohort of each cell
    time: np.ndarray  # k period
    base: np.ndarray  # k base period
    att: np.ndarray  # k
    t_idx: np.ndarray  # k column of the period in the wide outcomes
    b_idx: np.ndarray  # k column of the base period
    horizon: np.ndarray  # k comparison units: g == 0 or (g > horizon and g != group)
    mu1: np.ndarray  # k weighted mean change of the treated
    mu0: np.ndarray  # k ... of the comparison units
    s1: np.ndarray  # k treated weight (0: the universal reference cell, identically 0)
    s0: np.ndarray  # k comparison weight
    cohorts: np.ndarray  # G distinct cohorts of the cells
    gidx: np.ndarray  # n each unit's position in `cohorts` (-1: none)


def att_gt(wd: Wide, control: ControlGroup, anticipation: int, base_period: BasePeriod) -> Cells:
    times = wd.times
    cohorts = np.unique(wd.g[wd.g > 0])
    cohorts = cohorts[cohorts > times[0] + anticipation]
    never = wd.g == 0
    if control == "never" and not never.any():
        raise TreatmentError(
            "no never-treated unit: use control='notyet' (or drop the periods after the last adoption)"
        )
    rows: list[tuple] = []  # (g, t, b, att, ti, bi, horizon, mu1, mu0, s1, s0)
    for g in cohorts:
        treated = wd.g == g
        pre_idx = np.flatnonzero(times + anticipation < g)  # periods before anticipation starts
        if pre_idx.size == 0:
            continue
        g_base = pre_idx[-1]
        for ti in range(times.size):
            if base_period == "universal":
                bi = g_base
            elif times[ti] + anticipation >= g:
                bi = g_base
            else:
                if ti == 0:
                    continue
                bi = ti - 1
            if base_period == "varying" and ti == bi:
                continue
            if control == "never":
                horizon = _NEVER_ONLY
                ctrl = never
            else:
                horizon = int(max(times[ti], times[bi]) + anticipation)
                ctrl = never | ((wd.g > horizon) & (wd.g != g))
            if ti == bi:  # the universal reference cell: exactly zero
                rows.append((g, times[ti], times[bi], 0.0, ti, bi, horizon, 0.0, 0.0, 0.0, 1.0))
                continue
            w1 = wd.w * treated
            w0 = wd.w * ctrl
            s1, s0 = w1.sum(), w0.sum()
            if s1 <= 0 or s0 <= 0:
                warnings.warn(
                    f"ATT({g},{times[ti]}) has no {'treated' if s1 <= 0 else 'comparison'} unit; skipped",
                    UserWarning,
                    stacklevel=4,
                )
                continue
            dy = wd.y[:, ti] - wd.y[:, bi]
            mu1 = (w1 @ dy) / s1
            mu0 = (w0 @ dy) / s0
            rows.append((g, times[ti], times[bi], mu1 - mu0, ti, bi, horizon, mu1, mu0, s1, s0))
    if not rows:
        raise TreatmentError("no ATT(g,t) can be estimated (no cohort with a pre-period and a comparison group)")
    cols = list(zip(*rows))
    ints = [np.asarray(c, dtype=np.int64) for c in cols[:3]]
    idx = [np.asarray(c, dtype=np.int64) for c in cols[4:7]]
    flt = [np.asarray(c, dtype=float) for c in cols[7:]]
    cell_cohorts = np.unique(ints[0])
    at = np.searchsorted(cell_cohorts, wd.g).clip(0, cell_cohorts.size - 1)
    gidx = np.where(cell_cohorts[at] == wd.g, at, -1)
    return Cells(*ints, np.asarray(cols[3], dtype=float), *idx, *flt, cell_cohorts, gidx)
