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

from ..errors import MissingValueWarning, TreatmentError
from ..panels.panel import Panel, check_columns, check_numeric, finite_mask, to_polars

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

    @property
    def nobs(self) -> int:
        """Number of rows."""
        return self.frame.height

    @property
    def is_balanced(self) -> bool:
        """Whether every unit is observed in every period."""
        return self.frame.height == self.frame[self.unit].n_unique() * self.times.size


def _sorted_unique(frame: pl.DataFrame, unit: str, time: str) -> bool:
    """Whether the rows are sorted by (unit, time) with no pair repeated (then
    neither the sort nor the duplicate check is needed; panels usually are)."""
    if frame.height < 2:
        return True
    u, t = pl.col(unit), pl.col(time)
    step = (u > u.shift(1)) | ((u == u.shift(1)) & (t > t.shift(1)))
    try:
        return bool(frame.select(step.slice(1).all()).item())
    except pl.exceptions.PolarsError:  # ids that do not compare (e.g. some categoricals): sort
        return False


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
) -> StaggeredData:
    """Validate inputs and derive each unit's adoption period.

    ``cohort`` is the adoption-period column (0 or null = never treated);
    otherwise ``treat`` is a 0/1 absorbing treatment from which it is derived
    (the first period with ``treat == 1``). ``time`` must be numeric
    (relative event time is ``time - cohort``). ``unit``/``time`` default to a
    ``Panel``'s ids.
    """
    if isinstance(data, Panel):
        unit = unit or data.unit
        time = time or data.time
    if unit is None or time is None:
        raise TypeError("give unit= and time= (or pass a staggerlab Panel)")
    if (cohort is None) == (treat is None):
        raise TypeError("give exactly one of cohort= (adoption period) or treat= (0/1 treatment)")
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
    if not _sorted_unique(frame, unit, time):  # sorting copies the whole frame: only when needed
        frame = frame.sort(unit, time)
        rows_kept = False
        if frame.select(pl.struct(unit, time).is_duplicated().any()).item():
            from ..errors import DuplicateRowsError

            raise DuplicateRowsError(f"some ({unit}, {time}) pairs appear twice; one row per unit and period is needed")
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
    if cohorts.size == 0:
        raise TreatmentError("no unit is ever treated; the treatment never varies")
    if not (adoption == 0).any() and cohorts.size == 1:
        raise TreatmentError("every unit is treated at the same time; there is no comparison group")
    times = np.sort(frame[time].unique().to_numpy())
    ids = None
    if isinstance(data, Panel) and rows_kept and (unit, time) == (data.unit, data.time):
        ids = (data.unit_codes, data.time_codes)
    return StaggeredData(frame, y, unit, time, controls, cluster, weights, cohorts, times, ids)
