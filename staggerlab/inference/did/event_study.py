"""Event studies for staggered adoption: dynamic TWFE, Sun-Abraham, imputation.

All methods return an :class:`EventStudyResult` (coefficients by relative
period, their covariance, aggregations, a pre-trend test and Figure 1).
``method="cs"`` is delegated to :mod:`staggerlab.inference.did.cs`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import polars as pl

from ...errors import ArgumentTypeError, EventStudyError, ReferencePeriodError, SingleClusterWarning
from ..results import Aggregate, PretrendTest, Result, interval
from .staggered_data import prepare

__all__ = ["event_study", "EventStudyResult", "EventStudyTuning", "Aggregate", "PretrendTest", "WaldTest", "EventStudyError",
           "ReferencePeriodError"]

Method = Literal["twfe", "sunab", "imputation", "cs", "lpdid", "stacked", "etwfe"]
METHODS = ("twfe", "sunab", "imputation", "cs", "lpdid", "stacked", "etwfe")
#: the keyword options of the methods that take some (CS checks its own)
_OPTIONS = {"lpdid": {"control", "reweight"}, "stacked": {"weighting"}, "etwfe": {"control"}}


@dataclass(frozen=True)
class EventStudyTuning:
    """Memory bounds and path switch of the event studies (same estimates whatever the setting).

    Parameters
    ----------
    chunk_rows : int
        Rows per chunk of the imputation estimator's per-row passes (bounds
        their temporaries).
    lean_bytes : int
        Size of the dense design (bytes) above which TWFE and Sun-Abraham take
        the lean path (:mod:`staggerlab.inference.did.lean_dummies`).
    """

    chunk_rows: int = 1 << 17
    lean_bytes: int = 1 << 29


#: the pre-trend test's name before every event-study method shared it
WaldTest = PretrendTest


class EventStudyResult(Result):
    """Event-study estimates by relative period.

    Parameters
    ----------
    rel_time : array of int
        Estimated relative periods (reference excluded).
    coef : array
        Estimates, same order.
    vcov : 2-D array
        Their covariance.
    ref : int
        The reference (omitted) period (the first one if several).
    method : str
    nobs : int
        Observations used.
    df : int, optional
        Degrees of freedom of t-based inference (None: normal).
    extra : dict, optional
        Method-specific material. ``extra["aggregator"]``, a callable
        ``kind -> Aggregate``, overrides the default aggregations;
        ``extra["n_rel"]`` (treated observations per relative period) weights
        the default ``"simple"`` aggregation.
    refs : sequence of int, optional
        Every normalised (omitted) period, ``ref`` first (default ``(ref,)``);
        all are named by :meth:`summary` and drawn by :meth:`plot`.
    """

    def __init__(self, rel_time: Sequence[int], coef: Sequence[float], vcov: np.ndarray, ref: int,
                 method: str, nobs: int, df: int | None = None, extra: dict | None = None,
                 refs: Sequence[int] | None = None):
        self.rel_time = np.asarray(rel_time, dtype=np.int64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.vcov = np.asarray(vcov, dtype=np.float64).reshape(self.coef.size, self.coef.size)
        self.ref = int(ref)
        self.refs = tuple(int(r) for r in refs) if refs is not None else (self.ref,)
        self.method = method
        self.nobs = int(nobs)
        self.df = None if df is None else int(df)
        self.extra = dict(extra or {})

    @property
    def se(self) -> np.ndarray:
        """Standard errors of :attr:`coef`."""
        return np.sqrt(np.diag(self.vcov))

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """``rel_time, estimate, se, ci_low, ci_high`` (one row per estimated period)."""
        lo, hi = interval(self.coef, self.se, self.df, level)
        return pl.DataFrame({"rel_time": self.rel_time, "estimate": self.coef, "se": self.se,
                             "ci_low": lo, "ci_high": hi})

    def pretrend_test(self) -> PretrendTest:
        """Joint Wald test that every estimated lead (relative period < 0) is zero."""
        lead = np.flatnonzero(self.rel_time < 0)
        b = self.coef[lead]
        V = self.vcov[np.ix_(lead, lead)]
        wald = float(b @ np.linalg.lstsq(V, b, rcond=None)[0]) if lead.size else float("nan")
        q = int(np.linalg.matrix_rank(V)) if lead.size else 0
        return PretrendTest(wald, q, self.df, self.rel_time[lead].tolist())

    def _lincomb(self, R: np.ndarray) -> tuple[float, float]:
        return float(R @ self.coef), float(np.sqrt(max(R @ self.vcov @ R, 0.0)))

    def aggregate(self, kind: str = "simple") -> Aggregate:
        """Aggregate the event study.

        ``"simple"``: average effect over post periods weighted by the number
        of treated observations; ``"dynamic"``: equal-weight average of the
        post-period estimates (components: every relative period). Methods may
        add ``"group"`` (by cohort) and ``"calendar"`` (by period).
        """
        agg: Callable[[str], Aggregate] | None = self.extra.get("aggregator")
        out = agg(kind) if agg is not None else self.default_aggregate(kind)
        out.df = self.df  # the result's reference distribution (event_study(df=...)) holds for its aggregates
        return out

    def default_weights(self, kind: str) -> np.ndarray:
        """Weights of :attr:`coef` in the ``"simple"`` or ``"dynamic"`` aggregation."""
        post = self.rel_time >= 0
        if not post.any():
            raise EventStudyError("no post-treatment period (rel_time >= 0) was estimated")
        if kind == "simple":
            n = np.asarray(self.extra.get("n_rel", np.ones(self.coef.size)), float)
            R = np.where(post, n, 0.0)
            return R / R.sum()
        if kind == "dynamic":
            return post / post.sum()
        raise EventStudyError(f"aggregation {kind!r} is not defined for method={self.method!r}; "
                              "use 'simple' or 'dynamic'")

    def default_aggregate(self, kind: str) -> Aggregate:
        """The ``"simple"`` and ``"dynamic"`` aggregations every method shares (method aggregators fall back to it)."""
        R = self.default_weights(kind)
        if kind == "simple":
            est, se = self._lincomb(R)
            return Aggregate("simple", est, se, self.df)
        if kind == "dynamic":
            est, se = self._lincomb(R)
            comp = pl.DataFrame({"level": self.rel_time, "estimate": self.coef, "se": self.se})
            return Aggregate("dynamic", est, se, self.df, comp)
        raise EventStudyError(f"aggregation {kind!r} is not defined for method={self.method!r}; "
                              "use 'simple' or 'dynamic'")

    def summary(self) -> str:
        """Printable table of the estimates and the pre-trend test."""
        refs = (f"reference periods {', '.join(map(str, self.refs))}" if len(self.refs) > 1
                else f"reference period {self.ref}")
        lines = [f"Event study ({self.method}), {refs}, {self.nobs:,} observations",
                 f"{'rel_time':>8}{'estimate':>12}{'se':>11}{'ci_low':>11}{'ci_high':>11}"]
        for r in self.tidy().iter_rows(named=True):
            lines.append(f"{r['rel_time']:>8}{r['estimate']:>12.5f}{r['se']:>11.5f}"
                         f"{r['ci_low']:>11.5f}{r['ci_high']:>11.5f}")
        if (self.rel_time < 0).any():
            lines.append(self.pretrend_test().summary())
        if self.extra.get("single_cluster"):
            lines.append(f"relative period(s) {self.extra['single_cluster']} rest on one cluster: their standard "
                         "errors understate the uncertainty (SingleClusterWarning)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def plot(self, path: str | None = None, *, level: float = 0.95, ax: Any = None,
             title: str | None = None) -> Any:
        """Figure 1: estimates with confidence intervals against relative time."""
        from ...plots.event_study import plot_event_study

        return plot_event_study(self, path=path, level=level, ax=ax, title=title)


# -------------------------------------------------------------- dispatcher
def event_study(
    data: Any,
    *,
    y: str,
    unit: str | None = None,
    time: str | None = None,
    cohort: str | None = None,
    treat: str | None = None,
    controls: Sequence[str] | None = None,
    cluster: str | None = None,
    weights: str | None = None,
    window: tuple[int, int] = (-5, 5),
    ref: int | Sequence[int] = -1,
    bin_endpoints: bool = True,
    method: Method = "twfe",
    tuning: Any = None,
    df: Literal["clusters", "normal"] | None = None,
    **kwargs: Any,
) -> EventStudyResult:
    """Event study of a staggered adoption design.

    Parameters
    ----------
    data : polars/pandas DataFrame, Panel, dask DataFrame or directory of parquet files
        A dask DataFrame or a directory (partitions holding whole units) runs
        ``method="twfe"``, ``"sunab"`` or ``"imputation"`` partition by
        partition, unweighted, equal to the in-memory fit at 1e-10; its
        ``wildboot`` and ``placebo`` gather the rows to the client below the
        client budget (:mod:`staggerlab.inference.distributed.event_study`,
        :mod:`~staggerlab.inference.distributed.sunab`,
        :mod:`~staggerlab.inference.distributed.imputation`).
    y, unit, time : str
        Outcome, unit id and (numeric) period columns.
    cohort, treat : str
        Exactly one: the adoption-period column (0 = never treated; a missing
        value is read as never treated, with a warning) or an absorbing 0/1
        treatment. With ``treat`` on an unbalanced panel, a unit whose
        adoption-period row is missing gets its next observed period (an
        :class:`~staggerlab.errors.AdoptionGapWarning` counts such units);
        pass the known adoption periods as ``cohort`` instead (see
        :func:`~staggerlab.inference.did.staggered_data.prepare`).
    controls : list of str, optional
        Time-varying covariates (regressors in TWFE/Sun-Abraham, first stage
        of the imputation estimator).
    cluster : str, optional
        Cluster column of the standard errors (default: ``unit``).
    weights : str, optional
        Analytic weights.
    window : (int, int)
        Relative periods reported, ``(lo, hi)``.
    ref : int or sequence of int
        Reference (omitted) period; excluded from the reported periods. It
        must be observed for some treated unit, else
        :class:`~staggerlab.errors.ReferencePeriodError` (e.g. a biennial panel
        has no relative period -1; the message lists the observed ones). Without
        never-treated units and with unbinned endpoints the TWFE dummies are
        collinear with the fixed effects and one more period must be normalised:
        TWFE then refuses unless given two, ``ref=[-1, k]`` (every normalised
        period is named in ``summary()`` and the figure). Several reference
        periods are accepted by ``method="twfe"`` only.
    bin_endpoints : bool
        Pool periods before ``lo`` into ``lo`` and after ``hi`` into ``hi``.
        If False, every observed relative period gets its own coefficient
        (TWFE/Sun-Abraham) and only those in the window are reported.
    method : {"twfe", "sunab", "imputation", "cs", "lpdid", "stacked", "etwfe"}
        Dynamic TWFE; Sun-Abraham interaction-weighted (never-treated or, if
        none, last-treated control; cohort weights by share of observations);
        Borusyak-Jaravel-Spiess imputation (= Gardner two-stage DID, with
        Gardner's GMM standard errors); Callaway-Sant'Anna (``**kwargs``
        such as ``control=`` are passed on); LP-DiD
        (:func:`~staggerlab.inference.did.lpdid.lpdid`, options ``control``,
        ``reweight``); stacked DiD
        (:func:`~staggerlab.inference.did.stacked.stacked`, option
        ``weighting``); extended TWFE
        (:func:`~staggerlab.inference.did.etwfe.etwfe`, option ``control``). TWFE and Sun-Abraham fits whose
        dense design would exceed ``tuning.lean_bytes`` (512 MB) run as
        a lean regression from per-unit sums (same estimates; no N x k
        matrix), unless weights, singletons or collinearity need ``feols``.
    tuning : EventStudyTuning, optional
        Memory bounds (default ``EventStudyTuning()``); with ``method="cs"``, a
        :class:`~staggerlab.inference.did.cs.CSTuning` passed on.
    df : {"clusters", "normal"}, optional
        Reference distribution of the intervals, p-values and pre-trend test:
        ``"clusters"`` is t with G - 1 degrees of freedom (G clusters),
        ``"normal"`` the normal. Default (None): each method's own, t(G - 1)
        for TWFE, Sun-Abraham and imputation (as fixest) and normal for
        Callaway-Sant'Anna (as ``did``). With few clusters the Sun-Abraham,
        imputation and Callaway-Sant'Anna intervals under-cover: about 91-92%
        at 95% with 50 clusters (AR(1) errors, heterogeneous effects; their
        SE is about 0.90 of the true SD, with the same formulas as the peer
        packages), so this is the methods' small-sample behaviour; t(G - 1)
        corrects part of it, a bootstrap more.

    Returns
    -------
    EventStudyResult

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.did.event_study import event_study
    >>> df = sl.simulate.staggered(300, 10, seed=1)
    >>> es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", method="sunab")
    >>> es.tidy().columns
    ['rel_time', 'estimate', 'se', 'ci_low', 'ci_high']
    """
    if method not in METHODS:
        raise EventStudyError(f"unknown method {method!r}; use one of {', '.join(map(repr, METHODS))}")
    try:
        lo, hi = (int(window[0]), int(window[1]))
    except (TypeError, ValueError, IndexError):
        raise EventStudyError(f"window must be a pair of integers (lo, hi), got {window!r}") from None
    if lo > hi:
        raise EventStudyError(f"window {window!r}: lo must not exceed hi")
    if df not in (None, "clusters", "normal"):
        raise EventStudyError(f"df must be 'clusters', 'normal' or None, got {df!r}")
    refs = _reference_periods(ref, method)
    for r in refs if method != "cs" else ():
        if not lo <= r <= hi:
            raise EventStudyError(f"reference period {r} lies outside the window {window!r}")
    from ..distributed.partitions import is_partitioned

    if is_partitioned(data):
        return _partitioned(data, method, y, unit, time, cohort, treat, controls, cluster, weights, (lo, hi), refs,
                            bin_endpoints, df, kwargs)
    sd = prepare(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat, controls=controls,
                 cluster=cluster, weights=weights, rows=method != "cs")  # CS works on units
    if method == "cs":
        from .cs import callaway_santanna

        if tuning is not None:
            kwargs["tuning"] = tuning
        if df is not None:
            kwargs["df"] = df
        return callaway_santanna(sd, window=(lo, hi), **kwargs)
    if set(kwargs) - _OPTIONS.get(method, set()):
        raise ArgumentTypeError(f"unexpected keyword argument(s) for method={method!r}: {sorted(kwargs)}")
    run = _runner(method)
    if tuning is None:
        tuning = EventStudyTuning()
    if not isinstance(tuning, EventStudyTuning):
        raise ArgumentTypeError(f"tuning must be an EventStudyTuning for method={method!r}, got {type(tuning).__name__}")
    sd.codes()  # every method needs the (unit, time) codes: computed once, here
    with warnings.catch_warnings():
        # the regressions' own flags name internal dummies; the event study's flag below names periods
        warnings.filterwarnings("ignore", category=SingleClusterWarning)
        res = run(sd, (lo, hi), refs if method == "twfe" else refs[0], bool(bin_endpoints), tuning, **kwargs)
    if method in ("twfe", "sunab", "imputation"):
        _flag_single_cluster(res, sd, (lo, hi), bool(bin_endpoints))
    if df == "normal":
        res.df = None
    elif df == "clusters":
        # each method's df is already its clusters minus one (CRV1 / GMM by cluster); recounted to be explicit
        res.df = sd.frame[sd.cluster].n_unique() - 1 if res.df is None else res.df
    return res


def _flag_single_cluster(res: EventStudyResult, sd: Any, window: tuple[int, int], bin_endpoints: bool) -> None:
    """Warn about (and list in ``res.extra["single_cluster"]``) the relative
    periods whose treated rows all lie in one cluster.

    Such a coefficient is that cluster's own contrast: its residuals in those
    cells are fitted away, so a cluster-robust (CRV1 or GMM) standard error
    cannot see that cluster's noise and understates the uncertainty; a
    leave-one-cluster-out estimate does not exist.
    """
    from .staggered_data import REL

    rel = pl.col(REL).clip(*window) if bin_endpoints else pl.col(REL)
    counts = (sd.frame.lazy().filter(pl.col(REL).is_not_null()).select(rel.alias("r"), pl.col(sd.cluster))
              .group_by("r").agg(pl.col(sd.cluster).n_unique().alias("n")).filter(pl.col("n") == 1).collect())
    one = sorted(set(counts["r"].to_list()) & {int(r) for r in res.rel_time})
    res.extra["single_cluster"] = one
    if one:
        label = sd.caller(sd.cluster)
        warnings.warn(
            f"relative period(s) {one} rest on the treated rows of one cluster ({label!r}): that cluster's "
            "residuals there are fitted away, so the cluster-robust standard errors of those coefficients (and "
            "of aggregates and pre-trend tests that use them) understate the uncertainty; bin them into "
            "better-supported periods (a narrower window) or read them as descriptive",
            SingleClusterWarning, stacklevel=3)


def _partitioned(data: Any, method: str, y: str, unit: str | None, time: str | None, cohort: str | None,
                 treat: str | None, controls: Sequence[str] | None, cluster: str | None, weights: str | None,
                 window: tuple[int, int], refs: tuple[int, ...], bin_endpoints: bool, df: str | None,
                 kwargs: dict[str, Any]) -> EventStudyResult:
    """The event study of a partitioned panel: dynamic TWFE (``distributed.event_study``) or
    imputation (``distributed.imputation``)."""
    from ...errors import PartitionedDesignError
    from ..distributed.event_study import twfe_partitioned

    if method not in ("twfe", "sunab", "imputation"):
        raise PartitionedDesignError(
            f"on a partitioned panel (dask DataFrame or parquet directory) event_study runs method='twfe', "
            f"'sunab' and 'imputation'; method={method!r} needs the rows in memory (docs/cluster.md)")
    if weights is not None or kwargs:
        raise PartitionedDesignError("the partitioned event study is unweighted and takes no method options")
    if unit is None or time is None:
        raise ArgumentTypeError("give unit= and time= for a partitioned panel")
    if (cohort is None) == (treat is None):
        raise ArgumentTypeError("give exactly one of cohort= (adoption period) or treat= (0/1 treatment)")
    if method == "imputation":
        from ..distributed.imputation import imputation_partitioned

        res = imputation_partitioned(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat,
                                     controls=list(controls or []), cluster=cluster, window=window, ref=refs[0],
                                     bin_endpoints=bool(bin_endpoints))
    elif method == "sunab":
        from ..distributed.sunab import sunab_partitioned

        res = sunab_partitioned(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat,
                                controls=list(controls or []), cluster=cluster, window=window, ref=refs[0],
                                bin_endpoints=bool(bin_endpoints))
    else:
        res = twfe_partitioned(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat,
                               controls=list(controls or []), cluster=cluster, window=window, refs=refs,
                               bin_endpoints=bool(bin_endpoints))
    if df == "normal":
        res.df = None
    return res


def _reference_periods(ref: Any, method: str) -> tuple[int, ...]:
    """``ref`` as a tuple of distinct integer periods (several only for TWFE)."""
    many = isinstance(ref, (list, tuple, np.ndarray))
    refs = tuple(ref) if many else (ref,)
    if not refs or not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in refs):
        raise EventStudyError(f"ref must be an integer relative period (or, for TWFE, a list of them), got {ref!r}")
    if len(set(refs)) != len(refs):
        raise EventStudyError(f"ref lists a period twice: {ref!r}")
    if len(refs) > 1 and method != "twfe":
        raise ReferencePeriodError(f"several reference periods ({list(refs)}) are supported by method='twfe' only")
    return tuple(int(r) for r in refs)


def _runner(method: str) -> Callable[..., EventStudyResult]:
    """The estimator of a regression-based method (imported on first use)."""
    if method == "twfe":
        from .twfe_event import twfe as run
    elif method == "sunab":
        from .sunab import sunab as run
    elif method == "imputation":
        from .imputation import imputation as run
    elif method == "lpdid":
        from .lpdid import lpdid as run
    elif method == "stacked":
        from .stacked import stacked as run
    else:
        from .etwfe import etwfe as run
    return run
