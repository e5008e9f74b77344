"""Composable hypothesis strategies for panels and fixed-effect designs.

Small ``@st.composite`` building blocks with bounded sizes (so shrinking is
fast and every example stays cheap to check against a dense reference):

* ``fe_codes`` -- one FE's integer codes, optionally with forced singletons;
* ``weights`` -- positive observation weights;
* ``fe_design`` -- 1-3 FE code arrays + values to demean (+ weights);
* ``cohorts`` -- staggered adoption periods with never-treated units;
* ``unbalanced_mask`` -- which unit-periods are observed;
* ``staggered_panel`` -- a polars panel built from the pieces above.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_ROWS = 80
MAX_LEVELS = 12

finite_floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def fe_codes(draw, n: int, *, max_levels: int = MAX_LEVELS, singletons: bool = False) -> np.ndarray:
    """Integer codes of one FE on ``n`` rows (levels need not be dense).

    With ``singletons=True`` at least one level is guaranteed to have one row.
    """
    g = draw(st.integers(1, max(1, min(max_levels, n))))
    codes = draw(hnp.arrays(np.int64, n, elements=st.integers(0, g - 1)))
    if singletons and n >= 2:
        i = draw(st.integers(0, n - 1))
        codes = codes.copy()
        codes[i] = g + 5  # a level no other row uses (and a gap in the codes)
    return codes


@st.composite
def weights(draw, n: int) -> np.ndarray:
    """Positive weights, spread over two orders of magnitude."""
    return draw(hnp.arrays(np.float64, n, elements=st.floats(0.1, 10.0)))


@st.composite
def fe_design(
    draw,
    *,
    min_rows: int = 4,
    max_rows: int = MAX_ROWS,
    n_fe: int | tuple[int, int] = (1, 3),
    max_cols: int = 3,
    weighted: bool | None = None,
    singletons: bool | None = None,
) -> dict:
    """A demeaning problem: ``codes`` (list of 1-3 int arrays), ``x`` (N x K), ``weights``.

    ``n_fe`` fixes the number of FEs or gives a range; ``weighted`` /
    ``singletons`` force the choice (None: drawn).
    """
    n = draw(st.integers(min_rows, max_rows))
    q = n_fe if isinstance(n_fe, int) else draw(st.integers(*n_fe))
    with_single = draw(st.booleans()) if singletons is None else singletons
    codes = [draw(fe_codes(n, singletons=with_single and j == 0)) for j in range(q)]
    k = draw(st.integers(1, max_cols))
    x = draw(hnp.arrays(np.float64, (n, k), elements=finite_floats))
    use_w = draw(st.booleans()) if weighted is None else weighted
    w = draw(weights(n)) if use_w else None
    return {"codes": codes, "x": x, "weights": w}


@st.composite
def cohorts(
    draw, n_units: int, n_periods: int, *, start: int = 2000, min_never: int = 1
) -> np.ndarray:
    """Adoption period per unit (0 = never treated), at least ``min_never`` never-treated."""
    first = start + 1
    last = start + n_periods - 1
    periods = draw(st.lists(st.integers(first, max(first, last)), min_size=1, max_size=4, unique=True))
    g = draw(hnp.arrays(np.int64, n_units, elements=st.sampled_from([0, *periods])))
    g[: min(min_never, n_units)] = 0
    return g


@st.composite
def unbalanced_mask(draw, n_units: int, n_periods: int, *, max_drop: float = 0.5) -> np.ndarray:
    """Observed unit-periods (row-major ``n_units x n_periods``); each unit keeps a row."""
    p = draw(st.floats(0.0, max_drop))
    seed = draw(st.integers(0, 2**32 - 1))
    mask = np.random.default_rng(seed).random((n_units, n_periods)) >= p
    empty = ~mask.any(axis=1)
    mask[empty, 0] = True
    return mask.ravel()


@st.composite
def staggered_panel(
    draw,
    *,
    max_units: int = 15,
    max_periods: int = 6,
    start: int = 2000,
    balanced: bool | None = None,
    with_weights: bool = False,
) -> pl.DataFrame:
    """A small staggered-adoption panel: ``unit, time, cohort, treat, y, x1, x2`` (+ ``w``).

    Never-treated units are always present; unbalanced panels can contain
    units observed once (singletons of the unit FE).
    """
    n_units = draw(st.integers(3, max_units))
    n_periods = draw(st.integers(2, max_periods))
    g = draw(cohorts(n_units, n_periods, start=start))
    unit = np.repeat(np.arange(n_units), n_periods)
    time = np.tile(np.arange(start, start + n_periods), n_units)
    coh = np.repeat(g, n_periods)
    treat = ((coh > 0) & (time >= coh)).astype(np.int64)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = unit.size
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    y = rng.normal(size=n_units)[unit] + rng.normal(size=n_periods)[time - start] + treat + 0.5 * x1 + rng.normal(size=n)
    frame = pl.DataFrame({"unit": unit, "time": time, "cohort": coh, "treat": treat, "y": y, "x1": x1, "x2": x2})
    if with_weights:
        frame = frame.with_columns(w=rng.uniform(0.2, 5.0, n))
    is_balanced = draw(st.booleans()) if balanced is None else balanced
    if not is_balanced:
        frame = frame.filter(pl.Series(draw(unbalanced_mask(n_units, n_periods))))
    return frame


def dummies(codes: np.ndarray) -> np.ndarray:
    """Dense 0/1 indicator matrix of one FE (columns = distinct codes)."""
    _, inv = np.unique(codes, return_inverse=True)
    return (inv[:, None] == np.arange(inv.max() + 1)[None, :]).astype(np.float64)
