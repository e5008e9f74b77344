"""Reading panels from disk (parquet, csv) with polars."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from ..errors import EmptyPanelError, MissingColumnError, PanelError, StaggerlabWarning
from .panel import NaPolicy, Panel

__all__ = ["read_panel", "read_frame"]


def read_frame(path: str | Path, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Read a parquet or csv file into polars, only ``columns`` if given.

    Parquet is scanned lazily so only the needed columns are read. A csv file
    is comma-separated unless its header line has no comma and has ``;``,
    tabs or ``|`` (the most frequent is used, with a ``StaggerlabWarning``);
    ``.tsv`` files are tab-separated.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    EmptyPanelError
        The file is empty or holds column names but no rows.
    PanelError
        Not a .parquet/.csv file, or a file polars cannot parse.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise EmptyPanelError(f"data file {path.name} is empty (0 bytes); give a file with a header and rows")
    try:
        frame = _read(path, columns)
    except pl.exceptions.NoDataError as e:
        raise EmptyPanelError(f"data file {path.name} holds no data; give a file with a header and rows") from e
    except (pl.exceptions.ComputeError, OSError) as e:
        raise PanelError(f"cannot read {path.name}: {str(e).splitlines()[0]}") from e
    if frame.height == 0:
        raise EmptyPanelError(f"data file {path.name} has column names but no rows; give a file with data rows")
    return frame


def _read(path: Path, columns: Sequence[str] | None) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        lf = pl.scan_parquet(path)
    elif suffix in (".csv", ".txt", ".tsv"):
        lf = pl.scan_csv(path, separator=_separator(path, suffix), infer_schema_length=10000)
    else:
        raise PanelError(f"cannot read {path.name}: expected a .parquet or .csv file")
    if columns is not None:
        names = lf.collect_schema().names()
        missing = [c for c in columns if c not in names]
        if missing:
            raise MissingColumnError(f"column(s) {missing} not found in {path.name} (columns: {names[:12]})")
        lf = lf.select(list(dict.fromkeys(columns)))
    if suffix in (".parquet", ".pq"):
        return _read_parquet_columns(lf)
    frame = lf.collect()
    # one chunk per column so values reach numpy without a copy
    for c in frame.columns:
        if frame[c].n_chunks() > 1:
            frame = frame.with_columns(frame[c].rechunk())
    return frame


def _separator(path: Path, suffix: str) -> str:
    """The csv file's field separator: tab for .tsv; otherwise a comma, unless
    the header line has none and has semicolons, tabs or bars (spreadsheet
    exports in many locales use ``;``), which is then used and reported."""
    if suffix == ".tsv":
        return "\t"
    with open(path, "rb") as f:
        header = f.readline(1 << 20).decode("utf-8", errors="replace")
    if "," in header:
        return ","
    found = [c for c in (";", "\t", "|") if c in header]
    if not found:
        return ","  # one column, or an unusual separator: the column checks name what is missing
    sep = max(found, key=header.count)
    warnings.warn(f"{path.name}: read with {sep!r} as the field separator (its header line has no comma)",
                  StaggerlabWarning, stacklevel=4)
    return sep


def _read_parquet_columns(lf: pl.LazyFrame) -> pl.DataFrame:
    """Collect the columns of ``lf`` one at a time, each into one contiguous array.

    Collecting the whole frame holds every column twice (row-group chunks,
    then their concatenation). A numeric column is streamed in batches into a
    numpy array that polars then uses without a copy: the transient is one
    batch, and polars' allocator, which keeps freed pages for a while, never
    holds a whole column's chunks (at 10M rows that retained ~150 MB after a
    read). Other columns, and columns with nulls, are collected by polars.
    """
    schema = lf.collect_schema()
    n = lf.select(pl.len()).collect().item()
    series = []
    for c, dtype in schema.items():
        s = None
        if (dtype.is_integer() or dtype.is_float()) and n > 0 and hasattr(lf, "collect_batches"):
            s = _stream_numeric(lf.select(c), c, n)
        if s is None:
            s = lf.select(c).collect().to_series().rechunk()
        series.append(s)
    return pl.DataFrame(series)


def _stream_numeric(lf: pl.LazyFrame, name: str, n: int) -> pl.Series | None:
    out = None
    off = 0
    for batch in lf.collect_batches():
        s = batch.to_series()
        if s.null_count():
            return None  # nulls: polars' own path keeps them as nulls
        values = s.to_numpy()
        if out is None:
            out = np.empty(n, dtype=values.dtype)
        out[off : off + values.size] = values
        off += values.size
    return pl.Series(name, out) if off == n else None


def read_panel(
    path: str | Path,
    *,
    unit: str,
    time: str,
    columns: Sequence[str] | None = None,
    na: NaPolicy = "drop",
) -> Panel:
    """Read a parquet/csv file into a validated :class:`Panel`.

    Parameters
    ----------
    path : str or Path
        A ``.parquet`` or ``.csv`` file.
    unit, time : str
        Id columns.
    columns : sequence of str, optional
        Value columns to read and validate; if given, only these and the ids are
        read from disk (all columns otherwise).
    na : {"drop", "raise"}
        Missing-value policy, see :meth:`Panel.from_frame`.

    Returns
    -------
    Panel
    """
    cols = None if columns is None else [unit, time, *columns]
    frame = read_frame(path, cols)
    return Panel.from_frame(frame, unit=unit, time=time, columns=columns, na=na)
