"""Input checks shared by the selection estimators: the columns behind dropped
rows, and user columns that would collide with derived ones."""

from __future__ import annotations

from typing import Sequence

from ...errors import ArgumentError
from ...panels.panel import column_list

__all__ = ["check_reserved"]


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
