"""Callaway-Sant'Anna data and ATT(g,t) cells: the balanced panel in wide form
(one row per unit) and the 2x2 comparisons of every cohort and period."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from ...errors import CovariatesNotSupportedError, MissingValueWarning, TreatmentError
from ...panels.panel import factorize_column, run_lengths
from .cs_covariates import Design2x2, EstMethod
from .staggered_data import COHORT, StaggeredData

__all__ = ["Wide", "Cells", "to_wide", "att_gt", "ControlGroup", "BasePeriod"]

ControlGroup = Literal["never", "notyet"]
BasePeriod = Literal["varying", "universal"]


# --------------------------------------------------------------------------- data
@dataclass(eq=False)
class Wide:
    """The panel in wide form: one row per unit, one column per period.

    Balanced (``unbalanced`` False): every unit has every period. Unbalanced
    (``allow_unbalanced_panel``): the periods a unit is not observed in are NaN
    in ``y`` (the rows kept by ``prepare`` are all finite, so NaN means absent).
    """

    y: np.ndarray  # n x T outcomes (balanced: a view of the frame's column when it is float64)
    g: np.ndarray  # n adoption period (0 = never)
    w: np.ndarray  # n unit weights (ones if unweighted)
    cluster: np.ndarray  # n dense cluster codes (unit codes if clustered by unit)
    times: np.ndarray  # T periods
    by_unit: bool  # clustered by unit (no summing of influence functions)
    unbalanced: bool = False  # some (unit, period) are absent: NaN in y
    nobs: int = 0  # rows (unit-periods) of the kept units
    x: np.ndarray | None = None  # n x T x p covariates (None: no covariates)
    x_names: tuple[str, ...] = ()  # their columns


def _unit_layout(sd: StaggeredData) -> tuple[np.ndarray, np.ndarray]:
    """Rows and adoption period of each unit, in frame order (sorted by unit)."""
    if sd.unit_cohort is not None:
        return sd.unit_rows, sd.unit_cohort
    lens = run_lengths(sd.frame[sd.unit])
    starts = np.cumsum(lens) - lens
    return lens, sd.frame[COHORT].to_numpy()[starts].astype(np.int64)


def _per_unit(values: np.ndarray, lens: np.ndarray) -> np.ndarray | None:
    """Each unit's value of a column, or None if it varies within a unit."""
    first = values[np.cumsum(lens) - lens]
    return first if np.array_equal(values, np.repeat(first, lens)) else None


def to_wide(sd: StaggeredData, anticipation: int, allow_unbalanced: bool = False) -> Wide:
    frame = sd.frame
    times = sd.times
    n_t = times.size
    lens, g = _unit_layout(sd)
    complete = lens == n_t
    # as did: a panel that is complete needs no special path, whatever the option
    unbalanced = bool(allow_unbalanced and not complete.all())
    if unbalanced and sd.controls:
        raise CovariatesNotSupportedError(
            f"controls {sd.controls} with allow_unbalanced_panel=True on an unbalanced panel are not supported "
            f"({int((~complete).sum())} of {complete.size} units are not observed in all {n_t} periods); "
            "use allow_unbalanced_panel=False (the units not observed in every period are dropped) or no controls"
        )
    keep = np.ones(lens.size, dtype=bool) if unbalanced else complete
    if not keep.all():
        warnings.warn(
            f"Callaway-Sant'Anna needs a balanced panel; dropped {int((~keep).sum())} of {keep.size} unit(s) "
            f"not observed in all {n_t} periods (allow_unbalanced_panel=True keeps them)",
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
        lens = lens[keep]
    n = g.size
    if unbalanced:
        y = np.full((n, n_t), np.nan)
        # prepare() sorted the rows by (unit, time): unit i's rows are its run
        y[np.repeat(np.arange(n), lens), np.searchsorted(times, frame[sd.time].to_numpy())] = (
            frame[sd.y].cast(pl.Float64).to_numpy()
        )
    else:
        # prepare() sorted the rows by (unit, time) with no pair repeated, so a
        # unit with all n_t rows has exactly the periods `times`, in order: the
        # long columns reshape to units x periods as they are (no copy for float64)
        y = frame[sd.y].cast(pl.Float64).to_numpy().reshape(n, n_t)
    # adoption after the last period (+ anticipation) is never treated within the sample (as did)
    g = np.where(g > times[-1] + anticipation, 0, g)
    if sd.weights is not None:
        w = _per_unit(frame[sd.weights].cast(pl.Float64).to_numpy(), lens)
        if w is None:
            raise TreatmentError(f"weights {sd.weights!r} vary within a unit; give unit-level weights")
        if np.any(w < 0):
            raise TreatmentError("weights must be non-negative")
    else:
        w = np.ones(n)
    by_unit = sd.cluster == sd.unit
    if by_unit:
        cluster = np.arange(n)
    else:
        cluster = _per_unit(factorize_column(frame[sd.cluster]), lens)
        if cluster is None:
            raise TreatmentError(
                f"cluster {sd.cluster!r} varies within a unit; Callaway-Sant'Anna clusters must nest units"
            )
        _, cluster = np.unique(cluster, return_inverse=True)
    x = None
    if sd.controls:  # balanced here (refused above otherwise): reshapes as y does
        x = np.stack([frame[c].cast(pl.Float64).to_numpy().reshape(n, n_t) for c in sd.controls], axis=-1)
    return Wide(y, g, w, cluster.astype(np.int64), np.asarray(times), by_unit, unbalanced, int(lens.sum()),
                x, tuple(sd.controls))


# --------------------------------------------------------------------------- ATT(g,t)
_NEVER_ONLY = np.iinfo(np.int64).max  # horizon of a cell whose comparison group is the never-treated


@dataclass(eq=False)
class Cells:
    """The ATT(g,t) and what their influence functions are made of.

    Cell c compares the treated cohort ``group[c]`` with the units never
    treated or (not-yet design) treated after ``horizon[c]``, between period
    ``t_idx[c]`` and base period ``b_idx[c]``. The influence functions (did's
    scaling, ``se = sqrt(sum inf^2) / n``, n the units) are recomputed from
    the outcomes when needed, never stored as a units x cells matrix (360 MB
    at a million units).

    Balanced panel: ``mu1, mu0`` are the weighted mean changes
    ``y[:, t_idx] - y[:, b_idx]`` of the treated and comparison units,
    ``s1, s0`` their weights; the influence function is
    ``n w_i (dy_i - mu1) / s1`` on the treated, ``-n w_i (dy_i - mu0) / s0``
    on the comparison units and 0 elsewhere. The ``*b`` fields are None.

    Unbalanced panel (did's ``allow_unbalanced_panel``): the cell is the
    repeated-cross-section DID of the rows observed in its two periods.
    ``mu1, mu0, s1, s0`` are the weighted mean outcome and weight of the
    treated / comparison rows in period ``t_idx``, ``mu1b, mu0b, s1b, s0b``
    those in the base period; ``att = (mu1 - mu1b) - (mu0 - mu0b)``. A unit's
    influence function is the sum over its rows in the two periods of
    ``+-n w_i (y_is - mean) / weight`` (sign + for the treated in ``t`` and the
    comparison units in the base period).

    With covariates (balanced panel only) the influence functions involve the
    estimated outcome regression and propensity score of each 2x2
    (:mod:`.cs_covariates`); they are kept as the n x k matrix ``inf``;
    ``mu1, mu0`` are 0 and ``s1, s0`` the treated / comparison weights.
    """

    group: np.ndarray  # k cohort of each cell
    time: np.ndarray  # k period
    base: np.ndarray  # k base period
    att: np.ndarray  # k
    t_idx: np.ndarray  # k column of the period in the wide outcomes
    b_idx: np.ndarray  # k column of the base period
    horizon: np.ndarray  # k comparison units: g == 0 or (g > horizon and g != group)
    mu1: np.ndarray  # k weighted mean change (unbalanced: mean in t) of the treated
    mu0: np.ndarray  # k ... of the comparison units
    s1: np.ndarray  # k treated weight (0: the universal reference cell, identically 0)
    s0: np.ndarray  # k comparison weight
    cohorts: np.ndarray  # G distinct cohorts of the cells
    gidx: np.ndarray  # n each unit's position in `cohorts` (-1: none)
    mu1b: np.ndarray | None = None  # k unbalanced only: treated mean in the base period
    mu0b: np.ndarray | None = None  # k ... comparison mean in the base period
    s1b: np.ndarray | None = None  # k ... treated weight in the base period
    s0b: np.ndarray | None = None  # k ... comparison weight in the base period
    inf: np.ndarray | None = None  # n x k with covariates: the influence functions (did's scale)


def _means(wd: Wide, w1: np.ndarray, w0: np.ndarray, ti: int, bi: int, filled: np.ndarray | None,
           seen: np.ndarray | None) -> tuple[float, ...] | str:
    """A cell's weighted means and weights: ``(mu1, mu0, s1, s0)`` balanced,
    ``(mu1, mu0, s1, s0, mu1b, mu0b, s1b, s0b)`` unbalanced; or, if a group
    has no weight, which one (treated or comparison, in which period)."""
    if filled is None:
        s1, s0 = w1.sum(), w0.sum()
        if s1 <= 0 or s0 <= 0:
            return "treated unit" if s1 <= 0 else "comparison unit"
        dy = wd.y[:, ti] - wd.y[:, bi]
        return (w1 @ dy) / s1, (w0 @ dy) / s0, s1, s0
    out = []
    for col in (ti, bi):
        v1, v0 = w1 * seen[:, col], w0 * seen[:, col]
        s1, s0 = v1.sum(), v0.sum()
        if s1 <= 0 or s0 <= 0:
            return f"{'treated' if s1 <= 0 else 'comparison'} unit observed in {wd.times[col]}"
        out.append(((v1 @ filled[:, col]) / s1, (v0 @ filled[:, col]) / s0, s1, s0))
    (m1, m0, s1, s0), (m1b, m0b, s1b, s0b) = out
    return m1, m0, s1, s0, m1b, m0b, s1b, s0b


def _covariate_cell(wd: Wide, treated: np.ndarray, ctrl: np.ndarray, ti: int, bi: int, est_method: EstMethod,
                    where: str, key: tuple, designs: dict, starts: dict) -> tuple[float, np.ndarray]:
    """ATT and did-scaled influence function (n) of a 2x2 with covariates; the
    covariates are those of the earlier of its two periods (R did's panel2cs2).
    ``designs`` caches the outcome-free part by (cohort, comparison horizon,
    covariate period); ``starts`` the last logit of each cohort (a warm start)."""
    period = min(ti, bi)
    design_key = (*key, period)
    if design_key not in designs:
        designs.clear()  # a cohort's cells come in period order: only the current design is reused
        sub = np.flatnonzero(treated | ctrl)
        designs[design_key] = sub, Design2x2(wd.x[sub, period], treated[sub].astype(float), wd.w[sub], est_method,
                                             wd.x_names, where, starts.get(key[0]))
        if designs[design_key][1].ps_params is not None:
            starts[key[0]] = designs[design_key][1].ps_params
    sub, design = designs[design_key]
    att, inf = design.att(wd.y[sub, ti] - wd.y[sub, bi])
    n = wd.g.size
    full = np.zeros(n)
    full[sub] = inf * (n / sub.size)
    return att, full


def att_gt(wd: Wide, control: ControlGroup, anticipation: int, base_period: BasePeriod,
           est_method: EstMethod = "dr") -> Cells:
    times = wd.times
    cohorts = np.unique(wd.g[wd.g > 0])
    cohorts = cohorts[cohorts > times[0] + anticipation]
    never = wd.g == 0
    if control == "never" and not never.any():
        raise TreatmentError(
            "no never-treated unit: use control='notyet' (or drop the periods after the last adoption)"
        )
    # unbalanced: outcomes with the absent periods as 0 and where they are present, made once
    seen = ~np.isnan(wd.y) if wd.unbalanced else None
    filled = np.where(seen, wd.y, 0.0) if wd.unbalanced else None
    n_stats = 8 if wd.unbalanced else 4
    rows: list[tuple] = []  # (g, t, b, att, ti, bi, horizon, mu1, mu0, s1, s0[, mu1b, mu0b, s1b, s0b])
    infs: list[np.ndarray | None] = []  # with covariates: each cell's influence function (None: zero)
    covariates = wd.x is not None
    designs: dict = {}  # the current 2x2 design (covariates): reused by the cells that share it
    starts: dict = {}  # each cohort's last propensity-score coefficients
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
                rows.append((g, times[ti], times[bi], 0.0, ti, bi, horizon, 0.0, 0.0, 0.0, 1.0)
                            + (0.0, 0.0, 0.0, 1.0)[: n_stats - 4])
                infs.append(None)
                continue
            if covariates:  # only the weights: the 2x2 estimator has its own means
                s1, s0 = wd.w[treated].sum(), wd.w[ctrl].sum()
                stats = ("treated unit" if s1 <= 0 else "comparison unit") if min(s1, s0) <= 0 else (0.0, 0.0, s1, s0)
            else:
                stats = _means(wd, wd.w * treated, wd.w * ctrl, ti, bi, filled, seen)
            if isinstance(stats, str):
                warnings.warn(f"ATT({g},{times[ti]}) has no {stats}; skipped", UserWarning, stacklevel=4)
                continue
            if covariates:
                where = f"ATT({g}, {times[ti]}) (cohort {g}, period {times[ti]}, base period {times[bi]})"
                att, inf = _covariate_cell(wd, treated, ctrl, ti, bi, est_method, where, (g, horizon), designs,
                                           starts)
                rows.append((g, times[ti], times[bi], att, ti, bi, horizon, 0.0, 0.0, stats[2], stats[3]))
                infs.append(inf)
                continue
            att = stats[0] - stats[1] if n_stats == 4 else (stats[0] - stats[4]) - (stats[1] - stats[5])
            rows.append((g, times[ti], times[bi], att, ti, bi, horizon, *stats))
    if not rows:
        raise TreatmentError("no ATT(g,t) can be estimated (no cohort with a pre-period and a comparison group)")
    cols = list(zip(*rows))
    ints = [np.asarray(c, dtype=np.int64) for c in cols[:3]]
    idx = [np.asarray(c, dtype=np.int64) for c in cols[4:7]]
    flt = [np.asarray(c, dtype=float) for c in cols[7:]]
    cell_cohorts = np.unique(ints[0])
    at = np.searchsorted(cell_cohorts, wd.g).clip(0, cell_cohorts.size - 1)
    gidx = np.where(cell_cohorts[at] == wd.g, at, -1)
    inf = None
    if covariates:
        inf = np.zeros((wd.g.size, len(rows)))
        for j, col in enumerate(infs):
            if col is not None:
                inf[:, j] = col
    return Cells(*ints, np.asarray(cols[3], dtype=float), *idx, *flt[:4], cell_cohorts, gidx, *flt[4:], inf=inf)
