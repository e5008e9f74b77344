"""Common input handling of the staggered-DID estimators.

Every estimator takes ``(data, *, y, unit, time, cohort=None | treat=None,
controls=None, cluster=None, weights=None)``; this module validates that once
and returns a ``StaggeredData`` with the adoption time of every unit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from ...errors import ArgumentTypeError, MissingValueWarning, TreatmentError
from ...kernels._jit import jit
from ...panels.panel import (
    Panel,
    _strictly_increasing_pairs,
    check_columns,
    check_numeric,
    finite_mask,
    run_lengths,
    sorted_unique_ids,
    to_polars,
)

__all__ = ["StaggeredData", "prepare", "COHORT", "REL"]

#: names of the derived columns added to the frame
COHORT = "_cohort"  # adoption period, 0 = never treated
REL = "_rel"  # time - cohort for treated units, null for never treated


@dataclass(eq=False)
class StaggeredData:
    """Validated staggered-adoption data.

    Attributes
    ----------
    frame : polars.DataFrame
        Sorted by (unit, time), rows with missing used values dropped, with
        ``_cohort`` (int, 0 = never treated) and ``_rel`` (time - cohort, null
        if never treated), ``_treat`` (0/1, absorbing) added.
    y, unit, time, cluster : str
    controls : list of str
    weights : str or None
    cohorts : ndarray
        Sorted distinct adoption periods (treated cohorts only).
    times : ndarray
        Sorted distinct periods.
    id_codes : tuple of ndarray or None
        Dense (unit, time) codes of the rows, lent by a ``Panel`` whose rows
        were kept as they were (no copy, no second factorization); else None.
    unit_rows, unit_cohort : ndarray or None
        With ``prepare(..., rows=False)``: the number of rows and the adoption
        period (0 = never) of each unit, in frame order; the frame then has
        no derived columns. None otherwise.
    """

    frame: pl.DataFrame
    y: str
    unit: str
    time: str
    controls: list[str]
    cluster: str
    weights: str | None
    cohorts: np.ndarray
    times: np.ndarray
    id_codes: tuple[np.ndarray, np.ndarray] | None = None
    unit_rows: np.ndarray | None = None
    unit_cohort: np.ndarray | None = None

    @property
    def nobs(self) -> int:
        """Number of rows."""
        return self.frame.height

    @property
    def is_balanced(self) -> bool:
        """Whether every unit is observed in every period."""
        return self.frame.height == self.frame[self.unit].n_unique() * self.times.size


def prepare(
    data: Any,
    *,
    y: str,
    unit: str | None = None,
    time: str | None = None,
    cohort: str | None = None,
    treat: str | None = None,
    controls: Sequence[str] | None = None,
    cluster: str | None = None,
    weights: str | None = None,
    rows: bool = True,
) -> StaggeredData:
    """Validate inputs and derive each unit's adoption period.

    ``cohort`` is the adoption-period column (0 or null = never treated);
    otherwise ``treat`` is a 0/1 absorbing treatment from which it is derived
    (the first period with ``treat == 1``). ``time`` must be numeric
    (relative event time is ``time - cohort``). ``unit``/``time`` default to a
    ``Panel``'s ids. ``rows=False`` keeps the adoption period per unit
    (``unit_cohort``) instead of adding three row-level columns to the frame:
    for estimators that work on units (Callaway-Sant'Anna), it saves three
    N-sized columns.
    """
    if isinstance(data, Panel):
        unit = unit or data.unit
        time = time or data.time
    if unit is None or time is None:
        raise ArgumentTypeError("give unit= and time= (or pass a staggerlab Panel)")
    if (cohort is None) == (treat is None):
        raise ArgumentTypeError("give exactly one of cohort= (adoption period) or treat= (0/1 treatment)")
    frame = to_polars(data)
    rows_kept = True  # the rows are the Panel's, in its order: its id codes still apply
    controls = list(controls or [])
    cluster = cluster or unit
    need = [y, unit, time, *controls, cluster, *([weights] if weights else []), cohort or treat]
    check_columns(frame, need)
    check_numeric(frame, [y, time, *controls, *([weights] if weights else [])], "outcome/time/control")
    used = [y, unit, time, *controls, cluster, *([weights] if weights else []), *([treat] if treat else [])]
    keep = finite_mask(frame, used)
    if not keep.all():
        warnings.warn(
            f"dropped {int((~keep).sum())} of {frame.height} row(s) with missing values in {used}",
            MissingValueWarning,
            stacklevel=3,
        )
        frame = frame.filter(pl.Series(keep))
        rows_kept = False
    same_ids = isinstance(data, Panel) and (unit, time) == (data.unit, data.time)
    if same_ids and rows_kept and data.has_codes:  # codes in id order: one pass, no temporaries
        in_order = _strictly_increasing_pairs(data.unit_codes, data.time_codes)
    else:
        in_order = sorted_unique_ids(frame, unit, time)
    if not in_order:  # sorting copies the whole frame: only when needed
        frame = frame.sort(unit, time)
        rows_kept = False
        if frame.select(pl.struct(unit, time).is_duplicated().any()).item():
            from ...errors import DuplicateRowsError

            raise DuplicateRowsError(f"some ({unit}, {time}) pairs appear twice; one row per unit and period is needed")
    # a Panel whose rows were kept lends its id codes (computed once, on first use);
    # the unit-level path needs none
    ids = (data.unit_codes, data.time_codes) if same_ids and rows_kept and (rows or data.has_codes) else None
    if not rows:
        return _prepare_units(frame, y, unit, time, controls, cluster, weights, cohort, treat, ids)
    if cohort is not None:
        check_numeric(frame, [cohort], "cohort")
        g = pl.col(cohort).fill_null(0).fill_nan(0) if frame.schema[cohort].is_float() else pl.col(cohort).fill_null(0)
        frame = frame.with_columns(g.cast(pl.Int64).alias(COHORT))
        if frame.group_by(unit).agg(pl.col(COHORT).n_unique() > 1).to_series(1).any():
            raise TreatmentError(f"cohort column {cohort!r} varies within a unit; it must be the unit's adoption period")
    else:
        check_numeric(frame, [treat], "treatment")
        d = frame[treat].cast(pl.Float64)
        if not d.is_in([0.0, 1.0]).all():
            raise TreatmentError(f"treatment {treat!r} must be 0/1")
        # each unit's first treated period, as a window (a join would copy every column)
        first = pl.col(time).filter(pl.col(treat) == 1).min().over(unit)
        frame = frame.with_columns(first.fill_null(0).cast(pl.Int64).alias(COHORT))
        switched_off = frame.filter((pl.col(COHORT) > 0) & (pl.col(time) >= pl.col(COHORT)) & (pl.col(treat) == 0))
        if switched_off.height:
            raise TreatmentError(
                f"treatment {treat!r} switches off for {switched_off[unit].n_unique()} unit(s); "
                "these estimators need an absorbing (staggered) treatment"
            )
    frame = frame.with_columns(
        pl.when(pl.col(COHORT) > 0).then(pl.col(time).cast(pl.Int64) - pl.col(COHORT)).otherwise(None).alias(REL),
        ((pl.col(COHORT) > 0) & (pl.col(time) >= pl.col(COHORT))).cast(pl.Int64).alias("_treat"),
    )
    adoption = frame[COHORT]  # a Series: filtering the frame would copy every column
    cohorts = np.sort(adoption.filter(adoption > 0).unique().to_numpy())
    _check_cohorts(cohorts, bool((adoption == 0).any()))
    times = np.sort(frame[time].unique().to_numpy())
    return StaggeredData(frame, y, unit, time, controls, cluster, weights, cohorts, times, ids)


def _check_cohorts(cohorts: np.ndarray, has_never: bool) -> None:
    if cohorts.size == 0:
        raise TreatmentError("no unit is ever treated; the treatment never varies")
    if not has_never and cohorts.size == 1:
        raise TreatmentError("every unit is treated at the same time; there is no comparison group")


@jit
def _unit_adoption(lens: np.ndarray, time: np.ndarray, d: np.ndarray, is_cohort: bool) -> tuple[np.ndarray, int]:
    """Per unit (a run of ``lens[u]`` rows in time order): its adoption period
    (0 = never) and the number of units breaking the design: a cohort value
    that varies within the unit (``is_cohort``), or a 0/1 treatment that
    switches off after its first 1. ``kernels.placebo.unit_adoption`` does the
    treatment case for unsorted rows, but needs an N-sized unit code per row,
    which this unit-level path exists to avoid."""
    out = np.zeros(lens.size)
    bad = 0
    pos = 0
    for u in range(lens.size):
        if is_cohort:
            first = d[pos] if d[pos] == d[pos] else 0.0  # NaN: never treated
            for r in range(pos + 1, pos + lens[u]):
                v = d[r] if d[r] == d[r] else 0.0
                if v != first:
                    bad += 1
                    break
        else:
            first = 0.0
            seen = False
            for r in range(pos, pos + lens[u]):
                if d[r] == 1:
                    if not seen:
                        first = float(time[r])
                        seen = True
                elif seen:
                    bad += 1
                    break
        out[u] = first
        pos += lens[u]
    return out, bad


def _prepare_units(frame, y, unit, time, controls, cluster, weights, cohort, treat, ids) -> StaggeredData:
    """``prepare(rows=False)``: the adoption period per unit from one pass over
    the sorted rows (no window expression, no N-sized derived column)."""
    lens = run_lengths(frame[unit]) if ids is None else np.bincount(ids[0])
    t = frame[time].to_numpy()
    if cohort is not None:
        check_numeric(frame, [cohort], "cohort")
        col = frame[cohort]
        d = (col.fill_null(0) if col.null_count() else col).cast(pl.Float64).to_numpy()
        first, bad = _unit_adoption(lens, t, d, True)
        if bad:
            raise TreatmentError(f"cohort column {cohort!r} varies within a unit; it must be the unit's adoption period")
    else:
        check_numeric(frame, [treat], "treatment")
        d = frame[treat].to_numpy()
        if d.dtype != np.bool_ and not np.isin(d, (0, 1)).all():
            raise TreatmentError(f"treatment {treat!r} must be 0/1")
        first, bad = _unit_adoption(lens, t, d, False)
        if bad:
            raise TreatmentError(
                f"treatment {treat!r} switches off for {bad} unit(s); "
                "these estimators need an absorbing (staggered) treatment"
            )
    g = first.astype(np.int64)
    cohorts = np.unique(g[g > 0])
    _check_cohorts(cohorts, bool((g == 0).any()))
    times = np.sort(frame[time].unique().to_numpy())
    return StaggeredData(frame, y, unit, time, controls, cluster, weights, cohorts, times, ids,
                         unit_rows=lens, unit_cohort=g)
