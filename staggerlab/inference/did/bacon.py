"""Goodman-Bacon (2021) decomposition of the static TWFE coefficient.

In a balanced panel with staggered absorbing treatment, the TWFE coefficient
on ``D`` is a weighted average of every 2x2 difference-in-differences between
timing groups (and the untreated group), with weights that sum to one.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl

from ...errors import MissingValueWarning, PanelError
from ..regression.feols import feols
from ..regression.formula import Formula
from ..results import Result
from .staggered_data import COHORT, prepare

__all__ = ["bacon", "BaconResult"]

EARLY = "earlier vs later treated"
LATE = "later vs earlier treated"
NEVER = "treated vs never treated"
ALWAYS = "later vs always treated"


class BaconResult(Result):
    """The 2x2 comparisons behind a TWFE coefficient.

    Attributes
    ----------
    twfe : float
        The TWFE coefficient (unit + period FE, no controls).
    estimates, weights : ndarray
        Each 2x2 DID and its weight (weights sum to one).
    types : list of str
        Comparison type of each 2x2.
    treated, control : ndarray
        Adoption period of the treated and comparison group (0 = never
        treated within the sample; the first period = always treated).
    n_units, nobs : int
        Units and rows of the (balanced) panel decomposed.
    balanced_from : (int, int) or None
        With ``balance=True`` on an unbalanced panel: the units and rows (with
        no missing value in the columns used) before keeping the units
        observed in every period; None if the panel was balanced.
    """

    def __init__(self, twfe: float, types: list[str], treated: np.ndarray, control: np.ndarray,
                 estimates: np.ndarray, weights: np.ndarray, nobs: int, n_units: int,
                 balanced_from: tuple[int, int] | None = None):
        self.twfe = float(twfe)
        self.types = types
        self.treated = treated
        self.control = control
        self.estimates = estimates
        self.weights = weights
        self.nobs = int(nobs)
        self.n_units = int(n_units)
        self.balanced_from = balanced_from

    def tidy(self) -> pl.DataFrame:
        """One row per 2x2: ``type, treated, control, estimate, weight``."""
        return pl.DataFrame({"type": self.types, "treated": self.treated, "control": self.control,
                             "estimate": self.estimates, "weight": self.weights})

    def by_type(self) -> pl.DataFrame:
        """Per comparison type: ``type, n, weight`` (sum) and ``estimate`` (weighted mean)."""
        return (
            self.tidy()
            .group_by("type", maintain_order=True)
            .agg(pl.len().alias("n"), pl.col("weight").sum(),
                 ((pl.col("estimate") * pl.col("weight")).sum() / pl.col("weight").sum()).alias("estimate"))
            .select("type", "n", "estimate", "weight")
        )

    def summary(self) -> str:
        """Printable summary by comparison type."""
        lines = [f"Goodman-Bacon decomposition: TWFE = {self.twfe:.5f} ({self.n_units:,} units, "
                 f"{self.nobs:,} observations)"]
        if self.balanced_from is not None:
            lines.append(f"balanced panel: the units observed in every period, of {self.balanced_from[0]:,} "
                         f"units ({self.balanced_from[1]:,} rows)")
        lines.append(f"{'type':<28}{'n':>4}{'estimate':>12}{'weight':>10}")
        for r in self.by_type().iter_rows(named=True):
            lines.append(f"{r['type']:<28}{r['n']:>4}{r['estimate']:>12.5f}{r['weight']:>10.4f}")
        return "\n".join(lines)

    def plot(self, path: str | None = None, *, ax: Any = None) -> Any:
        """Weight against estimate of every 2x2, by type, with the TWFE line."""
        from ...plots.bacon import plot_bacon

        return plot_bacon(self, path=path, ax=ax)


def bacon(data: Any, *, y: str, unit: str | None = None, time: str | None = None,
          cohort: str | None = None, treat: str | None = None, balance: bool = False) -> BaconResult:
    """Goodman-Bacon decomposition of the TWFE coefficient (balanced panels).

    Parameters
    ----------
    data : polars/pandas DataFrame or Panel
    y, unit, time : str
    cohort, treat : str
        Exactly one: adoption period (0/null = never treated) or absorbing 0/1
        treatment.
    balance : bool
        The decomposition is exact on balanced panels only. False: an
        unbalanced panel is refused. True: rows with a missing value in the
        columns used are dropped (as always), then only the units observed in
        every remaining period are kept, with a ``MissingValueWarning`` saying
        how many units and rows (also in ``balanced_from``).

    Returns
    -------
    BaconResult

    Raises
    ------
    PanelError
        If the panel is unbalanced and ``balance`` is False, or no unit is
        observed in every period.
    """
    sd = prepare(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat)
    frame = sd.frame
    times = sd.times
    T = times.size
    lens = sd.unit_rows
    balanced_from = None
    if not sd.is_balanced:
        if not balance:
            raise PanelError(
                f"bacon() needs a balanced panel: {lens.size} units x {T} periods but {sd.nobs} rows; "
                "pass balance=True to keep the units observed in every period"
            )
        full = lens == T
        if not full.any():
            raise PanelError(f"bacon(): no unit ({sd.unit!r}) has {sd.y!r} observed in all {T} periods; "
                             "there is no balanced panel to decompose")
        balanced_from = (int(lens.size), sd.nobs)
        frame = frame.filter(pl.Series(np.repeat(full, lens)))
        warnings.warn(
            f"Goodman-Bacon decomposition: kept the {int(full.sum()):,} of {lens.size:,} units observed with "
            f"{sd.y!r} in all {T} periods ({frame.height:,} of {sd.nobs:,} rows); the decomposition is exact "
            "on balanced panels only",
            MissingValueWarning,
            stacklevel=2,
        )
    g_unit = frame.group_by(sd.unit, maintain_order=True).agg(pl.col(COHORT).first())[COHORT].to_numpy()
    # each unit's timing group, by the first period it is treated in the sample
    first = np.where(g_unit == 0, np.iinfo(np.int64).max, g_unit)
    pos = np.searchsorted(times, first, side="left")  # index of first treated period (T = never)
    Y = frame[sd.y].cast(pl.Float64).to_numpy().reshape(-1, T)
    groups, gcode = np.unique(pos, return_inverse=True)
    n_units = Y.shape[0]
    share = np.bincount(gcode) / n_units
    ybar = np.vstack([Y[gcode == j].mean(axis=0) for j in range(groups.size)])
    dbar = (T - groups) / T  # share of periods treated
    D = (np.arange(T)[None, :] >= pos[:, None]).astype(float)
    Dt = D - D.mean(axis=1, keepdims=True) - D.mean(axis=0, keepdims=True) + D.mean()
    VD = float((Dt**2).mean())
    if VD <= 0:
        raise PanelError("the treatment does not vary within units and periods; nothing to decompose")
    label = np.array([int(times[p]) if p < T else 0 for p in groups])

    def mean(j: int, a: int, b: int) -> float:  # mean outcome of group j over periods [a, b)
        return float(ybar[j, a:b].mean())

    types: list[str] = []
    tr: list[int] = []
    co: list[int] = []
    est: list[float] = []
    wt: list[float] = []
    untreated = [j for j in range(groups.size) if groups[j] == T]
    timing = [j for j in range(groups.size) if groups[j] < T]  # includes always treated (pos 0)
    nU = share[untreated].sum() if untreated else 0.0
    if untreated:
        yU = share[untreated] @ ybar[untreated] / nU
    for k in timing:
        gk = int(groups[k])
        if untreated and 0 < gk:
            b = (mean(k, gk, T) - mean(k, 0, gk)) - (float(yU[gk:].mean()) - float(yU[:gk].mean()))
            types.append(NEVER); tr.append(label[k]); co.append(0); est.append(b)  # noqa: E702
            wt.append(share[k] * nU * dbar[k] * (1 - dbar[k]) / VD)
        for l in timing:
            gl = int(groups[l])
            if gl <= gk:
                continue
            nn = share[k] * share[l]
            if gk > 0:  # earlier k treated, later l not yet treated, periods before gl
                b = (mean(k, gk, gl) - mean(k, 0, gk)) - (mean(l, gk, gl) - mean(l, 0, gk))
                types.append(EARLY); tr.append(label[k]); co.append(label[l]); est.append(b)  # noqa: E702
                wt.append(nn * (dbar[k] - dbar[l]) * (1 - dbar[k]) / VD)
            # later l treated, earlier k (already treated) as control, periods from gk on
            b = (mean(l, gl, T) - mean(l, gk, gl)) - (mean(k, gl, T) - mean(k, gk, gl))
            types.append(LATE if gk > 0 else ALWAYS); tr.append(label[l]); co.append(label[k])  # noqa: E702
            est.append(b)
            wt.append(nn * dbar[l] * (dbar[k] - dbar[l]) / VD)
    fit = feols(Formula.of(sd.y, ["_treat"], [sd.unit, sd.time]), frame, fixef_rm="none")
    return BaconResult(fit.coef()["_treat"], types, np.array(tr, dtype=np.int64), np.array(co, dtype=np.int64),
                       np.array(est), np.array(wt), frame.height, n_units, balanced_from)
