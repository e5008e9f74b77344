"""Each unit's adoption period: the one routine behind every staggered
procedure (placebo draws, event studies, Callaway-Sant'Anna, the dCDH
weights, the battery), with one set of error messages."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AdoptionGapWarning, NonAbsorbingTreatmentError, TreatmentError
from ..kernels._jit import readonly
from ..kernels.adoption import adoption_by_row, adoption_by_run

__all__ = ["Adoption", "adoption_times"]


@dataclass(frozen=True, eq=False)
class Adoption:
    """Adoption periods of the units of a panel.

    Attributes
    ----------
    g : ndarray of int64
        Adoption period of every unit (0 = never treated), in unit-code order
        (or run order for rows sorted by unit).
    absorbing : bool
        False when a 0/1 treatment switches off for some unit (only returned
        with ``allow_switching=True``; ``g`` is then the first treated period).
    n_switching : int
        Number of units whose treatment switches off.
    n_bounded : int
        Number of treated units whose adoption is only bounded (0/1 treatment):
        the gap between their last untreated and first treated observed periods
        exceeds the panel's period step, so ``g`` (the first treated observed
        period) is an upper bound of the true adoption period.
    n_missing : int
        Number of units whose cohort value is missing (NaN), read as never
        treated (cohort column).
    """

    g: np.ndarray
    absorbing: bool
    n_switching: int
    n_bounded: int = 0
    n_missing: int = 0


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value it holds (messages show ``39``, not ``np.int64(39)``)."""
    return v.item() if isinstance(v, np.generic) else v


def adoption_times(
    values: np.ndarray,
    time: np.ndarray,
    *,
    column: str,
    units: Any,
    unit_codes: np.ndarray | None = None,
    run_lengths: np.ndarray | None = None,
    cohort: bool = False,
    allow_switching: bool = False,
    require_treated: bool = True,
) -> Adoption:
    """Each unit's adoption period from a 0/1 treatment or a cohort column.

    Parameters
    ----------
    values : ndarray
        The treatment (0/1) or, with ``cohort=True``, the adoption period
        (0 or NaN = never treated) of every row.
    time : ndarray
        The period of every row (integers for ``unit_codes``).
    column : str
        Name of the treatment / cohort column, for the messages.
    units : array-like
        With ``unit_codes``: the unit ids in code order; with ``run_lengths``:
        the unit id of every row. Only read to name an offending unit.
    unit_codes : ndarray, optional
        Dense unit code of every row (rows in any order).
    run_lengths : ndarray, optional
        Rows of each unit, for rows sorted by unit and time (no N-sized code).
    cohort : bool
        ``values`` is a unit-level adoption period, not a 0/1 treatment.
    allow_switching : bool
        Return ``absorbing=False`` for a treatment that switches off instead
        of raising ``NonAbsorbingTreatmentError``.
    require_treated : bool
        Raise ``TreatmentError`` when no unit is ever treated.

    Returns
    -------
    Adoption

    Warns
    -----
    AdoptionGapWarning
        With a 0/1 treatment on an unbalanced panel: units whose adoption-period
        row is missing get their first treated observed period as adoption
        period, which only bounds it; the warning counts them. Pass a cohort
        column of the known adoption periods instead (``cohort=`` in the
        staggered estimators). With a cohort column: units whose cohort is NaN,
        read as never treated (code never-treated units as 0).

    Raises
    ------
    TreatmentError
        A treatment value other than 0/1, a cohort varying within a unit, or
        no unit treated.
    NonAbsorbingTreatmentError
        A treatment switching off (unless ``allow_switching``).
    """
    if (unit_codes is None) == (run_lengths is None):
        raise TypeError("give exactly one of unit_codes= or run_lengths=")
    # one compiled kernel whatever the callers hold (int or float treatment, int32 or int64 periods, numpy
    # or read-only polars buffers): float64 values, int64 periods and codes, all read-only
    values_k = readonly(np.ascontiguousarray(values, dtype=np.float64))
    time_k = readonly(np.ascontiguousarray(time, dtype=np.int64)) if time.dtype.kind in "iub" else time
    if unit_codes is not None:
        codes_k = readonly(np.ascontiguousarray(unit_codes, dtype=np.int64))
        g, bad_row, n_bad, first_bad = adoption_by_row(codes_k, time_k, values_k, len(units), cohort)
    else:
        lens_k = readonly(np.ascontiguousarray(run_lengths, dtype=np.int64))
        g, bad_row, n_bad, first_bad = adoption_by_run(lens_k, time_k, values_k, cohort)

    # plain int positions: a polars Series of ids refuses numpy integer keys
    def unit_id(u: int) -> Any:
        return _plain(units[int(u)] if unit_codes is not None else units[int(run_lengths[:u].sum())])

    def row_unit(r: int) -> Any:
        return _plain(units[int(unit_codes[r])] if unit_codes is not None else units[int(r)])

    if bad_row >= 0:
        raise TreatmentError(
            f"treatment {column!r} must be 0/1 to define adoption times; unit {row_unit(bad_row)!r} "
            f"has the value {_plain(values[bad_row])!r}"
        )
    if n_bad and cohort:
        raise TreatmentError(
            f"cohort column {column!r} varies within a unit ({n_bad} unit(s), first {unit_id(first_bad)!r}); "
            "it must be the unit's adoption period"
        )
    if n_bad and not allow_switching:
        raise NonAbsorbingTreatmentError(
            f"treatment {column!r} switches off for {n_bad} unit(s) (first {unit_id(first_bad)!r}); "
            "adoption times need an absorbing (staggered) treatment: pass a cohort column of unit-level "
            "adoption periods instead"
        )
    if require_treated and not (g != 0).any():
        raise TreatmentError(f"{'cohort column' if cohort else 'treatment'} {column!r} never varies: no unit is ever treated")
    n_bounded = n_missing = 0
    if cohort:
        n_missing = _units_with(np.isnan(values) if values.dtype.kind == "f" else None, unit_codes, run_lengths)
        if n_missing:
            warnings.warn(
                f"cohort column {column!r} is missing (null or NaN) for {n_missing} unit(s); they are read as never "
                "treated. Code never-treated units as 0 if that is what they are.",
                AdoptionGapWarning, stacklevel=3,
            )
    elif n_bad == 0:
        n_bounded = _bounded_adoptions(g, values, time, unit_codes, run_lengths)
        if n_bounded:
            warnings.warn(
                f"treatment {column!r}: for {n_bounded} unit(s) the adoption period is not observed (the gap between "
                "the last untreated and the first treated observed period is longer than the panel's period step); "
                "their first treated observed period is used, an upper bound of the adoption period. If the "
                "adoption periods are known, pass them as a cohort column (cohort=) instead of treat=.",
                AdoptionGapWarning, stacklevel=3,
            )
    return Adoption(g, n_bad == 0, int(n_bad), n_bounded, n_missing)


def _units_with(flag: np.ndarray | None, unit_codes: np.ndarray | None, run_lengths: np.ndarray | None) -> int:
    """Number of units with at least one flagged row."""
    if flag is None or not flag.any():
        return 0
    if unit_codes is not None:
        return int(np.unique(unit_codes[flag]).size)
    starts = np.cumsum(run_lengths) - run_lengths
    return int((np.add.reduceat(flag.astype(np.int64), starts) > 0).sum())


def _bounded_adoptions(g: np.ndarray, values: np.ndarray, time: np.ndarray, unit_codes: np.ndarray | None,
                       run_lengths: np.ndarray | None) -> int:
    """Treated units (absorbing 0/1 treatment) observed untreated whose first treated
    observed period is more than one period step after their last untreated one."""
    untreated = values == 0
    if unit_codes is not None:
        last0 = np.full(g.size, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last0, unit_codes[untreated], time[untreated].astype(np.int64))
        seen = last0 > np.iinfo(np.int64).min
    else:
        # rows sorted by unit and time, treatment absorbing: a unit's untreated rows come first
        starts = np.cumsum(run_lengths) - run_lengths
        n0 = np.add.reduceat(untreated.astype(np.int64), starts)
        seen = n0 > 0
        last0 = np.where(seen, time[starts + np.maximum(n0, 1) - 1], 0).astype(np.int64)
    gap = np.where(seen & (g != 0), g - last0, 0)
    if gap.max(initial=0) <= 1:  # integer periods: a step is at least 1
        return 0
    times = np.unique(time)
    step = int(np.diff(times).min()) if times.size > 1 else 1
    return int((gap > step).sum())
