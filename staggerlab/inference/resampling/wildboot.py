"""Wild cluster bootstrap (restricted WCR and unrestricted WCU) of one
coefficient of a fitted TWFE model, with confidence intervals by test inversion.

The entry point :func:`wildboot`, its result and tuning, and the p-values and
test-inversion confidence interval computed from the bootstrap draws. The
pieces live in sibling modules: the weights in ``wildboot_weights``, the
bootstrap design (fixed effects not nested in the bootstrap clusters) in
``wildboot_design``, and the fast algebra (notation, per-block products) in
``wildboot_algebra``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np
import polars as pl
from scipy import optimize

from ..._parallel import SERIAL_BLAS, run_blocks
from ..._seed import SeedLike, resolve_entropy
from ..._validate import check_alternative, check_draws, check_level
from ...errors import UnboundedIntervalWarning, WildBootError
from ...kernels._jit import run_chunks
from ..distributed.feols import PartitionedFeols
from ..regression.compat import as_feols
from ..regression.feols import Feols
from ..results import Result
from .wildboot_algebra import Runner, algebra, at
from .wildboot_design import MAX_DUMMY_COLUMNS, boot_clusters, boot_design
from .wildboot_weights import (
    TWO_POINT,
    WEIGHT_TYPES,
    WeightType,
    draw_weights,
    enumeration_probabilities,
    enumeration_weights,
)

__all__ = ["wildboot", "WildBootResult", "WildBootTuning", "WildBootError", "draw_weights", "enumeration_weights",
           "MAX_DUMMY_COLUMNS"]

Alternative = Literal["two-sided", "equal-tailed", "greater", "less"]
ALTERNATIVES = ("two-sided", "equal-tailed", "greater", "less")

#: relative tolerance of the test-inversion root finder (in units of the se).
CI_XTOL = 1e-9
#: bootstrap t's this close (relative) to the observed t count as ties.
TIE_RTOL = 1e-10


def _block_size(n_clusters: int) -> int:
    """Draws per block: a function of G only (never of n_jobs), ~16 MB per block."""
    return int(np.clip(2**21 // max(n_clusters, 1), 64, 4096))


@dataclass(frozen=True)
class WildBootTuning:
    """Memory bounds of the wild bootstrap (every setting gives the same statistics).

    Parameters
    ----------
    chunk_rows : int
        Rows per chunk of the bootstrap design (its loose-FE dummy block is
        built chunk by chunk, never for all rows at once).
    chunk_weights : int
        Weights (draws x clusters) multiplied at once within a block of draws.
    """

    chunk_rows: int = 1 << 17
    chunk_weights: int = 1 << 20


def _run_block(runner: "Runner", block: tuple[int, int, int]) -> Any:
    """One block of draws (module-level so the runner travels as data, scattered once)."""
    return runner(block)


def _tstar(pieces: tuple[np.ndarray, ...], adj: float, delta: float) -> np.ndarray:
    n0, n1, a, b, c = pieces
    den = adj * (a + 2.0 * delta * b + delta * delta * c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (n0 + delta * n1) / np.sqrt(np.where(den > 0, den, np.nan))


def _pvalue(t: float, tstar: np.ndarray, alternative: str, prob: np.ndarray | None = None) -> float:
    """Share (or, with ``prob``, probability) of bootstrap t's at least as extreme as ``t``.

    Ties (within ``TIE_RTOL``) count as extreme: with the null imposed the
    draws whose weights are all equal reproduce ``+-t`` exactly (set exactly
    by :func:`_exact_ties`), and counting them is the conservative choice.
    ``prob`` weights each draw (full enumeration of Mammen weights).
    """
    ok = np.isfinite(tstar)
    ts = tstar[ok]
    w = None if prob is None else prob[ok] / prob[ok].sum()

    def share(mask: np.ndarray) -> float:
        return float(np.mean(mask)) if w is None else float(w @ mask)

    tol = TIE_RTOL * max(abs(t), 1.0)
    if alternative == "two-sided":
        return share(np.abs(ts) >= abs(t) - tol)
    up = share(ts >= t - tol)
    down = share(ts <= t + tol)
    if alternative == "equal-tailed":
        return min(1.0, 2.0 * min(up, down))
    return up if alternative == "greater" else down


def _exact_ties(tstar: np.ndarray, t: float, csign: np.ndarray) -> np.ndarray:
    """Under WCR a draw with all weights equal to ``c`` rescales the restricted
    residuals by ``c``, so its bootstrap t is exactly ``sign(c) t`` at every
    null value; the algebra gets it only up to rounding that grows far from
    the estimate, so it is set exactly."""
    tie = csign != 0
    if not tie.any():
        return tstar
    out = tstar.copy()
    out[tie] = csign[tie] * t
    return out


def _limit_pvalue(csign: np.ndarray, side: int, alternative: str, prob: np.ndarray | None) -> float:
    """The WCR p-value as the null moves to ``side`` infinity: the observed t
    grows without bound, the bootstrap t's of draws with unequal weights stay
    bounded, and those with equal weights follow ``sign(c) t``."""
    t = -float(side)  # the observed t's sign there (t = (beta - h0) / se); its scale is irrelevant
    return _pvalue(t, np.where(csign != 0, csign * t, 0.0), alternative, prob)


def _invert(pfun: Callable[[float], float], beta: float, se: float, alpha: float, side: int,
            p_limit: float = 0.0) -> float:
    """The null value where the p-value crosses ``alpha`` on one side of ``beta``
    (``side * inf`` when the p-value stays at or above ``alpha`` out to infinity)."""
    inside = lambda h: 1.0 if pfun(h) >= alpha else -1.0  # noqa: E731 - a sign is all brentq needs
    if inside(beta) < 0:
        return math.nan
    if p_limit >= alpha:
        return side * math.inf
    m_in, m = 0.0, 0.5
    while inside(beta + side * m * se) > 0:
        m_in, m = m, m * 1.5
        if m > 1e9:
            return side * math.inf
    lo, hi = sorted((beta + side * m_in * se, beta + side * m * se))
    return float(optimize.brentq(inside, lo, hi, xtol=CI_XTOL * se, rtol=4 * np.finfo(float).eps))


# ------------------------------------------------------------------- result
@dataclass(eq=False)
class WildBootResult(Result):
    """Result of :func:`wildboot`.

    Attributes
    ----------
    param : str
        The tested coefficient.
    estimate, se : float
        Its estimate and cluster-robust (CRV1) standard error.
    h0 : float
        The null value tested.
    tstat : float
        ``(estimate - h0) / se`` (equals the fit's t statistic when ``h0 = 0``
        and the variance is the fit's).
    pvalue : float
        Bootstrap p-value for ``alternative``.
    confint : tuple of float or None
        Confidence interval by test inversion (``None`` if not asked for); an
        end that cannot be bounded is ``-inf`` / ``inf`` (see ``unbounded``).
    statistics : ndarray
        The bootstrap t statistics (at ``h0``), one per draw.
    draws : int
        Number of bootstrap draws used (``2^G`` under full enumeration).
    full_enumeration : bool
        Whether all ``2^G`` two-point weight vectors (Rademacher or Mammen)
        were used (deterministic; Mammen draws weighted by their probabilities).
    unbounded : bool
        Whether the confidence set is unbounded on a side where a bound was
        asked for (too few distinct draws for the level; use Webb weights).
    notes : list of str
        What the user should know about how the result was computed.
    """

    param: str
    estimate: float
    se: float
    h0: float
    tstat: float
    pvalue: float
    confint: tuple[float, float] | None
    level: float
    statistics: np.ndarray = field(repr=False)
    draws: int
    weights: str
    impose_null: bool
    alternative: str
    full_enumeration: bool
    n_clusters: int
    n_bootclusters: int
    cluster: tuple[str, ...]
    bootcluster: str
    notes: list[str] = field(default_factory=list)
    unbounded: bool = False
    _pfun: Callable[[float], float] | None = field(default=None, repr=False)

    @property
    def bootstrap_type(self) -> str:
        """``"WCR"`` (null imposed) or ``"WCU"``."""
        return "WCR" if self.impose_null else "WCU"

    @property
    def note(self) -> str:
        """The notes as one string."""
        return "; ".join(self.notes)

    def pvalue_at(self, h0: float) -> float:
        """Bootstrap p-value of ``H0: param = h0`` reusing the same weights.

        Available when the result was computed with ``confint=True`` (or for
        WCU, whose bootstrap t statistics do not depend on the null).
        """
        if self._pfun is None:
            raise WildBootError("pvalue_at needs the per-draw pieces; rerun wildboot with confint=True")
        return self._pfun(float(h0))

    def tidy(self) -> pl.DataFrame:
        """One row: ``term, estimate, se, h0, tstat, pvalue, ci_low, ci_high, draws, bootstrap, weights``."""
        lo, hi = self.confint if self.confint is not None else (math.nan, math.nan)
        return pl.DataFrame(
            {
                "term": [self.param],
                "estimate": [self.estimate],
                "se": [self.se],
                "h0": [self.h0],
                "tstat": [self.tstat],
                "pvalue": [self.pvalue],
                "ci_low": [lo],
                "ci_high": [hi],
                "draws": [self.draws],
                "bootstrap": [self.bootstrap_type],
                "weights": [self.weights],
                "n_clusters": [self.n_bootclusters],
                "unbounded": [self.unbounded],
            }
        )

    def summary(self) -> str:
        """A printable report."""
        ci = "not computed"
        if self.confint is not None:
            ci = f"[{self.confint[0]:.6g}, {self.confint[1]:.6g}]"
        lines = [
            f"Wild cluster bootstrap ({self.bootstrap_type}, {self.weights} weights, "
            f"{self.draws:,} draws{', full enumeration' if self.full_enumeration else ''})",
            f"Clusters: {' + '.join(self.cluster)} (variance), {self.bootcluster} "
            f"(bootstrap, G = {self.n_bootclusters})",
            f"H0: {self.param} = {self.h0:g}   alternative: {self.alternative}",
            "",
            f"{'term':<16}{'estimate':>12}{'se':>12}{'t':>9}{'boot p':>9}  {int(round(self.level * 100))}% CI",
            f"{self.param[:16]:<16}{self.estimate:>12.5f}{self.se:>12.5f}{self.tstat:>9.3f}{self.pvalue:>9.4f}  {ci}",
        ]
        if self.notes:
            lines.append("")
            lines.extend(f"Note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def plot(self, path: str | None = None, **kwargs: Any):
        """Histogram of the bootstrap t statistics with the observed one (see
        :func:`staggerlab.plots.bootstrap.plot_wildboot`)."""
        from ...plots.bootstrap import plot_wildboot

        return plot_wildboot(self, path=path, **kwargs)


# ------------------------------------------------------------------- entry
def draw_plan(weights: str, n_boot: int, draws: int, weight_matrix: np.ndarray | None, notes: list[str]
              ) -> tuple[bool, int, np.ndarray | None]:
    """Whether every weight vector is enumerated, the number of draws, and the
    checked injected weights (appending notes)."""
    enumerate_all = False
    B = int(draws)
    if weight_matrix is not None:
        weight_matrix = np.asarray(weight_matrix, dtype=np.float64)
        if weight_matrix.ndim != 2 or weight_matrix.shape[0] != n_boot:
            raise WildBootError(f"weight_matrix must be {n_boot} x B, got shape {weight_matrix.shape}")
        B = weight_matrix.shape[1]
        notes.append("weights injected by the caller")
    elif weights in TWO_POINT and n_boot < 63 and 2**n_boot <= draws:
        enumerate_all = True
        B = 2**n_boot
        notes.append(f"full enumeration of the 2^{n_boot} = {B} {weights.capitalize()} weight vectors (deterministic"
                     + (", each weighted by its probability)" if weights == "mammen" else ")"))
    if n_boot <= 11 and weights == "rademacher" and not enumerate_all:
        notes.append(f"only {n_boot} bootstrap clusters: consider weights='webb'")
    return enumerate_all, B, weight_matrix


def _blocks_body(lo: int, hi: int, runner: Any, blocks: list[tuple[int, int, int]], out: list[Any]) -> None:
    for i in range(lo, hi):
        out[i] = runner(blocks[i])


def run_draws(runner: Any, B: int, n_boot: int, n_jobs: int, backend: str | None) -> list[Any]:
    """``runner`` over the blocks of ``B`` draws (block sizes a function of ``n_boot`` only).

    Without a ``backend`` the blocks run in this process on the package's
    chunk threads (:func:`~staggerlab.kernels._jit.run_chunks`: threads from
    the work, ~40 operations per weight; one thread below its threshold):
    a block is BLAS products and numpy passes that release the GIL, so
    threads run blocks side by side with no worker process to start, and a
    thread the OS deschedules holds up one block only. ``n_jobs`` then
    changes nothing (the results never depend on it); a ``backend``
    (``"loky"``, ``"threading"``, ``"dask"``, ``"ray"``) runs the blocks
    through :func:`~staggerlab._parallel.run_blocks` with ``n_jobs``.
    """
    bs = _block_size(n_boot)
    blocks = [(i, s, min(s + bs, B)) for i, s in enumerate(range(0, B, bs))]
    # the block products are skinny (k columns); a second BLAS thread buys
    # little and, on a busy machine, contention costs up to 10x
    with SERIAL_BLAS:
        if backend is None:
            out: list[Any] = [None] * len(blocks)
            run_chunks(_blocks_body, len(blocks), (runner, blocks, out), work=40.0 * B * n_boot)
            return out
        return run_blocks(_run_block, blocks, shared=runner, n_jobs=n_jobs, backend=backend, desc="wild bootstrap")


def boot_inference(cols: tuple[np.ndarray, ...], alg: Any, adj: float, h0: float, impose_null: bool, quad: bool,
                   alternative: str, confint: bool, level: float, notes: list[str], weights: str, n_boot: int,
                   enumerate_all: bool) -> tuple[np.ndarray, float, tuple[float, float] | None,
                                                 Callable[[float], float] | None, bool]:
    """Bootstrap t's, p-value, test-inversion interval, p-value function and
    unboundedness of one tested combination from a runner's per-draw pieces
    ``cols`` (appending notes; an unbounded interval also warns).

    ``quad``: ``cols`` are the pieces of every null value (WCR with a CI); else
    ``(numerator, variance)`` at ``h0`` (WCR) or at the estimate (WCU); the
    last column is each draw's constant sign (see ``Runner``).
    """
    delta = alg.beta_p - h0
    tstat = delta / alg.se
    B = cols[0].size
    csign = cols[-1] if impose_null else np.zeros(B)
    prob = enumeration_probabilities(n_boot, weights) if enumerate_all and weights == "mammen" else None
    if quad:
        pieces = cols[:-1]
        stats = _exact_ties(_tstar(pieces, adj, delta), tstat, csign)

        def pfun(h: float) -> float:
            dl = alg.beta_p - h
            return _pvalue(dl / alg.se, _exact_ties(_tstar(pieces, adj, dl), dl / alg.se, csign), alternative, prob)
    else:
        num, den = cols[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            stats = _exact_ties(num / np.sqrt(np.where(den > 0, adj * den, np.nan)), tstat, csign)
        pfun = None
        if not impose_null:
            def pfun(h: float) -> float:  # WCU: the bootstrap t's do not depend on the null
                return _pvalue((alg.beta_p - h) / alg.se, stats, alternative, prob)
    n_bad = int((~np.isfinite(stats)).sum())
    if n_bad:
        notes.append(f"{n_bad} draw(s) with a non-positive two-way variance were left out")
    pval = _pvalue(tstat, stats, alternative, prob)

    ci = None
    unbounded = False
    if confint and pfun is not None:
        alpha = 1.0 - level
        lims = {s: _limit_pvalue(csign, s, alternative, prob) for s in (-1, 1)}
        lo = -math.inf if alternative == "less" else _invert(pfun, alg.beta_p, alg.se, alpha, -1, lims[-1])
        hi = math.inf if alternative == "greater" else _invert(pfun, alg.beta_p, alg.se, alpha, +1, lims[1])
        ci = (lo, hi)
        unbounded = (math.isinf(lo) and alternative != "less") or (math.isinf(hi) and alternative != "greater")
        if unbounded:
            tie = max(lims.values())
            why = (f"draws whose weights are all equal tie with the observed t at every null value and carry "
                   f"probability {tie:.4g} >= {alpha:.4g}" if tie >= alpha else "no null value far from the "
                   "estimate is rejected")
            msg = (f"the {level:.0%} confidence set is unbounded: {why} (G = {n_boot} bootstrap clusters, "
                   f"{weights} weights); use weights='webb'")
            notes.append(msg)
            warnings.warn(msg, UnboundedIntervalWarning, stacklevel=3)
    return stats, pval, ci, pfun, unbounded


def _algebra_in_memory(fit: Feols, param: str, cluster: Any, bootcluster: str | None, impose_null: bool,
                       tuning: "WildBootTuning", notes: list[str]) -> tuple[Any, list[str], str, int, int, float]:
    """The bootstrap algebra of an in-memory fit, its clusterings and CRV1 factor
    (``alg, names, bootcluster, G, n_boot, adj``); notes are appended to ``notes``."""
    d = fit.design
    if param not in d.regressors:
        raise WildBootError(f"param {param!r} is not a coefficient of the model; coefficients: {d.regressors}")
    bc = boot_clusters(fit, cluster, bootcluster, notes)
    bd = boot_design(fit, d.regressors.index(param), bc.boot, tuning.chunk_rows)
    if bd.explicit_fe:
        notes.append(
            f"fixed effect(s) {bd.explicit_fe} are not nested in the bootstrap clusters; they enter the "
            "bootstrap as regressors (exact, as with dummies)"
        )
    alg = algebra(bd, bc.boot, bc.n_boot, [(c, sign) for c, sign, _ in bc.parts], bc.adj, impose_null)
    return alg, bc.names, bc.bname, bc.G, bc.n_boot, bc.adj


def wildboot(
    fit: Any,
    param: str = "treat",
    draws: int = 9999,
    weights: WeightType = "rademacher",
    impose_null: bool = True,
    h0: float = 0.0,
    cluster: str | Sequence[str] | None = None,
    bootcluster: str | None = None,
    alternative: Alternative = "two-sided",
    confint: bool = True,
    level: float = 0.95,
    seed: SeedLike = 0,
    n_jobs: int = 1,
    backend: str | None = None,
    *,
    weight_matrix: np.ndarray | None = None,
    tuning: WildBootTuning = WildBootTuning(),
    band: Literal["post", "all"] = "post",
) -> Any:
    """Wild cluster bootstrap test (and test-inversion CI) of one coefficient,
    or of every coefficient and aggregate of an event study.

    Parameters
    ----------
    fit : staggerlab Feols, pyfixest Feols, EventStudyResult or CSResult
        A fitted model; fixed effects stay absorbed (see the module notes for
        fixed effects not nested in the bootstrap clusters). An event study
        (``method="twfe"``, ``"sunab"`` or ``"imputation"``, or a Callaway-Sant'Anna
        result, through its own multiplier bootstrap) is bootstrapped whole by
        :func:`~staggerlab.inference.resampling.es_wildboot.event_study_wildboot`
        (``param``, ``h0``, ``cluster`` and ``bootcluster`` do not apply; every
        null is zero) and an
        :class:`~staggerlab.inference.resampling.es_wildboot.EventStudyBootResult`
        is returned.
        A partitioned fit (``feols`` of a dask DataFrame or parquet directory,
        CRV1 by a column containing the units) gets its per-cluster sums in one
        pass over the partitions; the draws then run on those sums as in memory.
    param : str
        The coefficient tested.
    draws : int
        Number of bootstrap draws. With two-point weights (Rademacher, Mammen)
        and ``2^G <= draws`` all ``2^G`` weight vectors are enumerated instead
        (deterministic); each enumerated Mammen draw counts with its
        probability ``p^k (1 - p)^(G - k)`` (``k`` weights at the high value).
    weights : {"rademacher", "mammen", "webb", "normal"}
        Distribution of the cluster weights.
    impose_null : bool
        True for WCR (residuals of the model with ``param = h0``), False for WCU.
    h0 : float
        Null value of ``param``.
    cluster : str or list of str, optional
        Variance cluster column(s); defaults to the fit's. With two-way
        clustering the variance of every draw is two-way (as the fit's) and the
        bootstrap weights are drawn by the first cluster.
    bootcluster : str, optional
        Column whose levels get the bootstrap weights (subcluster bootstrap);
        defaults to the first cluster.
    alternative : {"two-sided", "equal-tailed", "greater", "less"}
        ``two-sided`` is the symmetric test ``mean(|t*| > |t|)``; ``equal-tailed``
        is ``2 min(mean(t* > t), mean(t* < t))``; ``greater``/``less`` are
        one-sided (H1: ``param > h0`` / ``< h0``).
    confint : bool
        Compute the confidence interval by inverting the bootstrap test (same
        weights for every null value; one-sided for one-sided alternatives).
    level : float
        Confidence level; the CI holds the null values with p-value >= 1 - level.
    seed : int, Generator, SeedSequence or None
        Seed; block ``i`` of draws uses ``block_generator(seed, i)``.
    n_jobs, backend : int, str
        Without ``backend`` the blocks of draws run on this process's threads,
        as many as the work and the free cores call for (``n_jobs`` is then
        not used); with one (``"loky"``, ``"threading"``, ``"dask"``,
        ``"ray"``) they run through joblib with ``n_jobs``. Results are
        identical either way.
    weight_matrix : ndarray, optional
        Expert/testing: a ``G x B`` matrix of weights (bootstrap clusters in
        sorted order of their values) used instead of drawing.
    tuning : WildBootTuning
        Memory bounds; the statistics do not depend on them.
    band : {"post", "all"}
        Event studies only: the periods the sup-t band covers jointly.

    Returns
    -------
    WildBootResult or EventStudyBootResult

    Raises
    ------
    WildBootError
        Unknown ``param``, weights or alternative; bad ``draws`` or ``level``.
    VcovError
        No cluster structure in the fit and none given; fewer than 2 clusters.

    Notes
    -----
    The bootstrap t statistics use CRV1 with the fit's small-sample factor
    ``(N-1)/(N-df_k) * G/(G-1)``, so the observed t equals the fit's when
    ``h0 = 0``. P-values are the share of draws (no "+1") whose bootstrap t
    is at least as extreme as the observed one: ties count as extreme. Under
    WCR a draw whose weights are all equal reproduces ``+-t`` exactly at every
    null value, so it always ties; with full Rademacher enumeration the
    observed draw (all ``+1``) and its mirror (all ``-1``) are among them, and
    the two-sided p-value exceeds wildboottest's (which counts strictly larger
    statistics) by ``2 / 2^G``. When those tying draws carry probability
    ``>= 1 - level`` (Mammen with G = 8: 7.5%), no null value is rejected far
    from the estimate: the interval is reported as ``(-inf, inf)`` (or
    half-infinite) with ``unbounded=True``, a note and an
    :class:`~staggerlab.errors.UnboundedIntervalWarning`; Webb weights (six
    points) avoid it.

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.resampling.wildboot import wildboot
    >>> df = sl.simulate.staggered(40, 6, seed=1)
    >>> fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "unit"})
    >>> wb = wildboot(fit, param="treat", draws=999, seed=1)
    >>> wb.pvalue < 0.05
    True
    """
    from ..did.cs import CSResult
    from ..did.event_study import EventStudyResult

    if isinstance(fit, (EventStudyResult, CSResult)):
        odd = [n for n, v, dv in (("param", param, "treat"), ("h0", h0, 0.0), ("cluster", cluster, None),
                                  ("bootcluster", bootcluster, None)) if v != dv]
        if odd:
            raise WildBootError(f"{odd} do not apply to an event study (every null is zero, the clusters are "
                                "the event study's)")
        from .es_wildboot import event_study_wildboot

        return event_study_wildboot(fit, draws, weights, impose_null, alternative, confint, level, seed, n_jobs,
                                    backend, band, weight_matrix=weight_matrix, tuning=tuning)
    if weights not in WEIGHT_TYPES:
        raise WildBootError(f"weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    check_alternative(alternative, ALTERNATIVES)
    check_level(level)
    if weight_matrix is None:
        check_draws(draws)
    with SERIAL_BLAS:  # every product below is skinny (see SERIAL_BLAS)
        return _wildboot(fit, param, draws, weights, impose_null, h0, cluster, bootcluster, alternative, confint,
                         level, seed, n_jobs, backend, weight_matrix, tuning)


def _wildboot(fit: Any, param: str, draws: int, weights: str, impose_null: bool, h0: float, cluster: Any,
              bootcluster: str | None, alternative: str, confint: bool, level: float, seed: SeedLike, n_jobs: int,
              backend: str | None, weight_matrix: np.ndarray | None, tuning: WildBootTuning) -> WildBootResult:
    """:func:`wildboot` of one coefficient of a fit (arguments checked)."""
    notes: list[str] = []
    if isinstance(fit, PartitionedFeols):
        from ..distributed.resampling import wildboot_algebra_partitioned

        alg, names, bname, G, n_boot, adj = wildboot_algebra_partitioned(fit, param, cluster, bootcluster,
                                                                          impose_null, notes)
    else:
        alg, names, bname, G, n_boot, adj = _algebra_in_memory(as_feols(fit), param, cluster, bootcluster,
                                                               impose_null, tuning, notes)

    enumerate_all, B, weight_matrix = draw_plan(weights, n_boot, draws, weight_matrix, notes)

    delta = alg.beta_p - h0
    tstat = delta / alg.se
    quad = bool(confint and impose_null)
    runner = Runner(alg if quad else at(alg, delta), weights, resolve_entropy(seed), enumerate_all,
                    weight_matrix, quad, tuning.chunk_weights)
    res = run_draws(runner, B, n_boot, n_jobs, backend)
    cols = tuple(np.concatenate(x) for x in zip(*res))
    stats, pval, ci, pfun, unbounded = boot_inference(cols, alg, adj, float(h0), impose_null, quad, alternative,
                                                      confint, level, notes, weights, n_boot, enumerate_all)

    return WildBootResult(
        param=param,
        estimate=alg.beta_p,
        se=alg.se,
        h0=float(h0),
        tstat=float(tstat),
        pvalue=pval,
        confint=ci,
        level=level,
        statistics=stats,
        draws=B,
        weights=weights if weight_matrix is None else "injected",
        impose_null=impose_null,
        alternative=alternative,
        full_enumeration=enumerate_all,
        n_clusters=G,
        n_bootclusters=n_boot,
        cluster=tuple(names),
        bootcluster=bname,
        notes=notes,
        unbounded=unbounded,
        _pfun=pfun,
    )
