"""Dynamic TWFE event study of a partitioned panel (dask DataFrame or a
directory of parquet files).

A unit's relative-period dummies depend only on its own adoption period, and
every unit's rows are in one partition, so the event study is the partitioned
``feols`` of the outcome on those dummies (and the controls) with unit and
period fixed effects:

1. one pass reads each partition's adoption periods (the first period with
   ``treat == 1``, or the ``cohort`` column, by
   :func:`~staggerlab.panels.adoption.adoption_times`, as in memory) and
   returns the relative periods it observes;
2. the client takes their union, checks the reference period(s) and names
   the dummies; ``map_partitions`` adds them to each partition (lazily: they
   are rebuilt from the adoption periods on every pass);
3. :func:`~staggerlab.inference.distributed.feols.feols_partitioned` fits
   them (CRV1 by ``cluster``), and one more pass counts the fit's rows per
   relative period (the ``simple`` aggregate's weights).

Coefficients and variance equal the in-memory ``event_study(method="twfe")``
at 1e-10 (tests). Unweighted, as the partitioned ``feols``.

``wildboot(es)`` and ``placebo(es)`` take the bit-identical route of
:mod:`.exact`: below the fit's client budget the partitions' columns are
gathered to the client, sorted by unit and period, and the in-memory event
study of those rows is bootstrapped (:func:`gathered_event_study`); above it
they refuse (the partitioned algebra of a whole event study is not written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from ...errors import EventStudyError, PartitionedDesignError
from ...panels.adoption import adoption_times
from ..did.event_study import EventStudyResult
from ..did.relative_periods import check_reference_observed, rel_label
from ..regression.formula import Formula, quote
from .feols import feols_partitioned
from .partitions import as_dask, run_partitions

__all__ = ["twfe_partitioned", "gathered_event_study", "binned_rel", "complete_rows", "gather_spec", "inputs",
           "with_dummies"]


def binned_rel(pdf: Any, unit: str, time: str, source: str, is_cohort: bool, window: tuple[int, int],
               bin_endpoints: bool) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A partition's rows (as polars, in their order) and per row: the period
    (int64), whether it is there, the unit's adoption period (0 = never) and the
    binned relative period (``time - adoption``; NaN for never-treated units
    and, without binning, outside the window). Adoption periods are read from
    every row with a unit, a period and a treatment value, as in memory."""
    frame = pdf if isinstance(pdf, pl.DataFrame) else pl.from_pandas(pdf)
    n = frame.height
    rel = np.full(n, np.nan)
    if n == 0:
        return frame, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64), rel
    tcol = frame[time]
    if tcol.dtype.is_float():  # integer periods stored as floats (a pandas column with missing values)
        v = tcol.drop_nulls().drop_nans()
        if (v != v.round()).any():
            raise EventStudyError(f"time column {time!r} must hold integer periods (relative time is time - adoption)")
        tcol = tcol.fill_nan(None)
    elif not tcol.dtype.is_integer():
        raise EventStudyError(f"time column {time!r} must hold integer periods (relative time is time - adoption)")
    ucol = frame[unit]
    codes = ucol.rank("dense").fill_null(1).cast(pl.Int64).to_numpy() - 1
    units = ucol.drop_nulls().unique().sort()
    values = frame[source].cast(pl.Float64).to_numpy()
    t_valid = tcol.is_not_null().to_numpy()
    ok = t_valid & ucol.is_not_null().to_numpy() & (np.isfinite(values) | is_cohort)
    t = tcol.fill_null(0).cast(pl.Int64).to_numpy()
    g = adoption_times(values[ok], t[ok], column=source, units=units, unit_codes=codes[ok],
                       cohort=is_cohort, require_treated=False).g
    g_row = np.asarray(g, dtype=np.int64)[codes]
    treated = (g_row > 0) & ok
    rel[treated] = t[treated] - g_row[treated]
    lo, hi = window
    if bin_endpoints:
        rel = np.clip(rel, lo, hi)
    return frame, t, t_valid, g_row, rel


def complete_rows(frame: pl.DataFrame, t_valid: np.ndarray, y: str, controls: Sequence[str], unit: str,
                  cluster: str, source: str, is_cohort: bool) -> np.ndarray:
    """Rows the in-memory estimators keep: a finite outcome and controls, a unit, a
    period and a cluster, and (with ``treat=``) a treatment value."""
    keep = t_valid.copy()
    for c in [y, *controls]:
        keep &= np.isfinite(frame[c].cast(pl.Float64).to_numpy())
    for c in dict.fromkeys([unit, cluster]):
        keep &= frame[c].is_not_null().to_numpy()
    if not is_cohort:
        keep &= np.isfinite(frame[source].cast(pl.Float64).to_numpy())
    return keep


@dataclass
class Inputs:
    """A partitioned event study's columns and the arguments of the per-partition helpers."""

    ddf: Any  # the panel's used columns
    used: list[str]
    args: tuple  # of binned_rel
    kept: tuple  # of complete_rows (after the frame and t_valid)
    cluster: str


def inputs(data: Any, y: str, unit: str, time: str, cohort: str | None, treat: str | None, controls: Sequence[str],
           cluster: str | None, window: tuple[int, int], bin_endpoints: bool) -> Inputs:
    """The used columns of a partitioned panel and the helpers' arguments."""
    source = cohort or treat
    cluster = cluster or unit
    used = list(dict.fromkeys([y, unit, time, source, *controls, cluster]))
    return Inputs(as_dask(data, used), used, (unit, time, source, cohort is not None, window, bin_endpoints),
                  (y, list(controls), unit, cluster, source, cohort is not None), cluster)


def with_dummies(ddf: Any, fn: Any, names: Sequence[str], *fn_args: Any, what: str) -> Any:
    """``ddf`` with the float columns ``names`` that ``fn(partition, *fn_args)`` adds (lazily)."""
    clash = sorted(set(names) & set(ddf.columns))
    if clash:
        raise EventStudyError(f"columns named like the {what} dummies {clash} are in the panel; rename them")
    meta = ddf._meta.copy()
    for n in names:
        meta[n] = np.zeros(0, dtype=np.float64)
    return ddf.map_partitions(fn, *fn_args, meta=meta)


def _levels(pdf: Any, args: tuple, kept: tuple) -> list[int]:
    """The binned relative periods of the partition's complete rows."""
    frame, _, t_valid, _, rel = binned_rel(pdf, *args)
    ok = complete_rows(frame, t_valid, *kept) & np.isfinite(rel)
    return sorted({int(r) for r in rel[ok]})


def _with_dummies(pdf: Any, args: tuple, names: dict[str, int]) -> Any:
    """The partition with one 0/1 column per named relative period (a pandas frame, as dask passes it)."""
    rel = binned_rel(pdf, *args)[-1]
    out = pdf.copy()
    for n, r in names.items():
        out[n] = (rel == r).astype(np.float64)
    return out


def _counts(pdf: Any, design: Any, dummies: list[str]) -> np.ndarray:
    """The fit's rows of each dummy in this partition."""
    r = design.rows(pdf)
    idx = [design.xs.index(n) for n in dummies]
    return r.X[:, idx].sum(axis=0) if r.n else np.zeros(len(dummies))


def twfe_partitioned(data: Any, *, y: str, unit: str, time: str, cohort: str | None, treat: str | None,
                     controls: Sequence[str], cluster: str | None, window: tuple[int, int], refs: tuple[int, ...],
                     bin_endpoints: bool) -> EventStudyResult:
    """The dynamic TWFE event study of a partitioned panel (see the module docstring)."""
    inp = inputs(data, y, unit, time, cohort, treat, controls, cluster, window, bin_endpoints)
    ddf, used, args, cluster = inp.ddf, inp.used, inp.args, inp.cluster
    observed = sorted(set().union(*run_partitions(ddf, _levels, args, inp.kept)))
    if not observed:
        raise EventStudyError(f"no treated unit: {cohort or treat!r} never marks an adoption")
    check_reference_observed(refs, observed, window)
    lo, hi = window
    levels = [r for r in observed if r not in refs]
    if not levels:
        raise EventStudyError("no relative period other than the reference is observed")
    names = {f"_es_{rel_label(r)}": r for r in levels}
    ddf2 = with_dummies(ddf, _with_dummies, list(names), args, names, what="event-study")
    fml = Formula.of(y, [*names, *controls], [unit, time])
    fit = feols_partitioned(fml, ddf2, vcov={"CRV1": quote(cluster)})
    dropped = [r for n, r in names.items() if n not in fit.coefnames]
    if dropped:
        raise PartitionedDesignError(
            f"relative-period dummies {dropped} are collinear with the {unit} and {time} fixed effects (or the "
            f"controls); the estimates would be relative to an unnamed period. Observed relative periods: "
            f"{observed}; add them to ref= (e.g. ref={[*refs, *dropped]}) or change the window")
    kept = [n for n in names if lo <= names[n] <= hi]
    counts = sum(run_partitions(ddf2, _counts, fit.design, kept))
    pos = [fit.coefnames.index(n) for n in kept]
    V = fit.vcov()
    call = dict(y=y, unit=unit, time=time, cohort=cohort, treat=treat, controls=list(controls), cluster=cluster,
                window=window, ref=list(refs) if len(refs) > 1 else refs[0], bin_endpoints=bin_endpoints)
    return EventStudyResult(np.array([names[n] for n in kept], dtype=np.int64), fit.beta[pos], V[np.ix_(pos, pos)],
                            refs[0], "twfe", fit.nobs, fit.df_t,
                            {"n_rel": np.asarray(counts, float), "partitioned_fit": fit, "window": window,
                             "bin_endpoints": bin_endpoints, "unit": unit, "time": time,
                             "partitioned": gather_spec(ddf, used, call, "twfe", fit.client_budget)}, refs=refs)


def gather_spec(ddf: Any, columns: list[str], call: dict[str, Any], method: str, budget: int) -> dict[str, Any]:
    """What :func:`gathered_event_study` needs to rebuild a partitioned event study in memory:
    the panel's columns, the ``event_study`` arguments and the client budget (bytes)."""
    return {"ddf": ddf, "columns": columns, "call": call, "method": method, "client_budget": budget}


def _columns(pdf: Any, cols: list[str]) -> pl.DataFrame:
    frame = pdf if isinstance(pdf, pl.DataFrame) else pl.from_pandas(pdf)
    return frame.select(cols)


def gathered_event_study(es: EventStudyResult, what: str) -> EventStudyResult:
    """The in-memory event study of a partitioned one's rows, gathered to the
    client and sorted by unit then period (stable), for ``what`` (``"wildboot"``,
    ``"placebo"``): bit-identical to the in-memory procedure on those rows.

    Raises
    ------
    ClientMemoryError
        The rows exceed the client budget (``es.extra["partitioned"]["client_budget"]``,
        bytes; the estimate is :func:`.exact.rows_bytes`).
    """
    from ...errors import ClientMemoryError
    from ..did.event_study import event_study
    from .exact import rows_bytes

    part = es.extra["partitioned"]
    cols, budget = part["columns"], part["client_budget"]
    need = rows_bytes(es.nobs, len(cols))
    if need > budget:
        raise ClientMemoryError(
            f"{what} of a partitioned event study gathers its {es.nobs:,} rows to the client (about "
            f"{need / 2**30:.2f} GiB; client budget {budget / 2**30:.2f} GiB) and runs the in-memory procedure "
            "on them; the partitioned algebra of a whole event study is not written: raise the budget with "
            "es.extra['partitioned']['client_budget'] = ... (bytes), or bootstrap single coefficients of a "
            "partitioned feols fit")
    call = part["call"]
    frames = [f for f in run_partitions(part["ddf"], _columns, cols) if f.height]
    rows = pl.concat(frames).sort([call["unit"], call["time"]], maintain_order=True)
    mem = event_study(rows, method=part["method"], **call)
    if mem.rel_time.tolist() != es.rel_time.tolist() or mem.nobs != es.nobs:  # pragma: no cover - same rows
        raise EventStudyError("the gathered in-memory event study differs from the partitioned one")
    return mem
