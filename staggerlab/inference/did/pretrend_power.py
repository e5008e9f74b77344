"""Power of an event study's pre-trend test against a linear violation of
parallel trends, and what passing the test does to the post-period estimates
(Roth 2022, "Pretest with caution"; the ``pretrends`` R package).

The event-study estimates are taken as ``b ~ N(tau + delta, Sigma)`` with
``Sigma`` the event study's covariance and ``delta_t = slope * (t - ref)`` a
linear trend through the reference period (zero there, as the estimates are
normalised to it). The pre-test is, as in ``pretrends``, "no lead is
individually significant": it passes when ``|b_t / se_t| <= z`` for every lead,
``z = Phi^-1(1 - alpha / 2)`` (normal, as ``pretrends``). ``test="wald"``
uses the joint Wald test instead (passes when ``b_pre' Sigma_pre^-1 b_pre <=
chi2_q(1 - alpha)``), the one :meth:`EventStudyResult.pretrend_test` reports
(here with its chi-square form).

Power is exact: a rectangle probability of a multivariate normal (Genz's
algorithm, scipy, seeded; 1-D closed form) or a noncentral chi-square tail
(Wald). The bias and coverage of the post-period estimates conditional on
passing come from a seeded simulation of ``b`` (``draws`` normal vectors).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import optimize, stats

from ...errors import ArgumentError, EventStudyError
from ..results import Result

__all__ = ["pretrend_power", "PretrendPower"]

#: accuracy of the multivariate normal rectangle probabilities (scipy's abseps/releps)
_MVN_EPS = 1e-5


class PretrendPower(Result):
    """Power of an event study's pre-trend test against linear trends.

    Attributes
    ----------
    alpha : float
        Size of the pre-test.
    test : {"individual", "wald"}
        The pre-test (see the module notes).
    rel_time : ndarray
        The event study's periods (reference excluded).
    ref : int
        Its reference period.
    """

    def __init__(self, es: Any, alpha: float, test: str):
        self.es = es
        self.alpha = float(alpha)
        self.test = test
        self.rel_time = np.asarray(es.rel_time, dtype=np.int64)
        self.ref = int(es.ref)
        self.pre = np.flatnonzero(self.rel_time < 0)
        self.post = np.flatnonzero(self.rel_time >= 0)
        V = np.asarray(es.vcov, dtype=np.float64)
        self.V = (V + V.T) / 2
        self.se = np.sqrt(np.diag(self.V))
        Vp = self.V[np.ix_(self.pre, self.pre)]
        self._Vp = Vp
        self._sp = np.sqrt(np.diag(Vp))
        self._corr = Vp / np.outer(self._sp, self._sp)
        self._z = float(stats.norm.ppf(1.0 - self.alpha / 2.0))
        self._q = int(np.linalg.matrix_rank(Vp))
        self._chi = float(stats.chi2.ppf(1.0 - self.alpha, self._q))
        self._Vp_pinv = np.linalg.pinv(Vp)
        self._slopes: dict[float, float] = {}

    def trend(self, slope: float) -> np.ndarray:
        """``delta_t = slope * (t - ref)`` at every estimated period."""
        return float(slope) * (self.rel_time - self.ref).astype(float)

    def power(self, slope: float) -> float:
        """Probability that the pre-test rejects when the trend has this slope."""
        d = self.trend(slope)[self.pre] / self._sp
        if self.test == "wald":
            nc = float(d @ (self._sp[:, None] * self._Vp_pinv * self._sp[None, :]) @ d)
            return float(stats.ncx2.sf(self._chi, self._q, nc)) if nc > 0 else self.alpha
        z = self._z
        if self.pre.size == 1:
            return float(1.0 - (stats.norm.cdf(z - d[0]) - stats.norm.cdf(-z - d[0])))
        inside = stats.multivariate_normal.cdf(np.full(d.size, z), mean=d, cov=self._corr, allow_singular=True,
                                               lower_limit=np.full(d.size, -z), abseps=_MVN_EPS, releps=_MVN_EPS,
                                               maxpts=200_000 * d.size, rng=np.random.default_rng(0))
        return float(1.0 - inside)

    def slope(self, power: float) -> float:
        """The (positive) slope the pre-test detects with probability ``power``.

        The power is symmetric in the slope's sign and grows with its size; the
        slope is the root of ``power(slope) = power``.
        """
        if not (isinstance(power, (int, float)) and self.alpha < power < 1.0):
            raise ArgumentError(f"power must lie in (alpha, 1) = ({self.alpha}, 1), got {power!r}")
        power = float(power)
        if power not in self._slopes:
            scale = float(np.max(self._sp / np.maximum(np.abs(self.rel_time[self.pre] - self.ref), 1)))
            hi = scale
            while self.power(hi) < power:
                hi *= 2.0
            f = lambda s: self.power(s) - power  # noqa: E731 - a scalar function for brentq
            self._slopes[power] = float(optimize.brentq(f, 0.0, hi, xtol=1e-8 * scale, rtol=1e-8))
        return self._slopes[power]

    def passes(self, b: np.ndarray) -> np.ndarray:
        """Whether each row of event-study estimates ``b`` (draws x periods) passes the pre-test."""
        bp = b[:, self.pre]
        if self.test == "wald":
            return np.einsum("bi,ij,bj->b", bp, self._Vp_pinv, bp) <= self._chi
        return np.all(np.abs(bp / self._sp) <= self._z, axis=1)

    def conditional(self, slope: float, *, level: float = 0.95, draws: int = 200_000,
                    seed: int = 0) -> pl.DataFrame:
        """Bias and coverage of each post-period estimate given a passed pre-test.

        Parameters
        ----------
        slope : float
            The trend's slope (0: parallel trends).
        level : float
            Level of the intervals ``b_t +- z se_t`` whose coverage is reported
            (normal, as ``pretrends``).
        draws : int
            Simulated event studies.
        seed : int
            Seed of the simulation.

        Returns
        -------
        polars.DataFrame
            ``rel_time, trend, bias, coverage, coverage_unconditional,
            pass_probability, passing_draws``: ``bias`` is ``E[b_t - tau_t | pass]`` (the
            trend plus the selection effect; without the pre-test it is the
            trend), ``coverage`` the probability that the interval holds
            ``tau_t`` given a pass, ``coverage_unconditional`` without the
            pre-test (exact, normal). ``passing_draws`` is the number of
            simulated event studies the conditional columns average: their
            Monte Carlo error is about ``se / sqrt(passing_draws)`` (raise
            ``draws`` when it is small).
        """
        if not 0.0 < level < 1.0:
            raise ArgumentError(f"level must be in (0, 1), got {level!r}")
        delta = self.trend(slope)
        L = np.linalg.cholesky(self.V + 1e-14 * np.trace(self.V) * np.eye(self.V.shape[0]) / self.V.shape[0])
        rng = np.random.default_rng(seed)
        e = rng.standard_normal((int(draws), delta.size)) @ L.T
        ok = self.passes(delta + e)
        n_ok = int(ok.sum())
        if n_ok == 0:
            raise EventStudyError(f"no simulated event study passes the pre-test at slope {slope}; "
                                  "the conditional bias is not defined")
        zc = float(stats.norm.ppf(0.5 + level / 2.0))
        post = self.post
        err = delta[post] + e[ok][:, post]  # b_t - tau_t given a pass
        cover = np.mean(np.abs(err) <= zc * self.se[post], axis=0)
        sd = self.se[post]
        cover_u = stats.norm.cdf(zc - delta[post] / sd) - stats.norm.cdf(-zc - delta[post] / sd)
        return pl.DataFrame({"rel_time": self.rel_time[post], "trend": delta[post], "bias": err.mean(axis=0),
                             "coverage": cover,
                             "coverage_unconditional": cover_u,
                             "pass_probability": np.full(post.size, n_ok / int(draws)),
                             "passing_draws": np.full(post.size, n_ok)})

    def tidy(self) -> pl.DataFrame:
        """The slopes detected with 50% and 80% power: ``power, slope``."""
        return pl.DataFrame({"power": [0.5, 0.8], "slope": [self.slope(0.5), self.slope(0.8)]})

    def summary(self) -> str:
        """Printable lines."""
        what = "no lead individually significant" if self.test == "individual" else "joint Wald test of the leads"
        s50, s80 = self.slope(0.5), self.slope(0.8)
        return "\n".join([
            f"Pre-trend test power (Roth 2022): {what}, size {self.alpha:g}, leads {self.rel_time[self.pre].tolist()}",
            f"  linear trend detected with 50% power: slope {s50:.5g} per period",
            f"  linear trend detected with 80% power: slope {s80:.5g} per period",
            f"  (a trend of slope {s80:.3g} would bias the period-0 estimate by {s80 * (0 - self.ref):.3g} and "
            "pass the pre-test 20% of the time)",
        ])

    def plot(self, path: str | None = None, *, power: float = 0.8, ax: Any = None, title: str | None = None) -> Any:
        """The event study with the trend detected with ``power`` overlaid (see
        :func:`staggerlab.plots.event_study.plot_pretrend_power`)."""
        from ...plots.event_study import plot_pretrend_power

        return plot_pretrend_power(self, path=path, power=power, ax=ax, title=title)


def pretrend_power(es: Any, level: float = 0.05, *, test: Literal["individual", "wald"] = "individual"
                   ) -> PretrendPower:
    """Power of the event study's pre-trend test against linear violations (Roth 2022).

    Parameters
    ----------
    es : EventStudyResult
        Any event study with leads (its estimates' covariance is used).
    level : float
        Size of the pre-test (``pretrends``' ``alpha``): a lead is significant
        when ``|t| > Phi^-1(1 - level / 2)`` (``test="individual"``), or the
        Wald test rejects at ``level`` (``test="wald"``).
    test : {"individual", "wald"}
        ``"individual"`` (as ``pretrends``): the pre-test passes if no lead
        is individually significant; ``"wald"``: the joint Wald test.

    Returns
    -------
    PretrendPower
        ``.power(slope)``, ``.slope(power)``, ``.conditional(slope)``, ``.plot()``.

    Raises
    ------
    EventStudyError
        No lead or no post period is estimated.
    ArgumentError
        ``level`` outside (0, 1) or an unknown ``test``.
    """
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise ArgumentError(f"level (the pre-test's size) must be in (0, 1), got {level!r}")
    if test not in ("individual", "wald"):
        raise ArgumentError(f"test must be 'individual' or 'wald', got {test!r}")
    rel = np.asarray(es.rel_time)
    if not (rel < 0).any():
        raise EventStudyError("the event study estimates no lead (rel_time < 0): there is no pre-trend test")
    if not (rel >= 0).any():
        raise EventStudyError("the event study estimates no post period (rel_time >= 0)")
    return PretrendPower(es, level, test)
