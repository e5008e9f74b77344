"""Effect paths of a power study: what is added to the re-assigned treated cells.

An effect path ``h`` gives every treated cell an effect scale; the effect
added at size ``delta`` is ``delta * h``. Presets are normalized on the
observed design (its treated cells), so that ``delta`` is the average effect
on the treated cells of the actual assignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...errors import ArgumentError, ArgumentTypeError

__all__ = ["EffectPath", "PRESETS", "effect_path", "RowDesign"]

PRESETS = ("homogeneous", "ramp", "heterogeneous")

PathFunc = Callable[[np.ndarray, np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class RowDesign:
    """The estimation rows a power study re-assigns.

    Attributes
    ----------
    unit_N : ndarray of int
        Unit code of every row (index into ``units``).
    per_N : ndarray of int
        Period index of every row (index into ``periods``).
    units : ndarray
        Unit ids.
    periods : ndarray of int64
        The distinct periods, sorted.
    """

    unit_N: np.ndarray
    per_N: np.ndarray
    units: np.ndarray
    periods: np.ndarray

    def cells(self, adopt_U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Treated rows of one assignment and their event times and cohorts.

        ``adopt_U`` holds each unit's adoption period (0 = untreated). Event time
        counts periods of the panel since adoption (0 in the adoption period).
        Returns ``(rows, event_time, cohort)``.
        """
        g_N = adopt_U[self.unit_N]
        gi_N = np.searchsorted(self.periods, g_N)
        treated = (g_N != 0) & (self.per_N >= gi_N)
        rows = np.flatnonzero(treated)
        return rows, (self.per_N[rows] - gi_N[rows]).astype(np.int64), g_N[rows].astype(np.int64)


@dataclass(frozen=True)
class EffectPath:
    """The shape of the injected effect.

    Attributes
    ----------
    name : str
        ``"homogeneous"``, ``"ramp"``, ``"heterogeneous"`` or the callable's name.
    func : callable or None
        ``func(event_time, cohort, unit) -> scale`` on treated cells; None for the
        homogeneous path (scale 1 everywhere).
    """

    name: str
    func: PathFunc | None = None

    @property
    def homogeneous(self) -> bool:
        """Whether every treated cell gets the same effect."""
        return self.func is None

    def scale(self, rows_design: RowDesign, adopt_U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, h)``: the treated rows of an assignment and their effect scales."""
        rows, e, g = rows_design.cells(adopt_U)
        if self.func is None:
            return rows, np.ones(rows.size)
        h = np.asarray(self.func(e, g, rows_design.units[rows_design.unit_N[rows]]), dtype=np.float64)
        if h.ndim == 0:  # a constant scale
            h = np.full(rows.size, float(h))
        if h.shape != (rows.size,) or not np.isfinite(h).all():
            raise ArgumentError(f"the effect function {self.name!r} must return one finite number per treated cell "
                                f"(got shape {h.shape} for {rows.size} cells, or non-finite values)")
        return rows, h


def effect_path(effects: Any, rows_design: RowDesign, observed_U: np.ndarray) -> EffectPath:
    """The effect path named by ``effects`` (a preset name or a callable).

    Parameters
    ----------
    effects : {"homogeneous", "ramp", "heterogeneous"} or callable
        ``ramp``: the effect grows linearly with event time, ``(1 + e) / (1 + e_bar)``
        with ``e_bar`` the mean event time of the observed treated cells;
        ``heterogeneous``: cohort-specific, from 1.5 (earliest cohort) down to 0.5
        (latest), rescaled to average 1 over the observed treated cells; a
        callable ``f(event_time, cohort, unit)`` gets int64 arrays of event times
        (periods since adoption) and cohorts (adoption periods) and the unit ids of
        the treated cells and returns their effect scales.
    rows_design : RowDesign
    observed_U : ndarray
        The observed adoption periods (0 = never), used to normalize presets.

    Returns
    -------
    EffectPath
    """
    if callable(effects):
        return EffectPath(getattr(effects, "__name__", "custom"), effects)
    if not isinstance(effects, str):
        raise ArgumentTypeError(f"an effect path is one of {PRESETS} or a callable, got {type(effects).__name__}")
    if effects not in PRESETS:
        raise ArgumentError(f"unknown effect path {effects!r}; use one of {PRESETS} or a callable")
    if effects == "homogeneous":
        return EffectPath("homogeneous")
    _, e_obs, g_obs = rows_design.cells(observed_U)
    if effects == "ramp":
        scale = 1.0 + float(e_obs.mean())

        def ramp(event_time: np.ndarray, cohort: np.ndarray, unit: np.ndarray) -> np.ndarray:
            return (1.0 + event_time) / scale

        return EffectPath("ramp", ramp)
    gvals = np.unique(observed_U[observed_U != 0])
    raw = np.linspace(1.5, 0.5, gvals.size) if gvals.size > 1 else np.ones(1)
    # average 1 over the observed treated cells, so that delta keeps its meaning
    raw = raw / float(raw[np.searchsorted(gvals, g_obs)].mean())

    def heterogeneous(event_time: np.ndarray, cohort: np.ndarray, unit: np.ndarray) -> np.ndarray:
        return raw[np.searchsorted(gvals, cohort)]

    return EffectPath("heterogeneous", heterogeneous)
