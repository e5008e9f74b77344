"""Dynamic TWFE event study: relative-period dummies with unit and period
fixed effects, by ``feols`` or (big panels) the lean per-unit-sums path.

Every coefficient is relative to the named reference period(s): a reference
period no treated unit is observed at, or dummies collinear with the fixed
effects (which ``feols`` would drop, leaving the coefficients relative to an
unnamed period), raise :class:`~staggerlab.errors.ReferencePeriodError`.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from ...errors import EventStudyError, ReferencePeriodError
from ..regression.feols import feols
from ..regression.formula import Formula, quote
from . import lean_dummies as lean
from .event_study import EventStudyResult, EventStudyTuning
from .lean_dummies import dense_bytes
from .relative_periods import (
    RELB,
    add_binned_rel,
    check_reference_observed,
    dummy_codes,
    rel_label,
    weighted_counts,
)
from .staggered_data import COHORT, StaggeredData

__all__ = ["twfe"]


def twfe(sd: StaggeredData, window: tuple[int, int], refs: tuple[int, ...], bin_endpoints: bool,
         tuning: EventStudyTuning) -> EventStudyResult:
    frame = add_binned_rel(sd.frame, window, bin_endpoints)
    observed = sorted(int(x) for x in frame[RELB].drop_nulls().unique().to_list())
    check_reference_observed(refs, observed, window)
    levels = [x for x in observed if x not in refs]
    if not levels:
        raise EventStudyError("no relative period other than the reference is observed")
    names = {f"_es_{rel_label(r)}": r for r in levels}
    if dense_bytes(sd, len(levels)) > tuning.lean_bytes:
        res = _twfe_lean(sd, frame, levels, window, refs)
        if res is not None:
            return res
    frame = frame.with_columns(
        [(pl.col(RELB) == r).fill_null(False).cast(pl.Float64).alias(n) for n, r in names.items()]
    )
    fml = Formula.of(sd.y, [*names, *sd.controls], [sd.unit, sd.time])
    with warnings.catch_warnings(record=True) as caught:
        # a dropped dummy is refused below: its generic collinearity warning would only confuse
        warnings.simplefilter("always")
        fit = feols(fml, sd.panel(frame), vcov={"CRV1": quote(sd.cluster)}, weights=sd.weights)
    dropped = [r for n, r in names.items() if n not in fit.coefnames]
    if dropped:
        _refuse_collinear(sd, refs, dropped, observed, window, bin_endpoints)
    for w in caught:  # nothing refused: the fit's own warnings stand
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    lo, hi = window
    pos = [j for j, n in enumerate(fit.coefnames) if n in names and lo <= names[n] <= hi]
    rel = np.array([names[fit.coefnames[j]] for j in pos], dtype=np.int64)
    cnt = weighted_counts(fit.design.frame.filter(pl.col(RELB).is_not_null()), [RELB], sd.weights)
    nmap = dict(zip(cnt[RELB].to_list(), cnt["_n"].to_list()))
    V = fit.vcov()
    return EventStudyResult(rel, fit.beta[pos], V[np.ix_(pos, pos)], refs[0], "twfe", fit.nobs, fit.df_t,
                            {"fit": fit, "n_rel": np.array([nmap.get(int(r), 0.0) for r in rel]), "window": window,
                             "bin_endpoints": bin_endpoints, "unit": sd.unit, "time": sd.time}, refs=refs)


def _refuse_collinear(sd: StaggeredData, refs: tuple[int, ...], dropped: list[int], observed: list[int],
                      window: tuple[int, int], bin_endpoints: bool) -> None:
    """Raise: ``feols`` dropped relative-period dummies, so the estimates would be
    relative to periods the user did not name."""
    never = sd.frame.filter(pl.col(COHORT) == 0).height > 0
    if not never:
        k = next((r for r in observed if window[0] <= r <= window[1] and r not in refs), observed[0])
        hint = ("bin the endpoints with a window inside the observed relative periods "
                f"({observed[0]}..{observed[-1]})" if bin_endpoints else "bin the endpoints (bin_endpoints=True)")
        raise ReferencePeriodError(
            f"without never-treated units the relative-period dummies are collinear with the {sd.unit} and "
            f"{sd.time} fixed effects (relative time is period minus adoption period; {dropped} would be "
            f"dropped), so at least one more period than ref={list(refs) if len(refs) > 1 else refs[0]} must be "
            f"normalised; {hint}, or name a second reference period, e.g. ref=[{refs[0]}, {k}]"
        )
    raise ReferencePeriodError(
        f"relative-period dummies {dropped} are collinear with the {sd.unit} and {sd.time} fixed effects "
        f"(or the controls); the estimates would be relative to an unnamed period. Observed relative periods: "
        f"{observed}; add them to ref= (e.g. ref={[*refs, *dropped]}) or change the window" + _step_hint(sd)
    )


def _step_hint(sd: StaggeredData) -> str:
    """A sentence for periods more than one unit apart (biennial surveys): relative
    time is a difference of ``time`` values, so its periods are not consecutive."""
    times = np.asarray(sd.times, dtype=np.int64)
    step = int(np.gcd.reduce(np.diff(times))) if times.size > 1 else 1
    if step <= 1:
        return ""
    return (f". The periods of {sd.time!r} are {step} apart ({times[0]}, {times[1]}, ...), so relative time "
            f"counts {sd.time} units and cohorts off that grid meet other relative periods; number the periods "
            f"consecutively first (e.g. ({sd.time} - {times[0]}) / {step} + 1, and the cohorts alike)")


def _twfe_lean(sd: StaggeredData, frame: pl.DataFrame, levels: list[int], window: tuple[int, int],
               refs: tuple[int, ...]) -> EventStudyResult | None:
    """Dynamic TWFE without the N x k design (big panels; see ``lean_dummies``)."""
    cells = np.array(levels, dtype=np.int64)
    j_N = dummy_codes(frame[RELB].fill_null(refs[0]).to_numpy(), cells)
    fit = lean.lean_dummy_fit(sd, j_N, cells.size)
    if fit is None:
        return None
    lo, hi = window
    pos = np.flatnonzero((cells >= lo) & (cells <= hi))
    n_rel = np.bincount(j_N[j_N >= 0], minlength=cells.size).astype(float)
    return EventStudyResult(cells[pos], fit.beta[pos], fit.V[np.ix_(pos, pos)], refs[0], "twfe", fit.nobs, fit.df_t,
                            {"n_rel": n_rel[pos], "lean": True}, refs=refs)
