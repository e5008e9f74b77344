"""The battery's checks of its inputs: every option and column is checked here,
before the first section runs, and a problem stops the run with one error whose
message names the column (or unit, or option) and the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ._validate import check_draws
from .errors import (
    EmptyPanelError,
    MissingColumnError,
    MissingValueError,
    PanelError,
    SpecError,
    StaggerlabError,
    TreatmentError,
    VcovError,
)
from .inference.regression.formula import split_top, unquote
from .panels.adoption import adoption_times
from .panels.panel import Panel, check_numeric, check_periods, finite_mask, fresh_name

if TYPE_CHECKING:
    from .battery import BatterySpec

__all__ = ["check_spec_types", "check_options", "column_roles", "derive_treatment", "helper_names",
           "instrument_columns", "validate"]


def helper_names(columns: list[str]) -> tuple[str, str]:
    """Names of the cohort and treatment columns the battery adds, distinct from the data's."""
    return fresh_name("_cohort", columns), fresh_name("_treat", columns)


def instrument_columns(z: str) -> tuple[str, ...]:
    """The columns of one ``--instruments`` entry (``"z1 + z2"``; backticks quote names)."""
    return tuple(unquote(c) for _, c in split_top(z, "+") if c)


def check_spec_types(raw: dict[str, Any], source: str, defaults: BatterySpec) -> None:
    """Raise ``SpecError`` for an option whose value has the wrong type (the type of its default:
    text for the options that default to none, a list of text for the column lists, two integers
    for ``window``)."""
    for key, value in raw.items():
        default = getattr(defaults, key)
        if key == "window":
            ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value)
            want = "two integers, e.g. [-5, 5]"
        elif isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            want = 'a list of column names, e.g. ["a", "b"]'
        elif isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        else:
            ok, want = isinstance(value, str), "a string"
        if not ok:
            raise SpecError(f"option {key!r} in {source} must be {want}, got {value!r}")



def derive_treatment(panel: Panel, spec: BatterySpec) -> tuple[pl.DataFrame, str]:
    """Return the panel's frame with a 0/1 treatment column and the cohort column (names from
    :func:`helper_names`), and the treatment's name.

    Raises ``TreatmentError`` for a treatment other than 0/1 and
    ``NonAbsorbingTreatmentError`` for one that switches off, each naming
    the first such unit by its label: the placebo test and the staggered
    estimators need adoption times.
    """
    frame = panel.frame
    cohort_col, treat_col = helper_names(frame.columns)
    if spec.treat and spec.treat in frame.columns:
        treat = spec.treat
        d = frame[treat].cast(pl.Float64).to_numpy()
        ok = np.isfinite(d)  # rows without a treatment value say nothing about adoption
        codes = panel.unit_codes
        times = frame[spec.time].cast(pl.Int64).to_numpy()
        if not ok.all():
            d, codes, times = d[ok], codes[ok], times[ok]
        g = adoption_times(d, times, column=treat, units=panel.units, unit_codes=codes, require_treated=False).g
        return frame.with_columns(pl.Series(cohort_col, g[panel.unit_codes])), treat
    if spec.cohort:
        treat = treat_col
        g = pl.col(spec.cohort).fill_null(0)
        frame = frame.with_columns(
            ((g > 0) & (pl.col(spec.time) >= g)).cast(pl.Int64).alias(treat), g.cast(pl.Int64).alias(cohort_col)
        )
        return frame, treat
    raise MissingColumnError(f"treatment column {spec.treat!r} not found; give --treat COL or --cohort COL")


def check_options(spec: BatterySpec) -> None:
    """Check the options that need no data (draw counts, outcomes, window); raise one clear error."""
    check_draws(spec.draws, "draws (--draws)")
    check_draws(spec.boot_draws, "boot_draws (--boot-draws)")
    check_draws(spec.power_draws, "power_draws (--power-draws)")
    if not spec.outcomes:
        raise StaggerlabError("no outcome given; use --outcome COL")
    lo, hi = spec.window
    if lo > -1 or hi < 0:
        raise SpecError(f"window must run from a negative event time to a non-negative one, got {spec.window}")


def column_roles(spec: BatterySpec) -> dict[str, list[str]]:
    """Every column the battery reads, by the role the messages name it with."""
    return {
        "unit": [spec.unit], "time": [spec.time], "outcome": spec.outcomes, "control": spec.controls,
        "cluster": [spec.cluster_col], "extra control": spec.extra_controls, "mechanism": spec.mechanisms,
        "split": spec.splits, "cohort": [spec.cohort] if spec.cohort else [],
        "treatment": [spec.treat] if spec.treat and not spec.cohort else [],
        "instrument": [z for zs in spec.instruments for z in instrument_columns(zs)],
    }


def validate(frame: pl.DataFrame, spec: BatterySpec) -> pl.DataFrame:
    """Check everything a long step would trip on; raise one clear error.

    Returns the frame with the cohort column (adoption period, 0 = never) and
    the treatment column (``spec.treat``, or one derived from ``--cohort``),
    named by :func:`helper_names`.
    Every check runs before the first section: options, an empty frame, absent
    or entirely missing columns, a treatment that is also an outcome or a
    control, non-numeric values, periods that are not integers, a panel of
    one row / unit / period, a treatment that is not 0/1 or switches off,
    a treatment adopted by every unit in one period (no comparison group),
    a single cluster.
    """
    check_options(spec)
    if frame.height == 0:
        raise EmptyPanelError("the data have column names but no rows; give data with rows")
    roles = column_roles(spec)
    for role, cols in roles.items():
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            if role == "treatment":
                raise MissingColumnError(f"treatment column {spec.treat!r} not found; give --treat COL or "
                                         "--cohort COL")
            raise MissingColumnError(
                f"{role} column {missing[0]!r} not found in the data; available: {', '.join(frame.columns[:15])}"
            )
    for role, cols in roles.items():
        gone = [c for c in cols if not finite_mask(frame, [c]).any()]
        if gone:
            raise MissingValueError(f"{role} column {gone[0]!r} is entirely missing (no usable value in "
                                    f"{frame.height:,} rows); check the column name, or leave it out")
    treat_col = roles["treatment"][0] if roles["treatment"] else None
    if treat_col is not None:
        for role in ("outcome", "mechanism", "control", "extra control", "instrument"):
            if treat_col in roles[role]:
                flag = {"outcome": "--outcome", "mechanism": "--mechanisms", "control": "--controls",
                        "extra control": "--extra-controls", "instrument": "--iv"}[role]
                raise TreatmentError(f"treatment {treat_col!r} is also listed as {'an' if role[0] in 'aeiou' else 'a'} "
                                     f"{role}; drop it from {flag}")
    for role in ("outcome", "mechanism", "control", "extra control", "instrument", "treatment", "cohort"):
        check_numeric(frame, roles[role], role)
    check_periods(frame, spec.time)
    # one row per (unit, period); the panel's unit codes then serve the adoption pass
    panel = Panel.from_frame(frame, unit=spec.unit, time=spec.time)
    n_units, n_periods = panel.n_units, panel.n_periods
    if panel.nobs < 2 or n_units < 2 or n_periods < 2:
        raise PanelError(
            f"the panel has {panel.nobs:,} row(s), {n_units:,} unit(s) ({spec.unit}) and {n_periods:,} "
            f"period(s) ({spec.time}); two-way fixed effects need at least 2 units and 2 periods"
        )
    frame, treat = derive_treatment(panel, spec)
    d = frame[treat].drop_nulls()
    if d.n_unique() < 2:
        raise TreatmentError(f"treatment {treat!r} never varies (always {d[0] if d.len() else 'missing'}); nothing to estimate")
    within = (frame.filter(pl.col(treat).cast(pl.Float64).is_finite())
              .group_by(spec.time).agg(pl.col(treat).n_unique()))
    if within.get_column(treat).max() < 2:
        # D_it = f(t): a set of period dummies; no period has treated and untreated units side by side
        start = frame.filter(pl.col(treat) > 0).get_column(spec.time).min()
        raise TreatmentError(
            f"treatment {treat!r} takes one value per period (every unit has it from {spec.time} = {start}): "
            "it is collinear with the period effects and no period compares treated with untreated units; "
            "a difference-in-differences needs units that are not (yet) treated")
    for y in [*spec.outcomes, *spec.mechanisms]:
        if frame[y].drop_nulls().n_unique() < 2:
            raise StaggerlabError(f"outcome {y!r} is constant; drop it from --outcome")
    n_cl = frame[spec.cluster_col].drop_nulls().n_unique()
    if n_cl < 2:
        raise VcovError(f"cluster column {spec.cluster_col!r} has {n_cl} cluster; clustering needs at least 2")
    return frame
