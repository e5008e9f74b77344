"""The one results protocol shared by every estimator and test.

Every result is a :class:`Result`: ``tidy()`` gives a polars frame, ``summary()``
printable text, and ``plot()`` a figure where one exists (drawn by
:mod:`staggerlab.plots`). Coefficient-vector results add ``coef()``, ``se()``,
``pvalue()`` and ``confint()`` (:class:`~staggerlab.inference.regression.results.CoefTable`).
Every event-study method aggregates into an :class:`Aggregate` and tests its
pre-trends with a :class:`PretrendTest`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import polars as pl
from scipy import special

from .._validate import check_level

__all__ = ["Result", "Aggregate", "PretrendTest", "interval", "critical_value", "pvalue_text"]


class Result(ABC):
    """Base of every result.

    Subclasses must define :meth:`tidy` and :meth:`summary`; results with a
    figure override :meth:`plot`. The printed form is the summary unless a
    subclass keeps a shorter one.
    """

    @abstractmethod
    def tidy(self) -> pl.DataFrame:
        """The result as a polars frame."""

    @abstractmethod
    def summary(self) -> str:
        """Printable text."""

    def plot(self, *args: Any, **kwargs: Any) -> Any:
        """The result's figure (a matplotlib Figure), drawn by :mod:`staggerlab.plots`."""
        raise NotImplementedError(f"{type(self).__name__} has no figure")

    def __repr__(self) -> str:
        return self.summary()


def critical_value(alpha: float, df: int | None) -> float:
    """Two-sided size-``alpha`` critical value of a t(``df``) reference, or the normal one when ``df`` is None/0."""
    # scipy.special, not scipy.stats (whose import alone takes ~1 s): the same functions
    # scipy.stats' t.ppf and norm.ppf evaluate, so the same bits
    return float(special.stdtrit(df, 1 - alpha / 2) if df else special.ndtri(1 - alpha / 2))


def interval(est: np.ndarray, se: np.ndarray, df: int | None, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``level`` confidence intervals from a t(``df``) reference, or the normal one when ``df`` is None/0."""
    q = critical_value(1.0 - check_level(level), df)
    return est - q * se, est + q * se


def pvalue_text(pvalue: float, draws: int, none_as_extreme: bool) -> str:
    """A resampling p-value as reports and figures print it after "p": ``= 0.0123``, or the bound below.

    When no draw of ``draws`` was as extreme as the observed statistic the
    p-value says only that it is below ``1/(B+1)``, so the report prints
    that bound and its number, not a bare ``0.0000`` (bootstrap) or ``1/(B+1)``
    (placebo, whose p-value counts the observed assignment as a draw).
    """
    if none_as_extreme:
        return f"< 1/(B+1) = {1 / (draws + 1):.2g}"
    return f"= {pvalue:.4f}"


class Aggregate(Result):
    """An aggregated effect (a linear combination of event-study estimates).

    Attributes
    ----------
    kind : str
        ``"simple"``, ``"dynamic"``, ``"group"`` or ``"calendar"``.
    estimate, se : float
        The overall aggregated effect and its standard error.
    components : polars.DataFrame or None
        The effects it averages (``level, estimate, se``): by relative period,
        cohort or calendar period.
    df : int or None
        Degrees of freedom of the t reference distribution (None: normal).
    """

    def __init__(self, kind: str, estimate: float, se: float, df: int | None = None,
                 components: pl.DataFrame | None = None):
        self.kind = kind
        self.estimate = float(estimate)
        self.se = float(se)
        self.df = df
        self.components = components

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """Overall row first, then components: ``level, estimate, se, ci_low, ci_high``."""
        names = ["overall"]
        est = [self.estimate]
        se = [self.se]
        if self.components is not None:
            names += [str(v) for v in self.components["level"].to_list()]
            est += self.components["estimate"].to_list()
            se += self.components["se"].to_list()
        e, s = np.asarray(est, float), np.asarray(se, float)
        lo, hi = interval(e, s, self.df, level)
        return pl.DataFrame({"level": names, "estimate": e, "se": s, "ci_low": lo, "ci_high": hi})

    def summary(self) -> str:
        """Printable table."""
        lines = [f"Aggregated effect ({self.kind}): {self.estimate:.5f} (se {self.se:.5f})"]
        for r in self.tidy().iter_rows(named=True):
            lines.append(f"  {r['level']:>10}  {r['estimate']:>11.5f}  {r['se']:>10.5f}"
                         f"  [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
        return "\n".join(lines)


class PretrendTest(Result):
    """Joint Wald test that the pre-adoption (lead) effects are all zero.

    ``statistic`` is the F form ``W / q``; the p-value uses F(q, df) when the
    result has finite degrees of freedom, else chi2(q) on ``W``. Indexing by
    name (``test["pvalue"]``; ``"stat"`` is the Wald statistic) is kept for
    code written against the dictionaries earlier versions returned.
    """

    def __init__(self, wald: float, q: int, df: int | None, terms: list[int]):
        self.wald = float(wald)
        self.df1 = int(q)
        self.df2 = df
        self.statistic = self.wald / q if q else float("nan")
        self.terms = terms
        if q == 0:
            self.pvalue = float("nan")
        elif df:
            # scipy.stats' f.sf / chi2.sf (1 below the support); a Wald statistic is >= 0
            self.pvalue = float(special.fdtrc(q, df, max(self.statistic, 0.0)))
        else:
            self.pvalue = float(special.chdtrc(q, max(self.wald, 0.0)))

    @property
    def df(self) -> int:
        """Number of restrictions tested."""
        return self.df1

    def __getitem__(self, key: str) -> Any:
        return {"statistic": self.statistic, "wald": self.wald, "stat": self.wald, "df": self.df1,
                "df2": self.df2, "pvalue": self.pvalue}[key]

    def tidy(self) -> pl.DataFrame:
        """One row: ``statistic, wald, df, df2, pvalue``."""
        return pl.DataFrame({"statistic": [self.statistic], "wald": [self.wald], "df": [self.df1],
                             "df2": [self.df2], "pvalue": [self.pvalue]})

    def summary(self) -> str:
        """Printable line."""
        dist = f"F({self.df1}, {self.df2})" if self.df2 else f"chi2({self.df1})"
        return f"Joint pre-trend test (leads {self.terms}): {dist} = {self.statistic:.4f}, p = {self.pvalue:.4g}"
