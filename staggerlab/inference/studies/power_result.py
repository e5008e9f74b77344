"""Result of a design-based power study (:class:`PowerResult`) and its minimum
detectable effect (:class:`Mde`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from scipy import stats

from ...errors import ArgumentError, PowerError
from ..results import Result

__all__ = ["PowerResult", "Mde", "curve_rows"]


class Mde(NamedTuple):
    """Minimum detectable effect at a target power.

    Attributes
    ----------
    estimate : float
        The smallest effect size at which the power curve (linearly interpolated
        between grid points) reaches the target.
    low, high : float
        Where the upper and lower edges of the curve's pointwise Monte Carlo band
        (power +- z * power_mcse, z the normal quantile of ``level``) reach the
        target. ``high`` is ``inf`` when the lower edge does not reach it on the
        grid (flagged by ``censored``).
    level : float
        Level of the band.
    censored : bool
        True when ``high`` lies beyond the largest effect of the grid.
    """

    estimate: float
    low: float
    high: float
    level: float
    censored: bool


def curve_rows(name: str, sizes: np.ndarray, est: np.ndarray, reject: np.ndarray, covers: np.ndarray | None,
               truth: np.ndarray, method: str) -> dict[str, list[Any]]:
    """The tidy rows of one estimator from its ``draws x sizes`` arrays.

    Draws whose estimate is not finite (a re-assigned treatment collinear with
    the fixed effects, or an estimator that failed) are left out; their number
    is the ``draws - valid_draws`` of the row.
    """
    valid = np.isfinite(est)
    n = valid.sum(axis=0)
    out: dict[str, list[Any]] = {k: [] for k in ("estimator", "effect", "power", "power_mcse", "bias", "coverage",
                                                 "mean_truth", "valid_draws", "method")}
    for k, d in enumerate(sizes):
        v = valid[:, k]
        nk = int(n[k])
        p = float(reject[v, k].mean()) if nk else float("nan")
        out["estimator"].append(name)
        out["effect"].append(float(d))
        out["power"].append(p)
        out["power_mcse"].append(float(np.sqrt(p * (1 - p) / nk)) if nk else float("nan"))
        out["bias"].append(float((est[v, k] - truth[v, k]).mean()) if nk else float("nan"))
        out["coverage"].append(None if covers is None or not nk else float(covers[v, k].mean()))
        out["mean_truth"].append(float(truth[v, k].mean()) if nk else float("nan"))
        out["valid_draws"].append(nk)
        out["method"].append(method)
    return out


@dataclass(eq=False)
class PowerResult(Result):
    """Result of :func:`staggerlab.power`.

    Attributes
    ----------
    curves : polars.DataFrame
        One row per estimator and effect size (see :meth:`tidy`).
    level : float
        Tests are two-sided at ``1 - level``; intervals have coverage ``level``.
    draws : int
        Placebo assignments per effect size.
    scheme : str
        The assignment scheme.
    path : str
        Name of the effect path (``homogeneous``, ``ramp``, ...).
    outcome : str
        The outcome used as the untreated potential outcome.
    hypotheses : dict
        The null hypothesis each estimator tests.
    sizes : ndarray
        The effect sizes, in the column order of the per-draw arrays.
    estimates : dict of ndarray
        Per estimator, ``draws x sizes`` estimates (NaN: an invalid draw).
    tstats : dict of ndarray
        Per estimator with a t test, ``draws x sizes`` t statistics.
    units : ndarray
        Unit ids in the column order of :attr:`assignments`.
    """

    curves: pl.DataFrame
    level: float
    draws: int
    scheme: str
    path: str
    outcome: str
    hypotheses: dict[str, str] = field(default_factory=dict)
    sizes: np.ndarray = field(default_factory=lambda: np.empty(0))
    estimates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    tstats: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    units: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    _placebo: Any = field(default=None, repr=False)

    @property
    def assignments(self) -> np.ndarray:
        """``draws x units`` re-assigned adoption periods (0 = untreated), regenerated from the seed."""
        if self._placebo is None:
            raise PowerError("this result holds no assignments")
        return self._placebo.assignments

    @property
    def estimators(self) -> list[str]:
        """Estimator names, in the order they were run."""
        return list(dict.fromkeys(self.curves["estimator"].to_list()))

    def tidy(self) -> pl.DataFrame:
        """``estimator, effect, power, power_mcse, bias, coverage`` and then
        ``mean_truth`` (the average true effect on the re-assigned treated cells),
        ``valid_draws`` and ``method`` (how the curve was computed).

        ``coverage`` is null for estimators without a confidence interval (the
        placebo p-value tests the sharp null only).
        """
        return self.curves

    def size(self, estimator: str) -> tuple[float, float]:
        """Rejection rate at zero effect and its Monte Carlo s.e."""
        r = self._rows(estimator).filter(pl.col("effect") == 0.0)
        if r.height == 0:
            raise PowerError("the effect grid has no zero effect; the size is not available")
        return float(r["power"][0]), float(r["power_mcse"][0])

    def _rows(self, estimator: str) -> pl.DataFrame:
        if estimator not in self.estimators:
            raise ArgumentError(f"unknown estimator {estimator!r}; this study ran {self.estimators}")
        return self.curves.filter(pl.col("estimator") == estimator).sort("effect")

    def mde(self, estimator: str, power: float = 0.8, *, level: float = 0.95) -> Mde:
        """Minimum detectable effect of ``estimator`` at ``power`` (positive effects).

        The power curve over the non-negative effect sizes is interpolated
        linearly; the MDE is the first effect at which it reaches ``power``. Its
        interval comes from the pointwise Monte Carlo band of the curve
        (``power -+ z * power_mcse``, ``z`` the normal quantile of ``level``):
        ``low`` is where the upper edge reaches ``power``, ``high`` where the
        lower edge does (``inf``, and ``censored``, if it does not on the grid).

        Raises
        ------
        PowerError
            If the curve does not reach ``power`` within the effect grid (no
            extrapolation); rerun with larger ``sizes``.
        """
        if not 0.0 < power < 1.0:
            raise ArgumentError(f"power must be in (0, 1), got {power!r}")
        r = self._rows(estimator).filter((pl.col("effect") >= 0) & pl.col("power").is_finite())
        x = r["effect"].to_numpy()
        p = r["power"].to_numpy()
        z = float(stats.norm.ppf(0.5 + level / 2))
        se = r["power_mcse"].to_numpy()
        est = _crossing(x, p, power)
        if est is None:
            top = float(p.max()) if p.size else float("nan")
            raise PowerError(f"{estimator}: power reaches at most {top:.3f} on the effect grid (largest effect "
                             f"{x.max() if x.size else float('nan'):.4g}), below the target {power}; "
                             "rerun with larger sizes=")
        low = _crossing(x, np.minimum(p + z * se, 1.0), power)
        high = _crossing(x, p - z * se, power)
        return Mde(est, float(x[0]) if low is None else low, np.inf if high is None else high, level, high is None)

    def summary(self) -> str:
        """Size at zero effect, MDE at 80% power and the curves."""
        lines = [f"Design-based power: outcome {self.outcome!r}, {self.draws:,} draws (scheme {self.scheme!r}), "
                 f"effect path {self.path!r}, two-sided tests at {1 - self.level:.3g}"]
        for name in self.estimators:
            try:
                s, se = self.size(name)
                size = f"size {s:.3f} (MC s.e. {se:.3f})"
            except PowerError:
                size = "size n/a"
            try:
                m = self.mde(name)
                hi = "beyond the grid" if m.censored else f"{m.high:.4g}"
                mde = f"MDE(80%) {m.estimate:.4g} [{m.low:.4g}, {hi}]"
            except PowerError:
                mde = "MDE(80%) not reached on the grid"
            lines.append(f"  {name:<16} {size}; {mde}")
            lines.append(f"  {'':<16} H0: {self.hypotheses.get(name, 'effect = 0')}")
        lines.append("")
        lines.append(f"{'estimator':<16}{'effect':>10}{'power':>8}{'mcse':>7}{'bias':>11}{'coverage':>10}")
        for row in self.curves.iter_rows(named=True):
            cov = "" if row["coverage"] is None else f"{row['coverage']:.3f}"
            lines.append(f"{row['estimator']:<16}{row['effect']:>10.4g}{row['power']:>8.3f}{row['power_mcse']:>7.3f}"
                         f"{row['bias']:>11.4g}{cov:>10}")
        return "\n".join(lines)

    def plot(self, path: str | None = None, *, target: float = 0.8, ax: Any = None, title: str | None = None) -> Any:
        """Power curves with their Monte Carlo bands, the nominal size and the target power."""
        from ...plots.power import plot_power

        return plot_power(self.curves, level=self.level, target=target, ax=ax, title=title, path=path)


def _crossing(x: np.ndarray, p: np.ndarray, target: float) -> float | None:
    """First point where the piecewise-linear curve ``(x, p)`` reaches ``target`` (None if never)."""
    hit = np.flatnonzero(p >= target)
    if hit.size == 0:
        return None
    j = int(hit[0])
    if j == 0:
        return float(x[0])
    x0, x1, p0, p1 = x[j - 1], x[j], p[j - 1], p[j]
    return float(x0 + (target - p0) * (x1 - x0) / (p1 - p0))
