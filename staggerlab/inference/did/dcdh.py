"""de Chaisemartin-D'Haultfoeuille (2020) weights of the TWFE coefficient.

Under parallel trends, the TWFE coefficient on a binary treatment is
``beta = sum_c weight_c * Delta_c`` over treated cells ``c`` (cohort x period,
or unit x period), where ``Delta_c`` is the cell's average treatment effect
and ``weight_c`` is proportional to the residual of the treatment on the two
sets of fixed effects, summed over the cell's treated observations. Some of
these weights can be negative.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl

from ...errors import ArgumentError, ArgumentTypeError, NonAbsorbingTreatmentError, TreatmentError
from ...panels.panel import (
    Panel,
    check_columns,
    check_numeric,
    factorize_column,
    finite_mask,
    isolate_columns,
    to_polars,
)
from ..regression.absorb import Absorber
from ..results import Result
from .staggered_data import COHORT, prepare

__all__ = ["twfe_weights", "TwfeWeightsResult"]

#: weights below this in absolute value count as zero (as in the authors' software)
ZERO_WEIGHT = 1e-10


class TwfeWeightsResult(Result):
    """Weights attached by the TWFE coefficient to each treated cell.

    Attributes
    ----------
    beta : float
        The TWFE coefficient (unit + period FE).
    n_positive, n_negative : int
        Number of treated cells with positive / negative weight.
    sum_positive, sum_negative : float
        Sums of those weights (together 1).
    sigma : float
        ``|beta| / sd(w)``: the smallest standard deviation of the cell
        effects (across treated observations) compatible with an average
        effect of the opposite sign to ``beta`` (Corollary 1 of the paper).
        ``sd(w)`` is the share-weighted sd of the normalised weights with the
        ``n/(n-1)`` factor used by the authors' ``twowayfeweights``.
    cells : str
        ``"cohort"`` ((cohort, period) cells) or ``"unit"`` ((unit, period)).
    nobs, n_units : int
        Rows (with no missing value in the columns used) and units of the fit.
    """

    def __init__(self, beta: float, table: pl.DataFrame, cells: str, nobs: int, n_units: int):
        self.beta = float(beta)
        self.cells = cells
        self.nobs = int(nobs)
        self.n_units = int(n_units)
        self._table = table
        wt = table["weight"].to_numpy()
        self.n_positive = int((wt > 0).sum())
        self.n_negative = int((wt < 0).sum())
        self.sum_positive = float(wt[wt > 0].sum())
        self.sum_negative = float(wt[wt < 0].sum())
        share = table["share"].to_numpy()
        W = table["w"].to_numpy()
        n = W.size
        var = float(share @ (W - share @ W / share.sum()) ** 2 / share.sum()) * n / (n - 1) if n > 1 else np.nan
        self.sigma = abs(self.beta) / np.sqrt(var) if var > 0 else float("nan")

    def tidy(self) -> pl.DataFrame:
        """One row per treated cell: ids, ``n`` (observations or weight),
        ``share`` (of treated observations), ``weight`` (sums to one) and
        ``w`` (= weight / share, mean one)."""
        return self._table.clone()

    def summary(self) -> str:
        """Printable summary."""
        return "\n".join([
            f"TWFE coefficient: {self.beta:.5f}; weights on {self.n_positive + self.n_negative} treated "
            f"({self.cells}, period) cells; {self.n_units:,} units, {self.nobs:,} observations",
            f"  positive: {self.n_positive:>5}  sum {self.sum_positive:.4f}",
            f"  negative: {self.n_negative:>5}  sum {self.sum_negative:.4f}",
            f"  sigma (min heterogeneity sd that could flip the sign): {self.sigma:.4f}",
        ])


def _switching_frame(data: Any, y: str, unit: str, time: str, treat: str,
                     weights: str | None) -> tuple[pl.DataFrame, dict[str, str]]:
    """The rows with every used value, sorted, with ``_treat``; the caller's
    ``_``-prefixed columns renamed as ``prepare`` does (the map is returned)."""
    frame = to_polars(data)
    cols = [y, unit, time, treat, *([weights] if weights else [])]
    check_columns(frame, cols)
    check_numeric(frame, [y, treat, *([weights] if weights else [])], "outcome/treatment/weights")
    frame, names = isolate_columns(frame)
    cols = [names[c] for c in cols]
    frame = frame.filter(pl.Series(finite_mask(frame, cols))).sort(names[unit], names[time])
    # reached only after the adoption pass found a 0/1 treatment that switches off
    return frame.with_columns(pl.col(names[treat]).cast(pl.Int64).alias("_treat")), names


def twfe_weights(
    data: Any,
    *,
    y: str,
    unit: str | None = None,
    time: str | None = None,
    treat: str | None = None,
    cohort: str | None = None,
    weights: str | None = None,
    cells: Literal["auto", "cohort", "unit"] = "auto",
) -> TwfeWeightsResult:
    """de Chaisemartin-D'Haultfoeuille weights of the TWFE coefficient ("feTR").

    Parameters
    ----------
    data : polars/pandas DataFrame or Panel
    y, unit, time : str
    treat, cohort : str
        Exactly one: a 0/1 treatment (absorbing or switching on and off) or
        the adoption period (0/null = never treated).
    weights : str, optional
        Observation weights.
    cells : {"auto", "cohort", "unit"}
        Cells the weights are reported for. ``auto``: (cohort, period) for
        staggered adoption, (unit, period) for a treatment that switches off.
        Cohort cells are exact aggregates of unit cells; in unbalanced panels
        the cell effect they multiply is the residual-weighted mean effect.

    Returns
    -------
    TwfeWeightsResult
    """
    if isinstance(data, Panel):
        unit = unit or data.unit
        time = time or data.time
    if unit is None or time is None:
        raise ArgumentTypeError("give unit= and time= (or pass a staggerlab Panel)")
    absorbing = True
    try:
        sd = prepare(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat, weights=weights)
        frame, codes, names = sd.frame, list(sd.codes()), sd.names or {}
    except NonAbsorbingTreatmentError:
        absorbing = False
        frame, names = _switching_frame(data, y, unit, time, treat, weights)
        codes = [factorize_column(frame[names[unit]]), factorize_column(frame[names[time]])]
    # the frame's names of the caller's columns (a leading '_' is renamed)
    y_, unit_, time_ = names.get(y, y), names.get(unit, unit), names.get(time, time)
    w_ = names.get(weights, weights) if weights else None
    if cells == "auto":
        cells = "cohort" if absorbing else "unit"
    if cells not in ("cohort", "unit"):
        raise ArgumentError(f"cells must be 'auto', 'cohort' or 'unit', got {cells!r}")
    if cells == "cohort" and not absorbing:
        raise TreatmentError("cohort cells need a staggered (absorbing) treatment; use cells='unit'")
    D = frame["_treat"].to_numpy().astype(np.float64)
    if D.min() == D.max():
        raise TreatmentError("the treatment does not vary; there are no weights to compute")
    w = frame[w_].cast(pl.Float64).to_numpy() if w_ else np.ones(frame.height)
    ab = Absorber(codes, weights=w)
    e = ab.demean(D)
    yv = frame[y_].cast(pl.Float64).to_numpy()
    beta = float((w * e) @ yv / ((w * e) @ D))
    tr = D == 1
    keys = [COHORT if cells == "cohort" else unit_, time_]
    denom = float((w * e)[tr].sum())
    n1 = float(w[tr].sum())
    tab = (
        frame.filter(pl.Series(tr))
        .with_columns(pl.Series("_we", (w * e)[tr]), pl.Series("_w", w[tr]))
        .group_by(keys)
        .agg(pl.col("_w").sum().alias("n"), pl.col("_we").sum().alias("weight"))
        .sort(keys)
        .with_columns((pl.col("n") / n1).alias("share"), pl.col("weight") / denom)
    )
    tab = tab.with_columns((pl.col("weight") / pl.col("share")).alias("w")).with_columns(
        pl.when(pl.col("weight").abs() < ZERO_WEIGHT).then(0.0).otherwise(pl.col("weight")).alias("weight")
    )
    back = {k: v for k, v in {COHORT: "cohort", unit_: unit, time_: time}.items() if k in tab.columns and k != v}
    tab = tab.rename(back)
    return TwfeWeightsResult(beta, tab, cells, frame.height, int(codes[0].max()) + 1)
