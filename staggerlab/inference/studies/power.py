"""Design-based power on the user's own panel (:func:`power`).

The observed outcome serves as the untreated potential outcome. Adoption is
re-assigned with the placebo schemes (the draws of
:func:`~staggerlab.inference.resampling.placebo.placebo`, same seed, same
draws), a known effect ``delta * h`` is added to the re-assigned treated cells
and each estimator is re-estimated: the rejection rate over draws is the power
of the design at ``delta`` (Burlig, Preonas and Woerman 2020).
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl
from scipy import stats

from ..._seed import SeedLike, as_seedsequence, block_seed
from ..._validate import alpha_of, check_draws, check_level
from ...errors import ArgumentError, ArgumentTypeError, SingleClusterWarning, StaggerlabWarning
from ...panels.panel import check_columns, to_polars
from ..regression.feols import feols
from ..regression.formula import Formula, quote
from ..regression.vcov import nested_in
from ..resampling.placebo import placebo
from ..resampling.placebo_blocks import SERIAL_BLAS
from .power_effects import PRESETS, RowDesign, effect_path
from .power_refit import REFIT_ESTIMATORS, RefitSpec, hypotheses, refit_curves, resolve
from .power_result import PowerResult, curve_rows
from .power_twfe import dynamic_curve, homogeneous_curve

__all__ = ["power", "PowerResult", "SCHEMES"]

SCHEMES = ("units", "timing", "units+timing")
#: default grid: this many sizes from 0 to DEFAULT_SPAN placebo s.d. of the TWFE coefficient
DEFAULT_SIZES, DEFAULT_SPAN = 11, 4.0


def power(
    data: Any,
    *,
    y: str,
    unit: str,
    time: str,
    treat: str | None = None,
    cohort: str | None = None,
    controls: Sequence[str] = (),
    cluster: str | None = None,
    estimators: str | Sequence[str] = ("twfe",),
    effects: float | Sequence[float] | str | Callable[..., Any] = "homogeneous",
    sizes: Sequence[float] | None = None,
    draws: int = 1000,
    scheme: str = "units+timing",
    strata: str | None = None,
    assign_by: str | None = None,
    level: float = 0.95,
    seed: SeedLike = 0,
    n_jobs: int | None = 1,
    backend: str | None = None,
    boot_draws: int = 199,
    inner_draws: int = 199,
) -> PowerResult:
    """Power curves, minimum detectable effects, size, bias and coverage of a design.

    Parameters
    ----------
    data : polars/pandas DataFrame or Panel
    y, unit, time : str
        Outcome (used as the untreated potential outcome), unit and integer period columns.
    treat, cohort : str
        Exactly one: the observed absorbing 0/1 treatment, or the adoption-period
        column (0 or null = never). Only the observed adoption times and their
        distribution matter: they are what the schemes re-assign.
    controls : sequence of str
        Time-varying controls (TWFE, imputation, Sun-Abraham, dynamic TWFE;
        Callaway-Sant'Anna runs unconditionally).
    cluster : str, optional
        Cluster column of every standard error (default ``unit``).
    estimators : str or sequence of str
        ``"twfe"`` (exact, no refit), ``"twfe+wildboot"``, ``"twfe+placebo"``,
        ``"imputation"``, ``"sunab"``, ``"sunab+crv1"``, ``"event_study"``, ``"cs"``.
        The null each tests is in ``PowerResult.hypotheses``: the TWFE coefficient
        (t test with CRV1, G - 1 df; or wild cluster bootstrap p-value; or the
        placebo p-value of the sharp null), or the overall ATT
        (``aggregate("simple")``) of the staggered estimators; all two-sided at
        ``1 - level``. ``"sunab"`` tests with the CRV3 (leave-one-cluster-out
        jackknife) standard error and G - 1 df, which needs every unit within one
        cluster: the CRV1 t test (``"sunab+crv1"``, fixest's) over-rejects at zero
        effect on the built-in panel (0.067, MC s.e. 0.006, 2,000 draws; CRV3 0.051).
    effects : float, sequence of float, {"homogeneous", "ramp", "heterogeneous"} or callable
        Numbers: the effect sizes of a homogeneous effect. A preset or a callable
        ``f(event_time, cohort, unit) -> scale``: the effect path (see
        :func:`~staggerlab.inference.studies.power_effects.effect_path`), sized by ``sizes``.
    sizes : sequence of float, optional
        Effect sizes ``delta`` (the effect added is ``delta * h``). Default: 11
        sizes from 0 to 4 placebo standard deviations of the TWFE coefficient.
        A zero size is always added (the design's size).
    draws : int
        Placebo assignments (the same ones for every estimator and size).
    scheme : {"units", "timing", "units+timing"}
        As in :func:`~staggerlab.inference.resampling.placebo.placebo`.
    strata : str, optional
        Unit-level column: assignment within strata.
    assign_by : str, optional
        Column grouping units that share one assignment (cluster-level assignment).
    level : float
        Tests at ``1 - level``, intervals (coverage) at ``level``.
    seed : int, Generator, SeedSequence or None
    n_jobs, backend
        joblib workers and backend of the draw blocks; results do not depend on them.
    boot_draws, inner_draws : int
        Bootstrap draws of ``twfe+wildboot``, placebo draws of ``twfe+placebo``
        (per re-assigned panel and effect size: these two refit everything).

    Returns
    -------
    PowerResult

    Notes
    -----
    TWFE is exact without refits: with a homogeneous effect the coefficient
    shifts by ``delta`` and the residuals do not change, so one placebo run
    gives the curve; other paths use the linearity of the coefficient and the
    quadratic CRV1 meat in ``delta`` (:mod:`.power_twfe`). The staggered
    estimators are refitted per draw, with the per-draw shortcuts of
    :mod:`.power_refit` (each checked on a refit). The truth of a draw is the
    average added effect on its treated cells; ``bias`` and ``coverage`` refer to
    it (TWFE under dynamic effects estimates a different weighting).

    Examples
    --------
    >>> import staggerlab as sl
    >>> df = sl.simulate.paper_panel(seed=0)
    >>> pw = sl.power(df, y="NQPF", unit="firm", time="year", treat="IM", draws=200)
    >>> pw.mde("twfe").estimate > 0
    True
    """
    frame = to_polars(data)
    check_level(level)
    draws = check_draws(draws)
    check_draws(boot_draws, "boot_draws")
    check_draws(inner_draws, "inner_draws")
    if scheme not in SCHEMES:
        raise ArgumentError(f"unknown scheme {scheme!r}; use one of {SCHEMES}")
    if (treat is None) == (cohort is None):
        raise ArgumentTypeError("give exactly one of treat= (0/1 treatment) or cohort= (adoption period)")
    names = resolve(estimators)
    controls = tuple(controls)
    cluster = cluster or unit
    cols = [y, unit, time, *(c for c in (treat, cohort, strata, assign_by) if c), *controls, cluster]
    check_columns(frame, list(dict.fromkeys(cols)), "column")
    path_spec, sizes = _effects(effects, sizes)
    param = treat
    if cohort is not None:
        param = "_power_observed"
        g = pl.col(cohort).fill_null(0)
        frame = frame.with_columns(g.alias(cohort), ((g > 0) & (pl.col(time) >= g)).cast(pl.Float64).alias(param))
    keep = list(dict.fromkeys([y, unit, time, param, *controls, cluster,
                               *(c for c in (strata, assign_by, cohort) if c)]))
    with warnings.catch_warnings():
        # a treatment on one cluster shows in the study itself, as the tests' size at zero effect
        warnings.simplefilter("ignore", SingleClusterWarning)
        fit = feols(Formula.of(y, [param, *controls], [unit, time]), frame.select(keep), vcov={"CRV1": quote(cluster)})
    if "sunab" in names and not nested_in(fit.design.codes(unit), fit.design.codes(cluster)):
        raise ArgumentError(f"estimator 'sunab' tests with CRV3, which needs every unit ({unit!r}) within one "
                            f"cluster ({cluster!r}); use 'sunab+crv1' for its CRV1 t test")
    ss = as_seedsequence(seed)
    # with cohort=, its adoption periods are re-assigned (a unit need not be observed in its adoption period)
    opts = dict(param=param, draws=draws, scheme=scheme, strata=strata, cluster=assign_by, cohort=cohort, seed=ss,
                unit=unit, time=time, n_jobs=n_jobs, backend=backend)
    # one BLAS thread throughout: the placebo blocks run on one anyway, and
    # switching the thread count between its steps respawns BLAS threads
    # (tens of ms, more than the whole exact TWFE curve)
    with warnings.catch_warnings(), SERIAL_BLAS:
        # draws collinear with the FEs are counted in valid_draws instead
        warnings.simplefilter("ignore", StaggerlabWarning)
        coef = placebo(fit, stat="coef", **opts)
    if sizes is None:
        b = coef.statistics[np.isfinite(coef.statistics)]
        span = DEFAULT_SPAN * float(b.std(ddof=1))
        sizes = np.array([float(f"{v:.3g}") for v in np.linspace(0.0, span, DEFAULT_SIZES)])
    sizes = np.unique(np.r_[0.0, sizes])
    d = fit.design
    periods = np.unique(d.frame[time].to_numpy()).astype(np.int64)
    time_N = d.frame[time].to_numpy().astype(np.int64)
    rows = RowDesign(d.codes(unit).astype(np.int64), np.searchsorted(periods, time_N), coef.units, periods)
    observed_U = _observed_adoption(rows, d.column(param), None if cohort is None else d.column(cohort))
    path = effect_path(path_spec, rows, observed_U)
    alpha = alpha_of(level)
    crit = float(stats.t.ppf(1 - alpha / 2, fit.df_t))

    frames, estimates, tstats = [], {}, {}
    for j, name in enumerate(names):
        if name == "twfe":
            if path.homogeneous:
                with warnings.catch_warnings(), SERIAL_BLAS:
                    warnings.simplefilter("ignore", StaggerlabWarning)
                    tst = placebo(fit, stat="t", **opts)
                curve, method = homogeneous_curve(coef.statistics, tst.statistics), "exact (one placebo run)"
            else:
                curve = dynamic_curve(fit, param, rows, path, coef.assignments, time_N, n_jobs, backend)
                method = "exact (quadratic CRV1 meat)"
            est, rej, cov, tru, t = curve.evaluate(sizes, crit)
        else:
            spec = RefitSpec(d.frame.select([c for c in keep if c != param]), d.column(y).copy(), unit, time, controls,
                             cluster, rows, path, coef.assignments, sizes, level, scheme, strata, assign_by,
                             boot_draws, inner_draws, REFIT_ESTIMATORS[name], block_seed(ss, 1 + j))
            est, rej, cov, tru, t, method = refit_curves(spec, n_jobs, backend)
        estimates[name] = est
        if t is not None:
            tstats[name] = t
        frames.append(pl.DataFrame(curve_rows(name, sizes, est, rej, cov, tru, method),
                                   schema_overrides={"coverage": pl.Float64}))
    curves = pl.concat(frames)
    bad = curves.filter(pl.col("valid_draws") < draws)
    if bad.height:
        lost = bad.group_by("estimator").agg((draws - pl.col("valid_draws").min()).alias("n"))
        warnings.warn("power: draws left out (collinear re-assigned treatment or a failed fit): "
                      + ", ".join(f"{e}: {n}" for e, n in lost.iter_rows()), StaggerlabWarning, stacklevel=2)
    return PowerResult(curves, level, draws, scheme, path.name, y, dict(hypotheses(names)), sizes, estimates, tstats,
                       coef.units, coef)


def _effects(effects: Any, sizes: Any) -> tuple[Any, np.ndarray | None]:
    """(path spec, sizes) from the ``effects`` and ``sizes`` arguments."""
    if isinstance(effects, (numbers.Real, np.ndarray)) or (
            isinstance(effects, Sequence) and not isinstance(effects, str)):
        if sizes is not None:
            raise ArgumentTypeError("effects= already gives the sizes; pass sizes= only with an effect path")
        sizes, effects = effects, "homogeneous"
    elif not (callable(effects) or effects in PRESETS):
        raise ArgumentError(f"effects must be sizes, one of {PRESETS} or a callable, got {effects!r}")
    if sizes is None:
        return effects, None
    arr = np.atleast_1d(np.asarray(sizes, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
        raise ArgumentError(f"effect sizes must be finite numbers, got {sizes!r}")
    return effects, arr


def _observed_adoption(rows: RowDesign, treat_N: np.ndarray, cohort_N: np.ndarray | None) -> np.ndarray:
    """Each unit's adoption period (0 = never): its cohort, or its first treated row's period."""
    if cohort_N is not None:
        out = np.zeros(rows.units.size, dtype=np.int64)
        out[rows.unit_N] = np.nan_to_num(cohort_N).astype(np.int64)
        return out
    first = np.full(rows.units.size, np.iinfo(np.int64).max)
    on = treat_N != 0
    np.minimum.at(first, rows.unit_N[on], rows.per_N[on])
    return np.where(first == np.iinfo(np.int64).max, 0, rows.periods[np.minimum(first, rows.periods.size - 1)])
