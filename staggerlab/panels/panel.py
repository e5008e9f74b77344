"""``Panel``: a validated frame with its unit and time ids factorized once."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    DuplicateRowsError,
    EmptyPanelError,
    MissingColumnError,
    MissingValueError,
    MissingValueWarning,
    NonNumericError,
    PanelError,
)
from ..kernels.panel import int_run_lengths, repeated_cells, strictly_increasing_pairs

__all__ = ["Panel", "to_polars", "check_columns", "check_numeric", "check_periods", "finite_mask", "factorize_column",
           "factorize_with_ids", "sorted_unique_ids", "run_lengths", "missing_columns", "column_list",
           "fresh_name", "isolate_columns"]

#: internal columns added to a caller's frame start with this prefix; a used
#: column of the caller's that does too is renamed (:func:`isolate_columns`)
INTERNAL_PREFIX = "_"

NaPolicy = Literal["drop", "raise"]


def to_polars(data: Any) -> pl.DataFrame:
    """Return ``data`` as a polars DataFrame (polars, pandas or ``Panel``)."""
    if isinstance(data, Panel):
        return data.frame
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is optional
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pl.from_pandas(data.reset_index(drop=True))
    raise ArgumentTypeError(
        f"expected a polars or pandas DataFrame or a staggerlab Panel, got {type(data).__name__}"
    )


def fresh_name(base: str, taken: Sequence[str]) -> str:
    """``base``, or ``base`` with the smallest numeric suffix, that is not in ``taken``."""
    names = set(taken)
    if base not in names:
        return base
    return next(f"{base}_{k}" for k in range(2, len(names) + 3) if f"{base}_{k}" not in names)


def isolate_columns(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """``frame`` (its columns shared, not copied) with every column whose name
    starts with ``_`` (the prefix of the columns estimators add) renamed to
    ``"<name> (data)"``, so no added column can overwrite one of the caller's.

    Returns the frame and the map from each of the caller's names to its name there.
    """
    names: dict[str, str] = {}
    for c in frame.columns:
        names[c] = (fresh_name(f"{c} (data)", [*frame.columns, *names.values()])
                    if c.startswith(INTERNAL_PREFIX) else c)
    renamed = {k: v for k, v in names.items() if k != v}
    return (frame.rename(renamed) if renamed else frame), names


def check_columns(frame: pl.DataFrame, columns: Sequence[str], what: str = "column") -> None:
    """Raise ``MissingColumnError`` naming every absent column, and
    ``ArgumentError`` for a name that is not a string (e.g. a required
    argument left as ``None``) or that polars would read as a pattern."""
    for c in columns:
        if not isinstance(c, str):
            raise ArgumentError(f"a {what} name must be a string, got {c!r} of type {type(c).__name__}"
                                + (" (a required column argument left unset?)" if c is None else ""))
    missing = [c for c in columns if c not in frame.columns]
    for c in columns:
        # polars expressions read these names as every column / a regex
        if c == "*" or (len(c) > 1 and c.startswith("^") and c.endswith("$")):
            raise ArgumentError(f"{what} {c!r}: polars reads this name as a pattern of column names, not as one "
                                "column; rename the column (e.g. frame.rename(...)) before calling")
    if missing:
        shown = ", ".join(repr(c) for c in missing)
        have = ", ".join(frame.columns[:12]) + (", ..." if frame.width > 12 else "")
        raise MissingColumnError(
            f"{what} {shown} not found in the data (columns: {have})"
        )


def check_numeric(frame: pl.DataFrame, columns: Sequence[str], role: str) -> None:
    """Raise ``NonNumericError`` for a non-numeric outcome/regressor column
    (``MissingValueError`` for one with no value at all, which CSV readers type as text)."""
    schema = frame.schema  # built per access (every column): once, not per column of a wide frame
    for c in columns:
        dt = schema[c]
        if not (dt.is_numeric() or dt == pl.Boolean):
            if frame.height and frame[c].null_count() == frame.height:
                raise MissingValueError(f"{role} column {c!r} is entirely missing (no value in {frame.height:,} "
                                        "rows); check the column name or drop it")
            raise NonNumericError(
                f"{role} column {c!r} has type {dt}, not a number; "
                "convert it (e.g. cast or encode it) before fitting"
            )


def check_periods(frame: pl.DataFrame, time: str) -> None:
    """Raise ``NonNumericError`` for a period column that is not numeric and
    ``PanelError`` for one with non-integer values: adoption periods and event
    time are differences of integer periods (a cast would truncate 2011.5 to
    2011). Missing values are left to the missing-value checks."""
    s = frame[time].drop_nulls()
    if s.dtype.is_integer():
        return
    example = s[0] if s.len() else None
    if not s.dtype.is_float():
        raise NonNumericError(
            f"time column {time!r} has type {s.dtype} (e.g. {example!r}), not integer periods; convert it "
            "first, e.g. to years, or to year * 4 + quarter for quarterly labels such as '2011-Q1'")
    v = s.to_numpy()
    bad = np.isfinite(v) & (v != np.floor(v))
    if bad.any():
        raise PanelError(
            f"time column {time!r} has non-integer periods (e.g. {float(v[bad][0])!r}); adoption and event time "
            "need integer periods (e.g. years, or year * 4 + quarter)")


def finite_mask(frame: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Boolean mask of rows with no null/NaN/inf in ``columns``."""
    if not columns:
        return np.ones(frame.height, dtype=bool)
    exprs = []
    schema = frame.schema
    for c in dict.fromkeys(columns):
        e = pl.col(c).is_not_null()
        if schema[c].is_float():
            e = e & pl.col(c).is_finite()
        exprs.append(e)
    return frame.select(pl.all_horizontal(exprs)).to_series().to_numpy()


def missing_columns(frame: pl.DataFrame, columns: Sequence[str], rows: np.ndarray | None = None) -> list[str]:
    """The columns of ``columns`` with a null, NaN or inf value, each once, in the order given.

    Parameters
    ----------
    frame : polars.DataFrame
    columns : sequence of str
        Candidate columns (repeats are ignored).
    rows : ndarray of bool, optional
        Look only at these rows (default: every row).

    Returns
    -------
    list of str
    """
    out = []
    for c in dict.fromkeys(columns):
        bad = ~finite_mask(frame, [c])
        if rows is not None:
            bad &= rows
        if bad.any():
            out.append(c)
    return out


def check_not_all_missing(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    """Raise :class:`~staggerlab.errors.MissingValueError` naming the first of
    ``columns`` whose every value is null, NaN or inf (whatever its role: a
    column with nothing in it cannot be used, and dropping its rows would
    leave an empty panel with a message about something else)."""
    if frame.height == 0:
        return
    for c in dict.fromkeys(columns):
        if not finite_mask(frame, [c]).any():
            raise MissingValueError(f"column {c!r} is all missing (every one of its {frame.height} values is "
                                    "null, NaN or inf); drop it from the call or fill it")


def column_list(columns: Sequence[str]) -> str:
    """``'a', 'b'`` (each column once), for messages."""
    return ", ".join(repr(c) for c in dict.fromkeys(columns))


def factorize_column(s: pl.Series, dtype: type = np.int64) -> np.ndarray:
    """Dense integer codes of any column, in sorted order of the values.

    Integer ids spanning a modest range (the usual firm/year ids) are coded in
    O(N) without sorting; anything else goes through polars' dense rank.
    Nulls must have been filtered out before. ``dtype=np.int32`` halves the
    codes of a big panel.
    """
    return _factorize(s, dtype, False)[0]


def factorize_with_ids(s: pl.Series, dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """:func:`factorize_column` plus the sorted distinct values (as numpy)."""
    return _factorize(s, dtype, True)


def _factorize(s: pl.Series, dtype: type, with_ids: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if s.dtype.is_integer() and s.len() > 0:
        v = s.to_numpy()
        lo, hi = int(v.min()), int(v.max())
        if hi - lo <= 4 * v.size + 1024:
            # a table from 0 when it stays small: indexing by v itself avoids
            # an N-sized temporary v - lo
            lo = 0 if lo >= 0 and hi <= 4 * v.size + 1024 else lo
            idx = v if lo == 0 else v - lo
            present = np.zeros(hi - lo + 1, dtype=dtype)
            present[idx] = 1
            ids = (lo + np.flatnonzero(present)).astype(v.dtype) if with_ids else None
            np.cumsum(present, out=present)
            present -= 1
            return present[idx], ids
    codes = (s.rank("dense").cast(pl.Int64).to_numpy() - 1).astype(dtype, copy=False)
    return codes, (s.unique().sort().to_numpy() if with_ids else None)


def factorize(s: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Dense int64 codes (sorted order of the values) and the unique values."""
    if s.dtype.is_integer():  # the distinct ids come with the codes: no hash of the column
        codes, ids = factorize_with_ids(s)
        return np.ascontiguousarray(codes), pl.Series(s.name, ids, dtype=s.dtype)
    return np.ascontiguousarray(factorize_column(s)), s.unique().sort()


def duplicated_pairs(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Mask of rows whose (u, t) code pair occurs more than once.

    O(N) with no N-sized temporary beyond the mask: sorted panels (the usual
    case) are recognised in one pass, others are counted on the code grid
    when it is not much larger than the data.
    """
    if u.size == 0 or strictly_increasing_pairs(u, t):
        return np.zeros(u.size, dtype=bool)
    n_t = int(t.max()) + 1
    n_cells = (int(u.max()) + 1) * n_t
    if n_cells <= 4 * u.size + 1024:
        return repeated_cells(u, t, n_t, n_cells)
    _, inv, cnt = np.unique(u * n_t + t, return_inverse=True, return_counts=True)
    return cnt[inv] > 1


def run_lengths(s: pl.Series) -> np.ndarray:
    """Lengths of the runs of equal consecutive values (e.g. the rows of each
    unit in a frame sorted by unit), as int64."""
    if s.len() == 0:
        return np.zeros(0, dtype=np.int64)
    if s.dtype.is_integer():
        return int_run_lengths(s.to_numpy())
    return s.rle().struct.field("len").to_numpy().astype(np.int64)


def sorted_unique_ids(frame: pl.DataFrame, unit: str, time: str) -> bool:
    """Whether the rows are sorted by (unit, time) with no pair repeated, judged
    on the raw ids: one pass with no temporaries for integer ids (the usual
    firm/year panel), polars comparisons otherwise."""
    u, t = frame[unit], frame[time]
    if frame.height < 2:
        return True
    if u.dtype.is_integer() and t.dtype.is_integer():
        return bool(strictly_increasing_pairs(u.to_numpy(), t.to_numpy()))
    cu, ct = pl.col(unit), pl.col(time)
    step = (cu > cu.shift(1)) | ((cu == cu.shift(1)) & (ct > ct.shift(1)))
    try:
        return bool(frame.select(step.slice(1).all()).item())
    except pl.exceptions.PolarsError:  # ids that do not compare (e.g. some categoricals)
        return False


@dataclass(eq=False)
class Panel:
    """A unit x time panel with validated, factorized ids.

    Build it with :meth:`Panel.from_frame` or :func:`staggerlab.read_panel`.

    Attributes
    ----------
    frame : polars.DataFrame
        The data (rows with a missing unit or time id removed).
    unit, time : str
        Names of the id columns.
    unit_codes, time_codes : ndarray of int64
        Dense codes, ``0..n_units-1`` and ``0..n_periods-1`` in sorted id order.
    units, times : polars.Series
        The distinct ids, in code order.

    The ids of a panel already sorted by (unit, time) are factorized when first
    needed (two N-sized int64 arrays), so work that never needs them (e.g.
    Callaway-Sant'Anna, which works on units) never holds them.
    """

    frame: pl.DataFrame
    unit: str
    time: str
    _ids: tuple[np.ndarray, np.ndarray, pl.Series, pl.Series] | None = field(default=None, repr=False)

    def _factorized(self) -> tuple[np.ndarray, np.ndarray, pl.Series, pl.Series]:
        if self._ids is None:
            ucodes, units = factorize(self.frame[self.unit])
            tcodes, times = factorize(self.frame[self.time])
            self._ids = (ucodes, tcodes, units, times)
        return self._ids

    @property
    def has_codes(self) -> bool:
        """Whether the id codes have been computed (they are, on first use)."""
        return self._ids is not None

    @property
    def unit_codes(self) -> np.ndarray:
        """Dense unit codes of the rows (int64, sorted id order)."""
        return self._factorized()[0]

    @property
    def time_codes(self) -> np.ndarray:
        """Dense period codes of the rows (int64, sorted id order)."""
        return self._factorized()[1]

    @property
    def units(self) -> pl.Series:
        """The distinct unit ids, in code order."""
        return self._factorized()[2]

    @property
    def times(self) -> pl.Series:
        """The distinct periods, in code order."""
        return self._factorized()[3]

    @classmethod
    def from_frame(
        cls,
        df: Any,
        *,
        unit: str,
        time: str,
        columns: Sequence[str] | None = None,
        na: NaPolicy = "drop",
    ) -> "Panel":
        """Validate a frame and factorize its ids.

        Parameters
        ----------
        df : polars.DataFrame or pandas.DataFrame
            Long panel, one row per (unit, time).
        unit, time : str
            Id columns (any type: ints, strings, dates...).
        columns : sequence of str, optional
            Value columns that will be used; they must exist and be numeric, and
            rows with missing/non-finite values in them are dropped (reported by a
            ``MissingValueWarning``) or, with ``na="raise"``, raise
            ``MissingValueError``. Other columns are kept as they are.
        na : {"drop", "raise"}
            What to do with missing values in the ids and in ``columns``.

        Returns
        -------
        Panel

        Raises
        ------
        MissingColumnError, DuplicateRowsError, EmptyPanelError,
        NonNumericError, MissingValueError
        """
        frame = to_polars(df)
        if frame.height == 0:
            raise EmptyPanelError("the data frame has no rows")
        columns = list(columns or [])
        check_columns(frame, [unit, time], "id column")
        check_columns(frame, columns)
        check_numeric(frame, columns, "value")
        keep = finite_mask(frame, [unit, time, *columns])
        n_bad = int((~keep).sum())
        if n_bad:
            if na == "raise":
                raise MissingValueError(
                    f"{n_bad} row(s) have a missing or non-finite value in "
                    f"{[unit, time, *columns]}; clean them or use na='drop'"
                )
            warnings.warn(
                f"dropped {n_bad} of {frame.height} row(s) with missing or non-finite "
                f"values in {[unit, time, *columns]}",
                MissingValueWarning,
                stacklevel=2,
            )
            if n_bad == frame.height:
                check_not_all_missing(frame, [unit, time, *columns])
            frame = frame.filter(pl.Series(keep))
            if frame.height == 0:
                raise EmptyPanelError("no rows left after dropping missing values")
        if sorted_unique_ids(frame, unit, time):  # no pair repeated: codes when first needed
            return cls(frame, unit, time)
        ucodes, units = factorize(frame[unit])
        tcodes, times = factorize(frame[time])
        dup = duplicated_pairs(ucodes, tcodes)
        if dup.any():
            ex = frame.filter(pl.Series(dup)).select(unit, time).head(3).rows()
            raise DuplicateRowsError(
                f"{int(dup.sum())} rows share a ({unit}, {time}) pair with another row, "
                f"e.g. {ex}; a panel needs one row per unit and period"
            )
        return cls(frame, unit, time, (ucodes, tcodes, units, times))

    @property
    def n_units(self) -> int:
        """Number of distinct units."""
        return self._ids[2].len() if self._ids is not None else self.frame[self.unit].n_unique()

    @property
    def n_periods(self) -> int:
        """Number of distinct periods."""
        return self._ids[3].len() if self._ids is not None else self.frame[self.time].n_unique()

    @property
    def nobs(self) -> int:
        """Number of rows."""
        return self.frame.height

    @property
    def is_balanced(self) -> bool:
        """Whether every unit is observed in every period."""
        return self.nobs == self.n_units * self.n_periods

    def __len__(self) -> int:
        return self.nobs

    def __repr__(self) -> str:
        bal = "balanced" if self.is_balanced else "unbalanced"
        return (
            f"Panel({self.nobs} rows, {self.n_units} units x {self.n_periods} periods, "
            f"{bal}; unit={self.unit!r}, time={self.time!r})"
        )
