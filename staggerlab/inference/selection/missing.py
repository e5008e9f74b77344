"""Naming the columns behind dropped rows, for the selection estimators' messages."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from ...panels.panel import finite_mask

__all__ = ["missing_columns", "column_list"]


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


def column_list(columns: Sequence[str]) -> str:
    """``'a', 'b'`` (each column once), for messages."""
    return ", ".join(repr(c) for c in dict.fromkeys(columns))
