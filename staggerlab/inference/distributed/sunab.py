"""Sun-Abraham (2021) event study of a partitioned panel: the cohort x
relative-period dummies fitted by the partitioned ``feols``, averaged with the
in-memory estimator's cohort weights (:func:`staggerlab.inference.did.sunab.assemble`).

A cell's dummy depends only on its unit's adoption period, so, with every
unit's rows in one partition:

1. one pass reads the cohorts and whether any unit is never treated (without
   one, the last cohort is the control: its rows lose their relative period,
   and only the periods before it adopts are kept, as in memory);
2. one pass collects the (cohort, relative period) cells of the complete rows;
   the client drops the cohorts not observed at the reference period (with a
   warning) and names the cells' dummies;
3. ``map_partitions`` adds them (and drops the periods after the control
   cohort adopts); the partitioned ``feols`` fits them (CRV1 by ``cluster``);
4. one pass counts the fit's rows per cell and its units per cohort.

Equal to ``event_study(method="sunab")`` in memory at 1e-10 (tests).
Unweighted; ``wildboot(es)`` and ``placebo(es)`` gather the rows to the
client below its budget (:func:`.event_study.gathered_event_study`).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import polars as pl

from ...errors import EventStudyError, PartitionedDesignError
from ..did.event_study import EventStudyResult
from ..did.relative_periods import check_reference_observed, rel_label
from ..did.sunab import assemble
from ..regression.formula import Formula, quote
from .event_study import binned_rel, complete_rows, gather_spec, inputs, with_dummies
from .feols import feols_partitioned
from .partitions import run_partitions

__all__ = ["sunab_partitioned"]


def _rows(pdf: Any, args: tuple, kept: tuple, g_last: int | None) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The partition, each row's cohort and binned relative period (NaN for the
    control cohort), and the mask of rows the estimator uses."""
    frame, t, t_valid, g, rel = binned_rel(pdf, *args)
    ok = complete_rows(frame, t_valid, *kept)
    if g_last is not None:
        ok &= t < g_last
        rel = np.where(g == g_last, np.nan, rel)
    return frame, g, rel, ok


def _cohorts(pdf: Any, args: tuple, kept: tuple) -> tuple[set[int], bool]:
    _, g, _, ok = _rows(pdf, args, kept, None)
    return {int(x) for x in np.unique(g[ok & (g > 0)])}, bool((g[ok] == 0).any())


def _cells(pdf: Any, args: tuple, kept: tuple, g_last: int | None) -> set[tuple[int, int]]:
    _, g, rel, ok = _rows(pdf, args, kept, g_last)
    m = ok & np.isfinite(rel)
    return set(zip(g[m].tolist(), rel[m].astype(np.int64).tolist()))


def _with_cells(pdf: Any, args: tuple, time: str, g_last: int | None, lost: list[int],
                names: dict[str, tuple[int, int]]) -> Any:
    """The partition with one 0/1 column per cell, without the periods after the control
    cohort adopts and without the cohorts not observed at the reference period."""
    _, t, _, g, rel = binned_rel(pdf, *args)
    out = pdf.copy()
    if g_last is not None:
        rel = np.where(g == g_last, np.nan, rel)
    for n, (gc, r) in names.items():
        out[n] = ((g == gc) & (rel == r)).astype(np.float64)
    keep = ~np.isin(g, lost)
    if g_last is not None:
        keep &= t < g_last
    return out if keep.all() else out[keep]


def _counts(pdf: Any, design: Any, cells: list[str], args: tuple) -> tuple[np.ndarray, dict[int, int]]:
    """The fit's rows of each cell, and its units by cohort, in this partition (a unit is
    in one partition, so the partitions' counts add up)."""
    r = design.rows(pdf)
    if r.n == 0:
        return np.zeros(len(cells)), {}
    idx = [design.xs.index(n) for n in cells]
    frame, _, _, g, _ = binned_rel(pdf, *args)
    fit_units = pl.Series(r.unit_ids.tolist())
    per_unit = pl.DataFrame({"u": frame[args[0]], "g": g}).unique("u").filter(pl.col("u").is_in(fit_units.implode()))
    return r.X[:, idx].sum(axis=0), {int(c): int(n) for c, n in per_unit.group_by("g").len().iter_rows()}


def sunab_partitioned(data: Any, *, y: str, unit: str, time: str, cohort: str | None, treat: str | None,
                      controls: Sequence[str], cluster: str | None, window: tuple[int, int], ref: int,
                      bin_endpoints: bool) -> EventStudyResult:
    """The Sun-Abraham event study of a partitioned panel (see the module docstring)."""
    inp = inputs(data, y, unit, time, cohort, treat, controls, cluster, window, bin_endpoints)
    ddf, used, args, kept, cluster = inp.ddf, inp.used, inp.args, inp.kept, inp.cluster
    source = cohort or treat
    got = run_partitions(ddf, _cohorts, args, kept)
    cohorts = sorted(set().union(*[c for c, _ in got]))
    if not cohorts:
        raise EventStudyError(f"no treated unit: {source!r} never marks an adoption")
    g_last = None
    if not any(n for _, n in got):
        g_last = cohorts.pop()
        warnings.warn(f"no never-treated units: cohort {g_last} (last treated) is the control group", stacklevel=4)
    pairs = set().union(*run_partitions(ddf, _cells, args, kept, g_last))
    observed = sorted({r for _, r in pairs})
    check_reference_observed((ref,), observed, window)
    has_ref = {g for g, r in pairs if r == ref}
    lost = [g for g in cohorts if g not in has_ref]
    if lost:
        warnings.warn(f"cohort(s) {lost} have no observation at the reference period {ref} and are dropped",
                      stacklevel=4)
        cohorts = [g for g in cohorts if g in has_ref]
    if not cohorts:
        raise EventStudyError("no treated cohort is observed at the reference period")
    cells = sorted((g, r) for g, r in pairs if g in cohorts and r != ref)
    names = {f"_sa_{g}_{rel_label(r)}": (g, r) for g, r in cells}
    ddf2 = with_dummies(ddf, _with_cells, list(names), args, time, g_last, lost, names, what="Sun-Abraham")
    fit = feols_partitioned(Formula.of(y, [*names, *controls], [unit, time]), ddf2, vcov={"CRV1": quote(cluster)})
    dropped = [names[n] for n in names if n not in fit.coefnames]
    if dropped:
        raise PartitionedDesignError(f"Sun-Abraham cells {dropped} (cohort, relative period) are collinear with the "
                                     "fixed effects or the controls; change the window or the reference period")
    counts = run_partitions(ddf2, _counts, fit.design, list(names), args)
    n_c = sum(c for c, _ in counts)
    n_units: dict[int, int] = {}
    for _, by in counts:
        for g, n in by.items():
            n_units[g] = n_units.get(g, 0) + n
    pos = [fit.coefnames.index(n) for n in names]
    g_c = np.array([names[n][0] for n in names], dtype=np.int64)
    l_c = np.array([names[n][1] for n in names], dtype=np.int64)
    call = dict(y=y, unit=unit, time=time, cohort=cohort, treat=treat, controls=list(controls), cluster=cluster,
                window=window, ref=ref, bin_endpoints=bin_endpoints)
    extras = {"partitioned_fit": fit, "partitioned": gather_spec(ddf, used, call, "sunab", fit.client_budget)}
    V = fit.vcov()
    return assemble(fit.beta[pos], V[np.ix_(pos, pos)], g_c, l_c, np.asarray(n_c, float),
                    n_units, fit.nobs, fit.df_t, ref, window, extras)

