"""Input checks shared by the selection estimators: the columns behind dropped
rows, and user columns that would collide with derived ones."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from ...errors import ArgumentError
from ...panels.panel import finite_mask

__all__ = ["missing_columns", "column_list", "check_reserved"]


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


def check_reserved(roles: dict[str, Sequence[str]], reserved: Sequence[str], estimator: str) -> None:
    """Refuse a user column whose name the estimator gives to a derived column.

    Parameters
    ----------
    roles : dict
        Role (``"covariates"``...) -> the user's column names in that role.
    reserved : sequence of str
        Names of the columns the estimator derives and adds to the frame.
    estimator : str
        Name of the estimator, for the message.

    Raises
    ------
    ArgumentError
        Naming the column and its role.
    """
    for role, cols in roles.items():
        for c in cols:
            if c in reserved:
                raise ArgumentError(
                    f"{role} column {c!r}: {estimator} derives a column of that name (reserved: "
                    f"{column_list(reserved)}); rename yours"
                )
