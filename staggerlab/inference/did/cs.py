"""Callaway & Sant'Anna (2021) group-time average treatment effects.

ATT(g, t) for every treated cohort ``g`` and period ``t`` is a 2x2
difference in differences between cohort ``g`` and a comparison group
(never-treated units, or units not yet treated by ``max(t, base) +
anticipation``), as the R ``did`` package computes it: unconditional without
covariates; with covariates (``controls``, conditional parallel trends) by
outcome regression, normalised inverse probability weighting or the doubly
robust estimator (``est_method``, default ``"dr"``; balanced panels only; see
:mod:`staggerlab.inference.did.cs_covariates`). Standard errors come from the
influence functions (one value per unit), aggregations (simple, dynamic /
event time, group, calendar) carry the estimation effect of their weights
exactly as ``did::aggte`` does, and an optional multiplier bootstrap on the
influence functions gives bootstrap standard errors and uniform (sup-t)
bands.

Conventions (``ref``)
---------------------
``base_period="varying"`` (the ``did`` default): post-adoption cells compare
with period ``g - 1 - anticipation``, pre-adoption cells with the period just
before ``t`` (short differences), so no event time is normalised to zero;
the result still reports ``ref = -1`` (the last period before adoption).
``base_period="universal"``: every cell of cohort ``g`` compares with
``g - 1 - anticipation``; event time ``-1 - anticipation`` is estimated as
exactly 0 with zero variance and is ``ref``. Only the universal convention is
an event study in the sense of Rambachan-Roth (``honest`` refuses the other).

Unbalanced panels (``allow_unbalanced_panel``)
-----------------------------------------------
By default, as ``did``, units not observed in every period are dropped. With
``allow_unbalanced_panel=True`` and a panel that is not balanced, every unit
is kept and each ATT(g,t) is what ``did`` computes on that path
(``DRDID::reg_did_rc`` with an intercept only, i.e. the 2x2 on repeated cross
sections): with the rows of the treated cohort and of the comparison units
observed in period t and in the base period b (a unit observed in only one of
the two contributes that one row),
``ATT(g,t) = [mean(y | treated, t) - mean(y | treated, b)]
- [mean(y | comparison, t) - mean(y | comparison, b)]`` (weighted means). Its
influence function on a unit is the sum over the unit's rows in the two
periods of ``+-n w (y - mean) / weight`` (n: all units kept; the mean and
total weight of the row's group in the row's period), so standard errors,
clustering, aggregations and the bootstrap work on units as in the balanced
case. It does not difference outcomes within units, so with large unit
heterogeneity it can be much less precise than the balanced estimator. A panel
that is balanced gives identical numbers with either setting.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl

from ..._seed import SeedLike, resolve_entropy
from ..._validate import alpha_of
from ...errors import (
    ArgumentError,
    ArgumentTypeError,
    CovariatesNotSupportedError,
    SingleClusterWarning,
    TreatmentError,
)
from ..resampling.placebo_blocks import SERIAL_BLAS
from ..results import PretrendTest, Result, critical_value
from .cs_aggregate import AggKind, CSAggregate, aggregate
from .cs_cells import BasePeriod, Cells, ControlGroup, Wide, att_gt, to_wide
from .cs_covariates import EST_METHODS, EstMethod
from .cs_influence import ZERO_SE, BootSpec, IFMap, multiplier_bootstrap, se_from_gram
from .staggered_data import StaggeredData, prepare

__all__ = [
    "callaway_santanna",
    "cs",
    "CSResult",
    "CSTuning",
    "CSAggregate",
    "CovariatesNotSupportedError",
]


@dataclass(frozen=True)
class CSTuning:
    """Memory bounds of Callaway-Sant'Anna (every setting gives the same numbers).

    Parameters
    ----------
    if_chunk : int
        Units per chunk of influence-function rows.
    boot_multipliers : int
        Bootstrap multipliers drawn at once (32 MB by default).
    """

    if_chunk: int = 1 << 15
    boot_multipliers: int = 1 << 22


# --------------------------------------------------------------------------- result
class CSResult(Result):
    """Callaway-Sant'Anna result; shares the event-study result API.

    Attributes
    ----------
    rel_time : ndarray
        Event times of the dynamic aggregation within ``window``.
    coef : ndarray
        Dynamic (event-time) aggregated ATTs at ``rel_time``.
    vcov : ndarray
        Covariance of ``coef`` from the influence functions (analytic).
    se : ndarray
        Standard errors of ``coef`` (bootstrap ones if ``bootstrap=True``).
    ref : int
        ``-1 - anticipation``: the last period before (anticipated) adoption. With
        ``base_period="universal"`` its coefficient is exactly 0; with
        ``"varying"`` no coefficient is normalised (see the module docstring).
    method : str
        ``"cs"``.
    base_period, control, anticipation, level : as given.
    controls : list of str
        The covariates (empty: unconditional parallel trends).
    est_method : str or None
        ``"dr"``, ``"ipw"`` or ``"reg"`` with covariates; None without.
    n_units, nobs : int
        Units and rows (unit-periods) the estimator uses (after balancing,
        unless ``unbalanced``).
    unbalanced : bool
        Whether the unbalanced-panel estimator ran (``allow_unbalanced_panel``
        on a panel with missing unit-periods).
    alpha : float
        ``1 - level`` (the size of the tests).
    """

    method = "cs"

    def __init__(self, cells: Cells, wd: Wide, *, window, control, anticipation, base_period, level, boot,
                 tuning: CSTuning = CSTuning(), min_e: float = -np.inf, max_e: float = np.inf,
                 df: int | None = None, est_method: str | None = None):
        self._cells = cells
        self.single_cluster: list[int] = []  # cohorts whose units lie in one cluster (set by the estimator)
        self.est_method = est_method
        self.controls = list(wd.x_names)
        self._wd = wd
        self.window = tuple(window)
        self.min_e, self.max_e = min_e, max_e
        self.df = df
        self.control = control
        self.anticipation = int(anticipation)
        self.base_period = base_period
        self.level = float(level)
        self.alpha = alpha = alpha_of(level)
        self._boot = boot
        self._tuning = tuning
        self.bootstrap = boot is not None
        self.n_units = int(wd.g.size)
        self.nobs = int(wd.nobs)
        self.unbalanced = bool(wd.unbalanced)
        self.ref = -1 - self.anticipation
        self._aggs: dict[str, CSAggregate] = {}
        dyn = self.aggregate("dynamic")
        self.rel_time = dyn.labels.astype(np.int64)
        self.coef = dyn.estimates.copy()
        self.vcov = dyn.vcov
        self.se = np.nan_to_num(dyn.ses, nan=0.0)
        self.crit = dyn.crit
        cell_map = self._cell_map()
        if boot is None:
            self._cell_se = se_from_gram(cell_map.gram(full=False), self.n_units)
            self._cell_crit = critical_value(alpha, df)
        else:
            self._cell_se, self._cell_crit = multiplier_bootstrap(cell_map.cluster_sums(), self.n_units, boot)

    def _cell_map(self) -> IFMap:
        k, n_coh = self._cells.att.size, self._cells.cohorts.size
        return IFMap(self._cells, self._wd, np.eye(k), np.zeros((k, n_coh)), self._tuning.if_chunk)

    # -- aggregations
    def aggregate(self, kind: AggKind = "dynamic") -> CSAggregate:
        """Aggregate the ATT(g,t): ``"simple"``, ``"dynamic"``, ``"group"`` or ``"calendar"``."""
        if kind not in self._aggs:
            self._aggs[kind] = aggregate(kind, self._cells, self._wd, self.window, self.alpha, self._boot,
                                          self._tuning.if_chunk, self.min_e, self.max_e, self.df)
        return self._aggs[kind]

    @property
    def att(self) -> float:
        """The simple (group-size weighted) overall ATT."""
        return self.aggregate("simple").estimate

    def att_gt(self) -> pl.DataFrame:
        """Group-time effects: ``cohort, time, estimate, se``."""
        c = self._cells
        return pl.DataFrame(
            {"cohort": c.group, "time": c.time, "estimate": c.att, "se": self._cell_se}
        )

    @property
    def inf_gt(self) -> np.ndarray:
        """Influence functions of the ATT(g,t) (units x cells; ``se = sqrt(sum inf^2) / n``).

        Without covariates, computed from the outcomes on each access (units x
        cells floats; they are not kept with the result); with covariates, a
        copy of the stored ones."""
        return self._cell_map().matrix()

    def tidy(self) -> pl.DataFrame:
        """Event-study table: ``rel_time, estimate, se, ci_low, ci_high``.

        Intervals use the sup-t critical value when ``bootstrap=True`` (uniform
        band), else the normal one (t with G - 1 degrees of freedom with
        ``df="clusters"``).
        """
        return pl.DataFrame(
            {
                "rel_time": self.rel_time,
                "estimate": self.coef,
                "se": self.se,
                "ci_low": self.coef - self.crit * self.se,
                "ci_high": self.coef + self.crit * self.se,
            }
        )

    def pretrend_test(self) -> PretrendTest:
        """Joint Wald test that the pre-adoption event-time effects are all zero.

        Uses the event times ``< 0`` inside ``window`` (excluding any with zero
        variance, i.e. the universal reference period) and the analytic covariance;
        chi-squared reference (``test["stat"]``, ``["df"]``, ``["pvalue"]`` as before), or
        F(q, G - 1) with ``df="clusters"``.
        """
        pre = (self.rel_time < 0) & (np.diag(self.vcov) > ZERO_SE**2)
        if not pre.any():
            raise TreatmentError("no pre-adoption event time with positive variance to test")
        b = self.coef[pre]
        v = self.vcov[np.ix_(pre, pre)]
        rank = np.linalg.matrix_rank(v)
        stat = float(b @ np.linalg.pinv(v) @ b)
        return PretrendTest(stat, int(rank), self.df, self.rel_time[pre].tolist())

    def summary(self) -> str:
        """Printable summary (overall ATTs and the event study)."""
        lines = [
            "Callaway-Sant'Anna (2021)",
            f"control group: {self.control}   base period: {self.base_period}   "
            f"anticipation: {self.anticipation}   units: {self.n_units}   rows: {self.nobs}"
            + ("   (unbalanced panel)" if self.unbalanced else ""),
        ]
        if self.controls:
            lines.append(f"covariates: {', '.join(self.controls)}   estimator: {self.est_method}")
        for kind in ("simple", "dynamic", "group", "calendar"):
            a = self.aggregate(kind)
            lines.append(f"overall ATT ({kind:8s}): {a.estimate: .6f}  (se {a.se:.6f})")
        if self.single_cluster:
            lines.append(f"cohort(s) {self.single_cluster} rest on one cluster: their standard errors understate "
                         "the uncertainty (SingleClusterWarning)")
        lines.append(str(self.tidy()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CSResult(att={self.att:.6g}, n_units={self.n_units}, control={self.control!r})"

    def plot(self, path: str | None = None, *, ax: Any = None):
        """Event-study figure: estimates with intervals against event time.

        Returns the matplotlib Figure; saves it to ``path`` if given.
        """
        from ...plots.cs import plot_cs

        return plot_cs(self, path=path, ax=ax)


# --------------------------------------------------------------------------- entry points
def callaway_santanna(
    sd: StaggeredData,
    *,
    window: tuple[float, float] = (-5, 5),
    control: ControlGroup = "never",
    anticipation: int = 0,
    base_period: BasePeriod = "varying",
    allow_unbalanced_panel: bool = False,
    est_method: EstMethod = "dr",
    bootstrap: bool = False,
    biters: int = 999,
    multipliers: Literal["rademacher", "mammen"] = "rademacher",
    level: float = 0.95,
    seed: SeedLike = 0,
    n_jobs: int = 1,
    tuning: CSTuning = CSTuning(),
    min_e: float = -np.inf,
    max_e: float = np.inf,
    df: Literal["normal", "clusters"] = "normal",
) -> CSResult:
    """Callaway-Sant'Anna ATT(g,t), their aggregations and influence-function inference.

    Parameters
    ----------
    sd : StaggeredData
        From :func:`staggerlab.inference.did.staggered_data.prepare`. Units
        treated in the first period are dropped. Weights must be unit-level.
    window : (low, high)
        Event times reported by the dynamic aggregation (``rel_time``/``coef``).
        It only selects what is displayed: the overall dynamic ATT averages
        every event time ``>= 0`` in ``[min_e, max_e]``, as
        ``did::aggte(type="dynamic")``.
    min_e, max_e : float
        Smallest and largest event time the dynamic aggregation uses (default:
        all, as ``did::aggte``); the overall dynamic ATT is the mean of the
        event-time ATTs with ``max(0, min_e) <= e <= max_e``.
    control : {"never", "notyet"}
        Comparison group: never-treated units, or never- plus not-yet-treated.
    anticipation : int
        Periods of anticipation (shift of the base period).
    base_period : {"varying", "universal"}
        See the module docstring.
    allow_unbalanced_panel : bool
        False (``did``'s default too): an unbalanced panel is balanced by
        dropping the units not observed in every period (with a
        ``MissingValueWarning`` saying how many). True: every unit is kept
        and each ATT(g,t) uses the rows observed in its two periods (``did``'s
        ``allow_unbalanced_panel=TRUE``; the estimator is defined in the module
        docstring). No effect on a balanced panel. Not available with
        covariates (``CovariatesNotSupportedError`` on an unbalanced panel).
    est_method : {"dr", "ipw", "reg"}
        With covariates (``sd.controls``): the 2x2 estimator under conditional
        parallel trends (doubly robust, normalised inverse probability
        weighting, outcome regression; see
        :mod:`staggerlab.inference.did.cs_covariates`). Ignored without
        covariates (all three are then the unconditional 2x2).
    bootstrap : bool
        Multiplier bootstrap (``biters`` draws, ``multipliers`` weights on the
        cluster sums of the influence functions): bootstrap SEs and uniform
        bands. Draws are made in fixed blocks seeded by block index, so the
        result does not depend on ``n_jobs``.
    level : float
        Confidence level of the intervals.
    df : {"normal", "clusters"}
        Reference distribution of the analytic intervals, p-values and the
        pre-trend test: ``"normal"`` (default, as ``did``) or ``"clusters"``,
        t with G - 1 degrees of freedom (G clusters; F(q, G - 1) for the
        pre-trend test). With few clusters the normal intervals under-cover:
        about 91-92% at 95% with 50 clusters (AR(1) errors, heterogeneous
        effects), because the influence-function SE is about 0.90 of the
        true SD; ``"clusters"`` corrects part of that. Bootstrap bands
        (``bootstrap=True``) are unaffected.
    seed : int, Generator, SeedSequence or None
    n_jobs : int
        joblib workers for the bootstrap blocks.
    tuning : CSTuning
        Memory bounds; the numbers do not depend on them.

    Returns
    -------
    CSResult
    """
    if not isinstance(sd, StaggeredData):
        raise ArgumentTypeError("callaway_santanna takes a StaggeredData (see staggered_data.prepare) or use cs(data, ...)")
    if est_method not in EST_METHODS:
        raise ArgumentError(f"est_method must be 'dr', 'ipw' or 'reg', got {est_method!r}")
    if control not in ("never", "notyet"):
        raise ArgumentError(f"control must be 'never' or 'notyet', got {control!r}")
    if base_period not in ("varying", "universal"):
        raise ArgumentError(f"base_period must be 'varying' or 'universal', got {base_period!r}")
    alpha = alpha_of(level)
    if int(anticipation) != anticipation or anticipation < 0:
        raise ArgumentError(f"anticipation must be a non-negative integer, got {anticipation}")
    if len(window) != 2 or window[0] > window[1]:
        raise ArgumentError(f"window must be (low, high) with low <= high, got {window}")
    if not (min_e <= max_e):
        raise ArgumentError(f"min_e must not exceed max_e, got min_e={min_e}, max_e={max_e}")
    if df not in ("normal", "clusters"):
        raise ArgumentError(f"df must be 'normal' or 'clusters', got {df!r}")
    boot = None
    if bootstrap:
        if int(biters) < 2:
            raise ArgumentError("biters must be at least 2")
        if multipliers not in ("rademacher", "mammen"):
            raise ArgumentError(f"multipliers must be 'rademacher' or 'mammen', got {multipliers!r}")
        boot = BootSpec(int(biters), multipliers, resolve_entropy(seed), n_jobs, float(alpha), tuning.boot_multipliers)
    if not isinstance(allow_unbalanced_panel, (bool, np.bool_)):
        raise ArgumentTypeError(f"allow_unbalanced_panel must be True or False, got {allow_unbalanced_panel!r}")
    wd = to_wide(sd, int(anticipation), bool(allow_unbalanced_panel))
    # the covariate 2x2s multiply skinny matrices (units x covariates): a second
    # BLAS thread buys little and, on a busy machine, contention costs up to 20x
    with SERIAL_BLAS:
        cells = att_gt(wd, control, int(anticipation), base_period, est_method)
    n_clusters = wd.g.size if wd.by_unit else int(wd.cluster.max()) + 1
    res = CSResult(
        cells, wd, window=window, control=control, anticipation=anticipation,
        base_period=base_period, level=level, boot=boot, tuning=tuning, min_e=min_e, max_e=max_e,
        df=n_clusters - 1 if df == "clusters" else None, est_method=est_method if sd.controls else None,
    )
    res.single_cluster = _single_cluster_cohorts(wd)
    if res.single_cluster:
        warnings.warn(
            f"cohort(s) {res.single_cluster} have all their units in one cluster ({sd.caller(sd.cluster)!r}): "
            "their ATT(g,t) are that cluster's own contrasts, whose noise the influence-function standard errors "
            "cannot see, so those (and the aggregates that use them) understate the uncertainty",
            SingleClusterWarning, stacklevel=3)
    return res


def _single_cluster_cohorts(wd: Wide) -> list[int]:
    """The treated cohorts whose units all lie in one cluster."""
    cl = np.arange(wd.g.size) if wd.by_unit else wd.cluster
    return [int(g) for g in np.unique(wd.g[wd.g > 0]) if np.unique(cl[wd.g == g]).size == 1]


def cs(
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
    **options: Any,
) -> CSResult:
    """Callaway-Sant'Anna on a frame: ``prepare`` the data, then :func:`callaway_santanna`.

    ``cohort`` is the adoption-period column (0 = never treated; missing: never treated, with a warning), or give
    ``treat`` (an absorbing 0/1 treatment). ``controls`` are covariates of
    conditional parallel trends (their values in the earlier period of each
    2x2; ``est_method`` chooses the estimator). Remaining keywords (``window``,
    ``control``, ``anticipation``, ``base_period``, ``allow_unbalanced_panel``, ``est_method``, ``bootstrap``,
    ``biters``, ``multipliers``, ``level``, ``seed``, ``n_jobs``, ``tuning``, ``min_e``,
    ``max_e``, ``df``) go to
    :func:`callaway_santanna`.

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.did.cs import cs
    >>> df = sl.simulate.staggered(200, 8, seed=1)
    >>> res = cs(df, y="y", unit="unit", time="time", cohort="cohort")
    >>> res.aggregate("simple").estimate  # doctest: +SKIP
    """
    sd = prepare(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat, controls=controls,
                 cluster=cluster, weights=weights, rows=False)
    return callaway_santanna(sd, **options)
