"""Each unit's adoption period: the one routine behind every staggered
procedure (placebo draws, event studies, Callaway-Sant'Anna, the dCDH
weights, the battery), with one set of error messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NonAbsorbingTreatmentError, TreatmentError
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
    """

    g: np.ndarray
    absorbing: bool
    n_switching: int


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
    if unit_codes is not None:
        g, bad_row, n_bad, first_bad = adoption_by_row(unit_codes, time, values, len(units), cohort)
    else:
        g, bad_row, n_bad, first_bad = adoption_by_run(run_lengths, time, values, cohort)

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
    return Adoption(g, n_bad == 0, int(n_bad))
