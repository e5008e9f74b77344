"""Accessors shared by every result that is a coefficient vector with a
variance matrix (``Feols``, ``FeivResult``, ``HeckmanResult``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from scipy.special import ndtr, ndtri, stdtr, stdtrit

from ..._validate import check_level
from ..results import Result

if TYPE_CHECKING:
    from .design import Design

__all__ = ["CoefTable", "DesignFit", "significance_stars"]


def significance_stars(p: float) -> str:
    """``***`` below 0.01, ``**`` below 0.05, ``*`` below 0.1, else empty."""
    return "***" if p < 0.01 else "**" if p < 0.05 else "*" if p < 0.1 else ""


class CoefTable(Result):
    """The coefficient-table result (``coef()``, ``se()``, ``pvalue()``, ``confint()``, ``tidy()``).

    Mixin: needs ``coefnames``, ``_beta`` (k,), ``_V`` (k x k) and ``_df_t``
    (degrees of freedom of the t reference distribution; None = normal)."""

    coefnames: list[str]
    _beta: np.ndarray
    _V: np.ndarray
    _df_t: int | None

    @property
    def beta(self) -> np.ndarray:
        """Coefficient vector (order of ``coefnames``)."""
        return self._beta

    @property
    def df_t(self) -> int | None:
        """Degrees of freedom of the t distribution used for p-values and CIs (None: normal)."""
        return None if self._df_t is None else int(self._df_t)

    def _named(self, values: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.coefnames, values)}

    def _se(self) -> np.ndarray:
        return np.sqrt(np.diag(self._V))

    def _two_sided(self, t: np.ndarray) -> np.ndarray:
        a = -np.abs(t)
        return 2 * (ndtr(a) if self._df_t is None else stdtr(self._df_t, a))

    def _quantile(self, level: float) -> float:
        p = 0.5 + check_level(level) / 2
        return float(ndtri(p) if self._df_t is None else stdtrit(self._df_t, p))

    def coef(self) -> dict[str, float]:
        """Coefficients by name."""
        return self._named(self._beta)

    def vcov(self) -> np.ndarray:
        """The k x k variance matrix (order of ``coefnames``)."""
        return self._V.copy()

    def se(self) -> dict[str, float]:
        """Standard errors by name."""
        return self._named(self._se())

    def tstat(self) -> dict[str, float]:
        """t statistics by name."""
        return self._named(self._beta / self._se())

    def pvalue(self) -> dict[str, float]:
        """Two-sided p-values by name."""
        return self._named(self._two_sided(self._beta / self._se()))

    def confint(self, level: float = 0.95) -> pl.DataFrame:
        """Confidence intervals: polars frame ``term, ci_low, ci_high``."""
        q = self._quantile(level)
        se = self._se()
        return pl.DataFrame({"term": self.coefnames, "ci_low": self._beta - q * se, "ci_high": self._beta + q * se})

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """One row per coefficient: ``term, estimate, se, tstat, pvalue, ci_low, ci_high``."""
        se = self._se()
        t = self._beta / se
        q = self._quantile(level)
        return pl.DataFrame(
            {
                "term": self.coefnames,
                "estimate": self._beta,
                "se": se,
                "tstat": t,
                "pvalue": self._two_sided(t),
                "ci_low": self._beta - q * se,
                "ci_high": self._beta + q * se,
            }
        )


class DesignFit(CoefTable):
    """Mixin for fits on a :class:`~staggerlab.inference.regression.design.Design`: needs
    ``design``, ``_uw`` (sqrt-weighted residuals) and ``_G`` (clusters)."""

    design: Design
    _uw: np.ndarray
    _G: int | None

    @property
    def coefnames(self) -> list[str]:
        """Names of the estimated coefficients."""
        return list(self.design.regressors)

    @property
    def nobs(self) -> int:
        """Number of observations used."""
        return self.design.nobs

    @property
    def n_clusters(self) -> int | None:
        """Smallest number of clusters (None if not clustered)."""
        return self._G

    def table_lines(self, title: str, *, stars: bool = False) -> list[str]:
        """The printed coefficient table: ``title``, sample and vcov line, one row per term.

        ``stars`` appends significance stars (``*`` p < 0.1, ``**`` p < 0.05,
        ``***`` p < 0.01) to each row.
        """
        d = self.design
        lines = [
            title,
            f"Observations: {self.nobs:,}   Fixed effects: {' + '.join(d.fixef) or 'none'}"
            f"   Vcov: {self.vcov_spec.label}",
            "",
            f"{'term':<16}{'estimate':>12}{'se':>12}{'t':>9}{'p':>9}",
        ]
        for r in self.tidy().iter_rows(named=True):
            row = f"{r['term'][:16]:<16}{r['estimate']:>12.5f}{r['se']:>12.5f}{r['tstat']:>9.2f}{r['pvalue']:>9.4f}"
            lines.append(row + (f" {significance_stars(r['pvalue'])}" if stars else ""))
        return lines

    def resid(self) -> np.ndarray:
        """Residuals ``y - X b - fixed effects`` on the estimation sample."""
        return self._uw / self.design.sw
