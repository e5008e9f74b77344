"""Dynamic TWFE event study: relative-period dummies with unit and period
fixed effects, by ``feols`` or (big panels) the lean per-unit-sums path."""

from __future__ import annotations

import numpy as np
import polars as pl

from ...errors import EventStudyError
from ..regression.feols import feols
from ..regression.formula import Formula, quote
from . import lean_dummies as lean
from .event_study import EventStudyResult, EventStudyTuning
from .lean_dummies import dense_bytes
from .relative_periods import RELB, add_binned_rel, dummy_codes, rel_label, weighted_counts
from .staggered_data import StaggeredData

__all__ = ["twfe"]


def twfe(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
         tuning: EventStudyTuning) -> EventStudyResult:
    frame = add_binned_rel(sd.frame, window, bin_endpoints)
    levels = sorted(x for x in frame[RELB].drop_nulls().unique().to_list() if x != ref)
    if not levels:
        raise EventStudyError("no relative period other than the reference is observed")
    names = {f"_es_{rel_label(r)}": r for r in levels}
    if dense_bytes(sd, len(levels)) > tuning.lean_bytes:
        res = _twfe_lean(sd, frame, levels, window, ref)
        if res is not None:
            return res
    frame = frame.with_columns(
        [(pl.col(RELB) == r).fill_null(False).cast(pl.Float64).alias(n) for n, r in names.items()]
    )
    fml = Formula.of(sd.y, [*names, *sd.controls], [sd.unit, sd.time])
    fit = feols(fml, sd.panel(frame), vcov={"CRV1": quote(sd.cluster)}, weights=sd.weights)
    lo, hi = window
    pos = [j for j, n in enumerate(fit.coefnames) if n in names and lo <= names[n] <= hi]
    rel = np.array([names[fit.coefnames[j]] for j in pos], dtype=np.int64)
    cnt = weighted_counts(fit.design.frame.filter(pl.col(RELB).is_not_null()), [RELB], sd.weights)
    nmap = dict(zip(cnt[RELB].to_list(), cnt["_n"].to_list()))
    V = fit.vcov()
    return EventStudyResult(rel, fit.beta[pos], V[np.ix_(pos, pos)], ref, "twfe", fit.nobs, fit.df_t,
                            {"fit": fit, "n_rel": np.array([nmap.get(int(r), 0.0) for r in rel])})


def _twfe_lean(sd: StaggeredData, frame: pl.DataFrame, levels: list[int], window: tuple[int, int],
               ref: int) -> EventStudyResult | None:
    """Dynamic TWFE without the N x k design (big panels; see ``lean_dummies``)."""
    cells = np.array(levels, dtype=np.int64)
    j_N = dummy_codes(frame[RELB].fill_null(ref).to_numpy(), cells)
    fit = lean.lean_dummy_fit(sd, j_N, cells.size)
    if fit is None:
        return None
    lo, hi = window
    pos = np.flatnonzero((cells >= lo) & (cells <= hi))
    n_rel = np.bincount(j_N[j_N >= 0], minlength=cells.size).astype(float)
    return EventStudyResult(cells[pos], fit.beta[pos], fit.V[np.ix_(pos, pos)], ref, "twfe", fit.nobs, fit.df_t,
                            {"n_rel": n_rel[pos], "lean": True})
