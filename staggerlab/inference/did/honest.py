"""Rambachan & Roth (2023) sensitivity analysis for event studies ("HonestDiD").

Given event-study coefficients ``beta = (beta_pre, beta_post)`` (relative to a
reference period normalised to zero) and their covariance, the target is
``theta = l' tau_post`` and the parallel-trends violation ``delta`` is only
restricted to a set ``Delta``:

* smoothness ``Delta^SD(M)``: consecutive changes in the slope of ``delta``
  are at most ``M`` (``M = 0``: exactly linear trends); the optimal fixed-length
  CI (``honest_sd.flci``).
* relative magnitudes ``Delta^RM(Mbar)``: every post-period change in ``delta``
  is at most ``Mbar`` times the largest pre-period change; the ARP conditional-
  least-favourable hybrid test inverted for its endpoints (``honest_rm.rm_ci``).

The breakdown value is Rambachan and Roth's: the largest restriction size at
which the robust confidence interval still excludes zero, solved by bisection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np
import polars as pl
from scipy import stats

from ..._seed import SeedLike
from ..._validate import alpha_of
from ...errors import ArgumentError, ArgumentTypeError, HonestDiDError
from ..results import Result
from .honest_rm import rm_ci
from .honest_sd import flci

__all__ = ["honest", "HonestResult", "HonestDiDError", "flci", "rm_ci"]

# =========================================================================== front end
BREAKDOWN_RTOL = 1e-3  # the breakdown bracket is solved to this relative width
_BREAKDOWN_DOUBLINGS = 30  # the search for a non-significant size stops at 2^30 x its start
_BREAKDOWN_MAX_STEPS = 60


def _significant(ci: tuple[float, float]) -> bool:
    lo, hi = ci
    return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))


@dataclass(eq=False)
class HonestResult(Result):
    """Rambachan-Roth sensitivity analysis of one target ``theta = l' tau_post``.

    Attributes
    ----------
    method : str
        ``"relative_magnitude"`` or ``"smoothness"``.
    param : str
        ``"Mbar"`` or ``"M"``.
    values, ci_low, ci_high : ndarray
        The restriction sizes and the robust CI at each.
    original : (float, float)
        The usual CI for ``theta`` (no violation allowed beyond sampling error).
    estimate : float
        ``l' beta_post``.
    l_vec : ndarray
    level : float
        Confidence level; ``alpha`` is ``1 - level``.
    ci_at : callable
        ``ci_at(size) -> (lower, upper)``: the robust CI at any restriction size, with the
        settings of this analysis (used by ``breakdown``).
    """

    method: str
    param: str
    values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    original: tuple[float, float]
    estimate: float
    l_vec: np.ndarray
    level: float
    ci_at: Callable[[float], tuple[float, float]] | None = field(default=None, repr=False)
    _breakdown: Any = field(default=NotImplemented, init=False, repr=False)

    @property
    def alpha(self) -> float:
        return alpha_of(self.level)

    @property
    def breakdown(self) -> float | None:
        """Rambachan and Roth's breakdown value: the largest ``M`` / ``Mbar`` at which the robust
        CI still excludes 0 (the effect remains significant at ``level``).

        Solved by bisection on the restriction size, starting from the sizes in ``values``
        (doubling past the largest if its CI still excludes 0): the returned size's CI excludes
        0 and a size at most ``BREAKDOWN_RTOL`` (1e-3) larger, relative, has a CI that contains
        it. ``None`` if the CI already contains 0 (or is empty) at size 0; ``inf`` if it still
        excludes 0 at 2^30 times the starting size. Computed on first access, then cached.
        """
        if self._breakdown is NotImplemented:
            self._breakdown = self._solve_breakdown()
        return self._breakdown

    def _solve_breakdown(self) -> float | None:
        if self.ci_at is None:
            raise HonestDiDError("this result carries no ci_at function, so its breakdown value cannot be solved")
        known = {float(v): (float(lo), float(hi)) for v, lo, hi in zip(self.values, self.ci_low, self.ci_high)}

        def sig(size: float) -> bool:
            if size not in known:
                known[size] = self.ci_at(size)
            return _significant(known[size])

        if not sig(0.0):
            return None
        sizes = sorted(known)
        bad = next((v for v in sizes if v > 0 and not sig(v)), None)
        if bad is None:
            bad = max(sizes) if max(sizes) > 0 else 1.0
            for _ in range(_BREAKDOWN_DOUBLINGS):
                if not sig(bad):
                    break
                bad *= 2.0
            else:
                return float("inf")
        good = max(v for v in known if v < bad and sig(v))
        for _ in range(_BREAKDOWN_MAX_STEPS):
            if bad - good <= BREAKDOWN_RTOL * bad:
                break
            mid = 0.5 * (good + bad)
            good, bad = (mid, bad) if sig(mid) else (good, mid)
        return float(good)

    def tidy(self) -> pl.DataFrame:
        """One row per restriction size: ``M`` or ``Mbar``, ``ci_low``, ``ci_high``."""
        return pl.DataFrame({self.param: self.values, "ci_low": self.ci_low, "ci_high": self.ci_high})

    def breakdown_text(self) -> str:
        """One sentence: the breakdown value and what it means."""
        pct = f"{100 * self.level:g}%"
        b = self.breakdown
        if b is None:
            return f"the effect is not significant at {pct} even at {self.param} = 0, so there is no breakdown value"
        if np.isinf(b):
            return f"the effect remains significant at {pct} at every {self.param} tried (breakdown value above them)"
        return (f"breakdown {self.param} = {b:.4g}: the largest {self.param} at which the effect remains "
                f"significant at {pct}")

    def summary(self) -> str:
        """Printable table with the original CI and the breakdown value."""
        lo, hi = self.original
        return (
            f"Rambachan-Roth sensitivity ({self.method}), theta = l'tau_post with l = {self.l_vec.tolist()}\n"
            f"estimate {self.estimate:.6g}; original {100 * self.level:.0f}% CI [{lo:.6g}, {hi:.6g}]\n"
            f"{self.breakdown_text()}\n{self.tidy()}"
        )

    def plot(self, path: str | None = None, *, ax: Any = None):
        """Sensitivity plot: robust CI against M / Mbar, the original CI at the left."""
        from ...plots.honest import plot_sensitivity

        return plot_sensitivity(self, path=path, ax=ax)


def _default_M(beta_pre: np.ndarray, sigma_pre: np.ndarray, alpha: float) -> np.ndarray:
    """10 values from 0 to an upper bound on the pre-period second differences."""
    if beta_pre.size < 2:
        return np.linspace(0, np.sqrt(sigma_pre[0, 0]), 10)
    b = np.append(beta_pre, 0.0)  # the reference period is 0
    D = np.zeros((b.size - 2, b.size))
    for i in range(b.size - 2):
        D[i, i: i + 3] = (1.0, -2.0, 1.0)
    S = np.zeros((b.size, b.size))
    S[:-1, :-1] = sigma_pre
    d = D @ b
    se = np.sqrt(np.diag(D @ S @ D.T))
    ub = float(np.max(np.abs(d) + stats.norm.ppf(1 - alpha) * se))
    return np.linspace(0, ub, 10)


def _event_study_parts(result: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
    for name in ("rel_time", "coef", "vcov", "ref"):
        if not hasattr(result, name):
            raise HonestDiDError(
                f"honest() needs an event-study result with rel_time, coef, vcov and ref; missing {name!r}"
            )
    if getattr(result, "method", None) == "cs" and getattr(result, "base_period", "universal") != "universal":
        raise HonestDiDError(
            "Callaway-Sant'Anna with base_period='varying' has no common reference period; "
            "re-estimate with base_period='universal' for honest()"
        )
    refs = tuple(getattr(result, "refs", ()))
    if len(refs) > 1:
        raise HonestDiDError(
            f"the event study normalises {len(refs)} periods ({', '.join(map(str, refs))}); HonestDiD's "
            "restrictions are stated relative to one reference period: re-estimate with a single ref"
        )
    rel = np.asarray(result.rel_time)
    coef = np.asarray(result.coef() if callable(result.coef) else result.coef, dtype=float)
    vcov = np.asarray(result.vcov() if callable(result.vcov) else result.vcov, dtype=float)
    ref = int(result.ref)
    keep = rel != ref
    rel, coef, vcov = rel[keep], coef[keep], vcov[np.ix_(keep, keep)]
    order = np.argsort(rel)
    rel, coef, vcov = rel[order], coef[order], vcov[np.ix_(order, order)]
    pre = rel[rel < ref]
    post = rel[rel > ref]
    if pre.size == 0 or post.size == 0:
        raise HonestDiDError("the event study needs coefficients before and after the reference period")
    full = np.concatenate((pre, [ref], post))
    if np.any(np.diff(full) != 1):
        raise HonestDiDError(
            f"event times must be consecutive around the reference period {ref}; got {rel.tolist()}"
        )
    return coef, vcov, int(pre.size), int(post.size)


#: eigenvalues of the event study's covariance below this fraction of the largest count as zero
SINGULAR_RTOL = 1e-10


def check_covariance(sigma: np.ndarray, df: int | None = None) -> None:
    """Raise ``HonestDiDError`` for a singular event-study covariance.

    With G clusters a cluster-robust covariance has rank at most G - 1; with
    fewer clusters than coefficients some combination of the coefficients has
    an estimated variance of zero, which the robust sets would treat as known
    exactly (the smoothness FLCI's root finder then fails, the relative-magnitude
    sets come out too narrow)."""
    lam = np.linalg.eigvalsh((sigma + sigma.T) / 2)
    rank = int((lam > SINGULAR_RTOL * max(float(lam.max()), 0.0)).sum())
    if rank < sigma.shape[0]:
        clusters = f" (its reference distribution has {df} degrees of freedom: {df + 1} clusters?)" if df else ""
        raise HonestDiDError(
            f"the event study's covariance of its {sigma.shape[0]} coefficients has rank {rank}{clusters}: a "
            "cluster-robust covariance from G clusters has rank at most G - 1, so some combination of the "
            "coefficients has an estimated variance of zero and the robust confidence sets would be too narrow; "
            "use a narrower window (fewer coefficients) or more clusters")


def honest(
    result: Any,
    *,
    method: Literal["relative_magnitude", "smoothness"] = "relative_magnitude",
    Mbar: Sequence[float] | float | None = None,
    M: Sequence[float] | float | None = None,
    e: int | Literal["average"] = 0,
    l_vec: Sequence[float] | None = None,
    level: float = 0.95,
    grid_points: int = 1000,
    grid: tuple[float, float] | None = None,
    lf_sims: int = 10000,
    seed: SeedLike = 0,
) -> HonestResult:
    """Rambachan-Roth robust confidence sets for a post-period effect.

    Parameters
    ----------
    result : event-study result
        Anything with ``rel_time``, ``coef``, ``vcov`` and ``ref`` (the
        reference event time, dropped if present). Event times must be
        consecutive; those below ``ref`` are pre-periods, those above post.
    method : {"relative_magnitude", "smoothness"}
        ``Delta^RM(Mbar)`` with the conditional-LF hybrid test (HonestDiD's
        "C-LF"), or ``Delta^SD(M)`` with the optimal FLCI.
    Mbar, M : float or sequence
        Restriction sizes (defaults: 10 values in [0, 2] for ``Mbar``; 10
        values from 0 to a one-sided upper bound on the pre-period second
        differences for ``M``).
    e : int or "average"
        Target: the ``e``-th post period (``e=0``: the first after ``ref``), or
        the average over all post periods. ``l_vec`` overrides it.
    level : float
        Confidence level of the robust and the original intervals.
    grid_points : int
        RM only: points of each scan of theta; the interval's ends are then solved
        between two scanned points to 1e-6 standard errors of ``l' beta_post``.
    grid : (float, float), optional
        RM only, for experts: scan exactly this range of theta instead of the automatic
        one (centred on the estimate and doubled until both ends reject). An interval
        touching an end of the range warns with ``HonestGridWarning``.
    lf_sims, seed
        RM only: draws for the least-favourable critical value and their seed.

    Returns
    -------
    HonestResult
    """
    if method not in ("relative_magnitude", "smoothness"):
        raise ArgumentError(f"method must be 'relative_magnitude' or 'smoothness', got {method!r}")
    alpha = alpha_of(level)
    beta, sigma, n_pre, n_post = _event_study_parts(result)
    check_covariance(sigma, getattr(result, "df", None))
    if l_vec is not None:
        lv = np.asarray(l_vec, dtype=float)
        if lv.size != n_post:
            raise HonestDiDError(f"l_vec has {lv.size} entries; the event study has {n_post} post periods")
    elif e == "average":
        lv = np.full(n_post, 1.0 / n_post)
    else:
        if not (0 <= int(e) < n_post):
            raise HonestDiDError(f"e={e} is outside the {n_post} post periods")
        lv = np.zeros(n_post)
        lv[int(e)] = 1.0
    theta = float(lv @ beta[n_pre:])
    sd = float(np.sqrt(lv @ sigma[n_pre:, n_pre:] @ lv))
    z = stats.norm.ppf(1 - alpha / 2)
    original = (theta - z * sd, theta + z * sd)
    if method == "smoothness":
        if Mbar is not None:
            raise ArgumentTypeError("method='smoothness' takes M=, not Mbar=")
        if grid is not None:
            raise ArgumentTypeError("grid= is for method='relative_magnitude' (the smoothness FLCI has no grid)")
        vals = _default_M(beta[:n_pre], sigma[:n_pre, :n_pre], alpha) if M is None else np.atleast_1d(np.asarray(M, float))
        param = "M"
    else:
        if M is not None:
            raise ArgumentTypeError("method='relative_magnitude' takes Mbar=, not M=")
        vals = np.linspace(0, 2, 10) if Mbar is None else np.atleast_1d(np.asarray(Mbar, float))
        param = "Mbar"
    if np.any(vals < 0):
        raise ArgumentError(f"{param} must be non-negative")
    if method == "smoothness":
        def ci_at(m: float) -> tuple[float, float]:
            return flci(beta, sigma, n_pre, lv, float(m), level)
    else:
        def ci_at(m: float) -> tuple[float, float]:
            return rm_ci(beta, sigma, n_pre, lv, float(m), level, grid_points=grid_points, grid=grid,
                         lf_sims=lf_sims, seed=seed)
    cis = [ci_at(float(v)) for v in vals]
    lo = np.array([c[0] for c in cis])
    hi = np.array([c[1] for c in cis])
    return HonestResult(method, param, vals, lo, hi, original, theta, lv, level, ci_at)
