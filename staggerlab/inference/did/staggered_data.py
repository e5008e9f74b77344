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
from ...kernels.panel import strictly_increasing_pairs
from ...panels.adoption import adoption_times
from ...panels.panel import (
    Panel,
    check_columns,
    check_not_all_missing,
    check_numeric,
    check_periods,
    column_list,
    factorize_column,
    finite_mask,
    isolate_columns,
    missing_columns,
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
        The caller's columns (those named with a leading ``_`` renamed ``"<name> (data)"``,
        see :meth:`name`), sorted by (unit, time), rows with missing used values dropped, with
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
    unit_rows : ndarray
        The number of rows of each unit, in frame order.
    unit_cohort : ndarray or None
        With ``prepare(..., rows=False)``: the adoption period (0 = never) of
        each unit, in frame order; the frame then has no derived columns.
        None otherwise (the frame's ``_cohort`` column holds it).
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
    names: dict[str, str] | None = None

    def name(self, column: str) -> str:
        """The frame's name of the caller's column ``column`` (a name starting
        with ``_``, the prefix of the added columns, is renamed)."""
        return (self.names or {}).get(column, column)

    def caller(self, column: str) -> str:
        """The caller's name of the frame's column ``column`` (inverse of :meth:`name`)."""
        return next((k for k, v in (self.names or {}).items() if v == column), column)

    def as_caller(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The caller's columns of ``frame`` (this data's frame or a subset of
        its rows), under the caller's names, without the added columns."""
        names = self.names or {c: c for c in frame.columns if not c.startswith("_")}
        out = frame.select([v for v in names.values() if v in frame.columns])
        return out.rename({v: k for k, v in names.items() if k != v})

    @property
    def nobs(self) -> int:
        """Number of rows."""
        return self.frame.height

    @property
    def is_balanced(self) -> bool:
        """Whether every unit is observed in every period."""
        return self.frame.height == self.frame[self.unit].n_unique() * self.times.size

    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense (unit, time) codes of the rows, computed once (and kept in
        ``id_codes`` for every later user): the rows are sorted by unit, so a
        unit's code is its run's index and only the periods are factorized."""
        if self.id_codes is None:
            lens = self.unit_rows if self.unit_rows is not None else run_lengths(self.frame[self.unit])
            ucode = np.repeat(np.arange(lens.size, dtype=np.int64), lens)
            self.id_codes = (ucode, factorize_column(self.frame[self.time]))
        return self.id_codes

    def panel(self, frame: pl.DataFrame | None = None) -> Panel:
        """``frame`` (default: the data; else a frame with the same rows, e.g.
        with added columns) as a ``Panel`` lending the id codes to a fit."""
        frame = self.frame if frame is None else frame
        ucode, tcode = self.codes()
        lens = self.unit_rows if self.unit_rows is not None else np.bincount(ucode)
        units = self.frame[self.unit].gather(np.cumsum(lens) - lens)
        times = pl.Series(self.time, self.times, dtype=self.frame.schema[self.time])
        return Panel(frame, self.unit, self.time, (ucode, tcode, units, times))


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

    ``cohort`` is the adoption-period column (0 = never treated; a missing
    value, null or NaN, is read as never treated with an
    :class:`~staggerlab.errors.AdoptionGapWarning` counting the units);
    otherwise ``treat`` is a 0/1 absorbing treatment from which it is derived
    (the first *observed* period with ``treat == 1``). On an unbalanced panel
    a unit whose adoption-period row is missing then gets its next observed
    period, an upper bound of its adoption: an ``AdoptionGapWarning`` counts
    such units (gap between the last untreated and first treated observed
    periods longer than the panel's period step). When the adoption periods
    are known, pass them instead: a unit-level column constant within each
    unit, e.g. ``df.with_columns(pl.col("adopt_year").fill_null(0).alias("g"))``
    and ``cohort="g"``. ``time`` must be numeric
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
    check_numeric(frame, [y, *controls, *([weights] if weights else [])], "outcome/control")
    check_periods(frame, time)
    same_ids = isinstance(data, Panel) and (unit, time) == (data.unit, data.time)
    # no column of the caller's may be named like the columns added below
    frame, names = isolate_columns(frame)
    label = {v: k for k, v in names.items()}  # messages name the caller's columns
    y, unit, time, cluster = names[y], names[unit], names[time], names[cluster]
    controls = [names[c] for c in controls]
    weights = names[weights] if weights else None
    cohort = names[cohort] if cohort else None
    treat = names[treat] if treat else None
    used = [y, unit, time, *controls, cluster, *([weights] if weights else []), *([treat] if treat else [])]
    keep = finite_mask(frame, used)
    if not keep.any():
        check_not_all_missing(frame, used)
    # the adoption period is a fact about the treatment: a row missing only the
    # outcome (or a control) still dates it, so it is read before those rows go
    dated = frame if treat is not None and not keep.all() else None
    if not keep.all():
        warnings.warn(
            f"dropped {int((~keep).sum())} of {frame.height} row(s) with missing values in "
            f"{column_list([label[c] for c in missing_columns(frame, used)])}",
            MissingValueWarning,
            stacklevel=3,
        )
        frame = frame.filter(pl.Series(keep))
        rows_kept = False
    if same_ids and rows_kept and data.has_codes:  # codes in id order: one pass, no temporaries
        in_order = strictly_increasing_pairs(data.unit_codes, data.time_codes)
    else:
        in_order = sorted_unique_ids(frame, unit, time)
    if not in_order:  # sorting copies the whole frame: only when needed
        frame = frame.sort(unit, time)
        rows_kept = False
        u, t = frame[unit], frame[time]
        dup = ((u == u.shift(1)) & (t == t.shift(1))).fill_null(False)  # sorted: repeats are adjacent
        if dup.any():
            from ...errors import DuplicateRowsError

            ex = list(zip(u.filter(dup).head(3).to_list(), t.filter(dup).head(3).to_list()))
            raise DuplicateRowsError(
                f"{int(dup.sum())} row(s) repeat a ({label[unit]}, {label[time]}) pair of another row, e.g. {ex}; "
                "one row per unit and period is needed"
            )
    # a Panel whose rows were kept lends its id codes (computed once, on first use);
    # the unit-level path needs none
    ids = (data.unit_codes, data.time_codes) if same_ids and rows_kept and (rows or data.has_codes) else None
    if not rows:
        sd = _prepare_units(frame, y, unit, time, controls, cluster, weights, cohort, treat, ids, dated)
        sd.names = names
        return sd
    lens = run_lengths(frame[unit]) if ids is None else np.bincount(ids[0])
    g = _adoption(frame, unit, time, cohort, treat, lens) if dated is None else _adoption_of(dated, frame, unit,
                                                                                               time, treat, lens)
    frame = frame.with_columns(pl.Series(COHORT, np.repeat(g, lens)))
    frame = frame.with_columns(
        pl.when(pl.col(COHORT) > 0).then(pl.col(time).cast(pl.Int64) - pl.col(COHORT)).otherwise(None).alias(REL),
        ((pl.col(COHORT) > 0) & (pl.col(time) >= pl.col(COHORT))).cast(pl.Int64).alias("_treat"),
    )
    adoption = frame[COHORT]  # a Series: filtering the frame would copy every column
    cohorts = np.sort(adoption.filter(adoption > 0).unique().to_numpy())
    _check_cohorts(cohorts, bool((adoption == 0).any()))
    times = np.sort(frame[time].unique().to_numpy())
    return StaggeredData(frame, y, unit, time, controls, cluster, weights, cohorts, times, ids, unit_rows=lens,
                         names=names)


def _adoption(frame: pl.DataFrame, unit: str, time: str, cohort: str | None, treat: str | None,
              lens: np.ndarray) -> np.ndarray:
    """Adoption period of each unit of a frame sorted by (unit, time)."""
    if cohort is not None:
        check_numeric(frame, [cohort], "cohort")
        col = frame[cohort]
        # null and NaN alike: read as never treated, with an AdoptionGapWarning counting the units
        values = col.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    else:
        check_numeric(frame, [treat], "treatment")
        values = frame[treat].to_numpy()
    return adoption_times(values, frame[time].to_numpy(), column=cohort or treat, units=frame[unit],
                          run_lengths=lens, cohort=cohort is not None).g


def _adoption_of(full: pl.DataFrame, frame: pl.DataFrame, unit: str, time: str, treat: str,
                 lens: np.ndarray) -> np.ndarray:
    """Adoption period of each unit of ``frame`` (sorted by (unit, time), some
    rows of ``full`` dropped), read from every row of ``full`` with a unit,
    period and treatment value."""
    src = full.select(unit, time, treat).filter(pl.Series(finite_mask(full, [unit, time, treat])))
    if not sorted_unique_ids(src, unit, time):
        src = src.sort(unit, time)  # the order `frame` was given (duplicates were refused for it)
    src_lens = run_lengths(src[unit])
    g_all = _adoption(src, unit, time, None, treat, src_lens)
    # the units of `frame` are a subsequence of those of `src`, in the same order
    kept_units = frame[unit].gather(np.cumsum(lens) - lens)
    present = src[unit].gather(np.cumsum(src_lens) - src_lens).is_in(kept_units.implode())
    return g_all[present.to_numpy()]


def _check_cohorts(cohorts: np.ndarray, has_never: bool) -> None:
    if not has_never and cohorts.size == 1:
        raise TreatmentError("every unit is treated at the same time; there is no comparison group")


def _prepare_units(frame, y, unit, time, controls, cluster, weights, cohort, treat, ids, dated) -> StaggeredData:
    """``prepare(rows=False)``: the adoption period per unit from one pass over
    the sorted rows (no window expression, no N-sized derived column)."""
    lens = run_lengths(frame[unit]) if ids is None else np.bincount(ids[0])
    g = _adoption(frame, unit, time, cohort, treat, lens) if dated is None else _adoption_of(dated, frame, unit,
                                                                                               time, treat, lens)
    cohorts = np.unique(g[g > 0])
    _check_cohorts(cohorts, bool((g == 0).any()))
    times = np.sort(frame[time].unique().to_numpy())
    return StaggeredData(frame, y, unit, time, controls, cluster, weights, cohorts, times, ids,
                         unit_rows=lens, unit_cohort=g)
