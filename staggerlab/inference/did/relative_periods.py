"""Relative-period columns and dummy codes shared by the regression event
studies: the binned relative period, (weighted) cell counts and the dense index
of each row's dummy."""

from __future__ import annotations

import numpy as np
import polars as pl

from ...errors import ReferencePeriodError
from .staggered_data import REL

__all__ = ["RELB", "rel_label", "add_binned_rel", "weighted_counts", "dummy_codes", "check_reference_observed"]

RELB = "_relb"  # relative period after binning the endpoints


def rel_label(r: int) -> str:
    return f"m{-r}" if r < 0 else f"p{r}"


def add_binned_rel(frame: pl.DataFrame, window: tuple[int, int], bin_endpoints: bool) -> pl.DataFrame:
    lo, hi = window
    r = pl.col(REL).clip(lo, hi) if bin_endpoints else pl.col(REL)
    return frame.with_columns(r.alias(RELB))


def weighted_counts(frame: pl.DataFrame, by: list[str], weights: str | None) -> pl.DataFrame:
    n = pl.col(weights).cast(pl.Float64).sum() if weights else pl.len().cast(pl.Float64)
    return frame.group_by(by).agg(n.alias("_n"))


def dummy_codes(keys: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """int32 index of each row's key among ``cells`` (sorted, distinct), -1 if absent."""
    if keys.size == 0:
        return np.empty(0, dtype=np.int32)
    lo, hi = int(min(keys.min(), cells.min())), int(max(keys.max(), cells.max()))
    lut = np.full(hi - lo + 1, -1, dtype=np.int32)
    lut[cells - lo] = np.arange(cells.size, dtype=np.int32)
    return lut[keys - lo]


def check_reference_observed(refs: tuple[int, ...], observed: list[int], window: tuple[int, int]) -> None:
    """Raise :class:`ReferencePeriodError` naming the observed relative periods
    when a reference period is observed for no treated unit (a biennial panel
    has no period -1): the coefficients could not be relative to it."""
    missing = [r for r in refs if r not in observed]
    if not missing:
        return
    lo, hi = window
    shown = [r for r in observed if lo <= r <= hi]
    pre = [r for r in shown if r < 0 and r not in refs]
    hint = f"; pass ref= one of them, e.g. ref={pre[-1]}" if pre else "; pass ref= one of them"
    raise ReferencePeriodError(
        f"reference period {missing[0] if len(missing) == 1 else missing} is not observed: no treated unit "
        f"is observed at that relative period (observed relative periods in the window {window}: {shown})" + hint
    )
