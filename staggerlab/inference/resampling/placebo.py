"""Placebo (randomization inference) battery: the entry points :func:`placebo`
and :func:`placebo_timing`, their results, and the p-value with its exact
(Clopper-Pearson) Monte Carlo interval.

The draws come from ``placebo_sampler``, their statistics from the exact
refit algebra of ``placebo_engines``, run block by seeded block in
``placebo_blocks``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import stats as sstats

from ..._parallel import run_blocks
from ..._seed import SeedLike, as_seedsequence, block_generator
from ..._validate import check_alternative, check_draws, check_level
from ...errors import ArgumentError, FormulaError, PanelError, StaggerlabWarning, TreatmentError, VcovError
from ...kernels import placebo as kp
from ...panels.adoption import adoption_times
from ...panels.panel import check_columns, factorize_with_ids
from ..distributed.feols import PartitionedFeols
from ..regression.compat import as_feols
from ..regression.feols import Feols
from ..regression.vcov import VcovSpec, ssc_factor
from ..results import Result
from .placebo_blocks import BLOCK_SIZE, SERIAL_BLAS, Context, blocks, run_block
from .placebo_engines import FastEngine, GeneralEngine
from .placebo_sampler import NEVER, Sampler
from .placebo_tuning import PlaceboTuning

__all__ = ["placebo", "placebo_timing", "PlaceboResult", "PlaceboTimingResult", "PlaceboTuning", "BLOCK_SIZE", "SCHEMES"]

SCHEMES = ("units", "timing", "units+timing", "iid")
#: relative tolerance under which a placebo statistic ties the observed one
#: (ties count as at least as extreme: the conservative choice).
TIE_RTOL = 1e-10

Scheme = Literal["units", "timing", "units+timing", "iid"]
Alternative = Literal["two-sided", "greater", "less"]


# --------------------------------------------------------------- the sample
def _int_periods(ids: np.ndarray, time: str) -> np.ndarray:
    """The distinct periods as int64, checked once (not row by row)."""
    if not (np.issubdtype(ids.dtype, np.number) or ids.dtype == np.bool_):
        raise PanelError(f"time column {time!r} must be numeric (integer periods), got {ids.dtype}")
    if np.issubdtype(ids.dtype, np.integer):
        t = ids.astype(np.int64)
    else:
        t = ids.astype(np.float64)
        if not np.all(t == np.round(t)):
            raise PanelError(f"time column {time!r} must hold integer periods")
        t = t.astype(np.int64)
    if (t == 0).any():
        raise PanelError(
            f"time column {time!r} has a period 0, but 0 marks 'untreated' in adoption times; "
            "shift the periods (e.g. time + 1)"
        )
    return t


def _ids_and_codes(d: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense int32 codes (half the memory of int64 on a 10-million-row panel)
    and ids of a column: the design's when it is a FE or cluster."""
    if name in d.fixef or name in d.clusters:
        return d.ids(name), d.codes(name).astype(np.int32)
    return factorize_with_ids(d.frame[name], np.int32)[::-1]


def _per_unit(values: np.ndarray, unit_N: np.ndarray, n_units: int, what: str, ids: np.ndarray) -> np.ndarray:
    """The value each unit has on all of its rows (raise if it varies)."""
    first = np.empty(n_units, dtype=values.dtype)
    first[unit_N] = values
    bad = first[unit_N] != values
    if bad.any():
        raise TreatmentError(f"{what} varies within unit {ids[unit_N[np.flatnonzero(bad)[0]]]!r}; it must be unit-level")
    return first


def _adoption_from_treatment(treat_N: np.ndarray, unit_N: np.ndarray, time_N: np.ndarray, n_units: int,
                             ids: np.ndarray, param: str) -> np.ndarray:
    g = adoption_times(treat_N, time_N, column=param, units=ids, unit_codes=unit_N).g
    if (g > 0).all() and bool(kp.always_treated(unit_N, time_N, g)):
        raise TreatmentError(f"treatment {param!r} never varies (always 1); nothing to permute")
    return g


def _codes(values: Any) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].astype(np.int64).ravel()


# ------------------------------------------------------------------- result
def tie_count(s: np.ndarray, observed: float, alternative: str) -> int:
    """Number of statistics ``s`` at least as extreme as ``observed`` (ties within :data:`TIE_RTOL` count)."""
    tol = TIE_RTOL * max(abs(observed), 1e-300)
    if alternative == "two-sided":
        return int((np.abs(s) >= abs(observed) - tol).sum())
    if alternative == "greater":
        return int((s >= observed - tol).sum())
    return int((s <= observed + tol).sum())


def clopper_pearson(count: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion ``count / n``."""
    a = 1.0 - check_level(level)
    lo = 0.0 if count == 0 else float(sstats.beta.ppf(a / 2, count, n - count + 1))
    hi = 1.0 if count == n else float(sstats.beta.ppf(1 - a / 2, count + 1, n - count))
    return lo, hi


@dataclass(eq=False)
class PlaceboResult(Result):
    """Result of :func:`placebo`.

    Attributes
    ----------
    observed : float
        The statistic of the actual assignment (from the fit).
    statistics : ndarray
        One statistic per placebo draw (NaN if a draw's treatment is collinear
        with the FEs/controls; such draws are left out of the p-value).
    units : ndarray
        Unit ids in the column order of :attr:`assignments`.
    pvalue : float
        ``(1 + count) / (1 + draws)``, count = draws at least as extreme.
    pvalue_ci : tuple of float
        Exact Clopper-Pearson interval (at ``level``) of the Monte Carlo
        p-value ``count / draws``.
    count : int
        Number of draws at least as extreme as the observed statistic.
    """

    param: str
    stat: str
    scheme: str
    alternative: str
    observed: float
    statistics: np.ndarray
    units: np.ndarray
    pvalue: float
    pvalue_ci: tuple[float, float]
    count: int
    n_valid: int
    level: float
    method: str
    _ctx: Context = field(repr=False)
    _draws: int = field(repr=False)

    @cached_property
    def assignments(self) -> np.ndarray | None:
        """``draws x units`` int64 placebo adoption times (0 = untreated).

        Regenerated from the seed on first access (the run itself never holds
        them, so memory stays bounded by the block size). None for the
        ``"iid"`` scheme, whose draws are row-level (see :meth:`column`).
        """
        if self._ctx.sampler is None:
            return None
        return np.vstack([self._ctx.sampler.draw(block_generator(self._ctx.seed, i), s) for i, s in blocks(self._draws)])

    def column(self, draw: int) -> np.ndarray:
        """The placebo treatment column of ``draw`` on the fit's estimation rows."""
        i, j = divmod(int(draw), BLOCK_SIZE)
        size = blocks(self._draws)[i][1]
        rng = block_generator(self._ctx.seed, i)
        if self._ctx.sampler is None:
            return self._ctx.iid_rows(rng, j + 1)[:, j]
        for start, pick, lidx in self._ctx.sampler.slabs(rng, size):
            if j < start + pick.shape[0]:
                a = self._ctx.sampler.dense(pick[j - start : j - start + 1], lidx[j - start : j - start + 1])[0]
                break
        adopt = np.where(a == 0, NEVER, a)
        return (self._ctx.time_N >= adopt[self._ctx.unit_N]).astype(np.float64)

    @property
    def draws(self) -> int:
        """Number of placebo draws."""
        return self._draws

    def tidy(self) -> pl.DataFrame:
        """One row: ``term, statistic, scheme, observed, pvalue, ci_low, ci_high, draws, ...``."""
        s = self.statistics[np.isfinite(self.statistics)]
        return pl.DataFrame(
            {
                "term": [self.param],
                "statistic": [self.stat],
                "scheme": [self.scheme],
                "alternative": [self.alternative],
                "observed": [self.observed],
                "pvalue": [self.pvalue],
                "ci_low": [self.pvalue_ci[0]],
                "ci_high": [self.pvalue_ci[1]],
                "draws": [self._draws],
                "valid_draws": [self.n_valid],
                "placebo_mean": [float(s.mean()) if s.size else np.nan],
                "placebo_sd": [float(s.std(ddof=1)) if s.size > 1 else np.nan],
                "method": [self.method],
            }
        )

    def summary(self) -> str:
        """A printable report."""
        s = self.statistics[np.isfinite(self.statistics)]
        q = np.quantile(s, [0.025, 0.5, 0.975]) if s.size else [np.nan] * 3
        return "\n".join(
            [
                f"Placebo test for {self.param} ({'t statistic' if self.stat == 't' else 'coefficient'}), "
                f"scheme {self.scheme!r}, {self._draws:,} draws ({self.n_valid:,} valid), {self.method} path",
                f"Observed: {self.observed:.5g}",
                f"Placebo distribution: 2.5% {q[0]:.4g}, median {q[1]:.4g}, 97.5% {q[2]:.4g}",
                f"p-value ({self.alternative}): {self.pvalue:.4f}  "
                f"[{self.level:.0%} Clopper-Pearson MC interval {self.pvalue_ci[0]:.4f}, {self.pvalue_ci[1]:.4f}]"
                f"  ({self.count} of {self.n_valid} draws at least as extreme)",
            ]
        )

    def __repr__(self) -> str:
        return self.summary()

    def plot(self, path: str | None = None, **kwargs: Any) -> Any:
        """Histogram/density of the placebo statistics with the observed value marked."""
        from ...plots.placebo import plot_placebo

        return plot_placebo(self.statistics, self.observed, stat=self.stat, param=self.param,
                            pvalue=self.pvalue, alternative=self.alternative, scheme=self.scheme,
                            n_extreme=self.count, path=path,
                            **kwargs)


# --------------------------------------------------------------------- API
def _setup(fit: Feols, param: str, unit: str | None, time: str | None, cohort: str | None):
    d = fit.design
    if param not in d.regressors:
        raise FormulaError(f"{param!r} is not a coefficient of the fit (coefficients: {d.regressors})")
    unit = unit if unit is not None else (d.fixef[0] if len(d.fixef) >= 1 else None)
    time = time if time is not None else (d.fixef[1] if len(d.fixef) >= 2 else None)
    if unit is None or time is None:
        raise PanelError("the fit has fewer than two fixed effects; pass unit= and time= explicitly")
    frame = d.frame
    check_columns(frame, [unit, time] + ([cohort] if cohort else []), "column")
    ids, unit_N = _ids_and_codes(d, unit)
    tvals, per_N = _ids_and_codes(d, time)
    tvals = _int_periods(tvals, time)
    time_N = tvals[per_N]
    if cohort is None:
        g_U = _adoption_from_treatment(d.column(param), unit_N, time_N, ids.size, ids, param)
    else:
        g_U = adoption_times(d.column(cohort) if cohort in d.columns else frame[cohort].cast(pl.Float64).to_numpy(),
                             time_N, column=cohort, units=ids, unit_codes=unit_N, cohort=True).g
    return unit, time, ids, unit_N, time_N, g_U, per_N, tvals


def placebo(
    fit: Any,
    param: str = "treat",
    draws: int = 1000,
    scheme: Scheme = "units+timing",
    stat: Literal["t", "coef"] = "t",
    strata: str | None = None,
    cluster: str | None = None,
    cohort: str | None = None,
    unit: str | None = None,
    time: str | None = None,
    alternative: Alternative = "two-sided",
    seed: SeedLike = 0,
    n_jobs: int | None = 1,
    backend: str | None = None,
    *,
    level: float = 0.95,
    method: Literal["auto", "fast", "general"] = "auto",
    tuning: PlaceboTuning = PlaceboTuning(),
) -> Any:
    """Randomization inference with design-respecting placebo assignments.

    Parameters
    ----------
    fit : staggerlab Feols, PartitionedFeols, pyfixest Feols or EventStudyResult
        The fitted TWFE model; ``param`` is its (absorbing, staggered) treatment.
        A TWFE or Sun-Abraham event study is refitted whole for every draw by
        :func:`~staggerlab.inference.resampling.es_placebo.event_study_placebo`
        (coefficients as statistics; ``draws``, ``scheme``, ``alternative``,
        ``seed``, ``n_jobs``, ``backend`` and ``level`` apply).
        A partitioned fit (``feols`` of a dask DataFrame or parquet directory)
        runs the unit-table algebra partition by partition, with the same
        draws for the same seed (schemes units, timing, units+timing; stat
        ``coef``, or ``t`` with an iid or CRV1-by-unit fit; ``method="partitioned"``).
    param : str
        The treatment coefficient.
    draws : int
        Number of placebo draws.
    scheme : {"units", "timing", "units+timing", "iid"}
        ``units``: permute adoption times over all units (number treated and
        cohort sizes kept); ``timing``: permute adoption times among the
        treated units; ``units+timing`` (the study's): draw as many treated
        units as there are and give each an adoption time drawn from the
        treated units' adoption times; ``iid``: draw every row's treatment
        i.i.d. from the column's empirical distribution (as pyfixest's
        ``ritest``; for comparison only).
    stat : {"t", "coef"}
        Studentized (with the fit's vcov; recommended) or raw coefficient.
    strata : str, optional
        Unit-level column: assignment is permuted within strata.
    cluster : str, optional
        Column grouping units: assignment at the cluster level (all units of a
        cluster share a draw; the actual adoption time must be cluster-level).
    cohort : str, optional
        Unit-level column of adoption times (0 = never); by default adoption
        is the first period where ``param`` is 1.
    unit, time : str, optional
        Unit and period columns; default: the fit's first and second FE.
    alternative : {"two-sided", "greater", "less"}
        Two-sided compares absolute values.
    seed : int, Generator, SeedSequence or None
    n_jobs, backend
        Passed to joblib through ``run_blocks``; results do not depend on them.
    level : float
        Level of the Clopper-Pearson interval of the p-value.
    method : {"auto", "fast", "general"}
        ``auto`` uses the unit-table path when it applies.
    tuning : PlaceboTuning
        Memory bounds of the engines; the statistics do not depend on them.

    Returns
    -------
    PlaceboResult

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.resampling.placebo import placebo
    >>> df = sl.simulate.staggered(300, 8, seed=1)
    >>> fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "unit"})
    >>> ri = placebo(fit, draws=199, seed=1)
    >>> ri.pvalue < 0.01
    True
    """
    from ..did.event_study import EventStudyResult

    if isinstance(fit, EventStudyResult):
        odd = [n for n, v, dv in (("param", param, "treat"), ("stat", stat, "t"), ("strata", strata, None),
                                  ("cluster", cluster, None), ("cohort", cohort, None), ("unit", unit, None),
                                  ("time", time, None), ("method", method, "auto")) if v != dv]
        if odd:
            raise ArgumentError(f"{odd} do not apply to an event study (its coefficients are refitted)")
        from .es_placebo import event_study_placebo

        return event_study_placebo(fit, draws, scheme, alternative, seed, n_jobs, backend, level=level)
    if isinstance(fit, PartitionedFeols):
        from ..distributed.resampling import placebo_partitioned

        return placebo_partitioned(fit, param, draws, scheme, stat, strata, cluster, cohort, alternative, seed,
                                   level, tuning)
    fit = as_feols(fit)
    if scheme not in SCHEMES:
        raise ArgumentError(f"unknown scheme {scheme!r}; use one of {SCHEMES}")
    if stat not in ("t", "coef"):
        raise ArgumentError(f"stat must be 't' or 'coef', got {stat!r}")
    check_alternative(alternative)
    check_level(level)
    if method not in ("auto", "fast", "general"):
        raise ArgumentError(f"method must be 'auto', 'fast' or 'general', got {method!r}")
    draws = check_draws(int(draws))
    d = fit.design
    spec = fit.vcov_spec
    if stat == "t" and spec.kind == "CRV3":
        raise VcovError("placebo t statistics support iid, hetero and CRV1; refit with another vcov (fit.with_vcov)")
    unit, time, ids, unit_N, time_N, g_U, per_N, tvals = _setup(fit, param, unit, time, cohort)
    if stat == "t" and not np.isfinite(fit.tstat()[param]):
        raise VcovError(f"the fit's t statistic of {param!r} is undefined (its {spec.label} variance is not "
                        "positive), so there is nothing to compare the draws with; use stat='coef', or refit with "
                        "one-way clustering (fit.with_vcov)")
    n_units = ids.size
    frame = d.frame
    ss = as_seedsequence(seed)

    sampler = None
    p_iid = 0.0
    if scheme == "iid":
        if strata is not None or cluster is not None:
            raise ArgumentError("the 'iid' scheme is row-level; strata= and cluster= apply to the other schemes")
        p_iid = float(np.mean(d.column(param)))
    else:
        if cluster is not None:
            check_columns(frame, [cluster], "cluster column")
            ent_U = _per_unit(_codes(frame[cluster].to_numpy()), unit_N, n_units, f"cluster {cluster!r}", ids)
            n_ent = int(ent_U.max()) + 1
            g_E = _per_unit(g_U, ent_U, n_ent, "the adoption time (cluster-level assignment)", np.arange(n_ent))
        else:
            ent_U, n_ent, g_E = np.arange(n_units), n_units, g_U
        if strata is not None:
            check_columns(frame, [strata], "strata column")
            st_U = _per_unit(_codes(frame[strata].to_numpy()), unit_N, n_units, f"strata {strata!r}", ids)
            st_E = _per_unit(st_U, ent_U, n_ent, f"strata {strata!r} (within cluster)", np.arange(n_ent))
        else:
            st_E = np.zeros(n_ent, dtype=np.int64)
    gvals = np.unique(g_U[g_U != 0])
    if scheme != "iid":
        sampler = Sampler(scheme, g_E, st_E, ent_U, gvals, tuning)

    df_k = d.df_k(spec)
    engine: Any = None
    fast = False
    if method != "general" and scheme != "iid":
        reason = _fast_blocker(d, unit, time, spec, stat)
        if reason is None:
            # period codes are small: the narrowest integer type saves N-sized memory
            per_N = per_N.astype(np.min_scalar_type(-max(tvals.size, 1)))
            cl_U = None
            adj = 1.0
            if stat == "t" and spec.kind == "CRV1":
                cl_U = _per_unit(d.clusters[spec.clusters[0]], unit_N, n_units, "cluster", ids)
                G = int(cl_U.max()) + 1
                adj = ssc_factor("CRV1", d.nobs, df_k, G)
            try:
                # the tables' products on one BLAS thread too: on a busy machine
                # a multi-threaded product waits for a descheduled thread
                with SERIAL_BLAS:
                    engine = FastEngine(fit, param, unit_N, n_units, per_N, tvals.size,
                                        np.searchsorted(tvals, gvals).astype(np.int64), cl_U, adj, d.nobs - df_k, stat,
                                        sampler, tuning)
                fast = True
            except np.linalg.LinAlgError as err:
                reason = str(err)
        if reason is not None and method == "fast":
            raise ArgumentError(f"the fast path does not apply: {reason}")
    if engine is None:
        engine = GeneralEngine(fit, param, spec, df_k, stat)

    ctx = Context(ss, scheme, sampler, engine, fast, unit_N, time_N, p_iid)
    # held here too, so that in-process backends (threads) share one limit set
    # and restored by this thread, after every block
    with SERIAL_BLAS:
        parts = run_blocks(run_block, blocks(draws), shared=ctx, n_jobs=n_jobs, backend=backend, desc="placebo")
    statistics = np.concatenate(parts)
    observed = float(fit.coef()[param] if stat == "coef" else fit.tstat()[param])
    valid = np.isfinite(statistics)
    n_valid = int(valid.sum())
    if n_valid < draws:
        two_way = stat == "t" and spec.kind == "CRV1" and len(spec.clusters) > 1
        warnings.warn(
            f"{draws - n_valid} placebo draw(s) gave a treatment collinear with the fixed effects/controls"
            + (" or a negative two-way cluster variance (an undefined t)" if two_way else "")
            + " and were left out of the p-value",
            StaggerlabWarning,
            stacklevel=2,
        )
    count = tie_count(statistics[valid], observed, alternative)
    ci = clopper_pearson(count, n_valid, level) if n_valid else (np.nan, np.nan)
    # engines hold large tables that the result does not need after the run
    ctx.engine = None
    return PlaceboResult(
        param=param, stat=stat, scheme=scheme, alternative=alternative, observed=observed,
        statistics=statistics, units=ids, pvalue=(1 + count) / (1 + n_valid), pvalue_ci=ci, count=count,
        n_valid=n_valid, level=level, method="fast" if fast else "general", _ctx=ctx, _draws=draws,
    )


def _fast_blocker(d: Any, unit: str, time: str, spec: VcovSpec, stat: str) -> str | None:
    """Why the unit-table path cannot be used (None if it can)."""
    if d.weights_name is not None:
        return "weighted fit"
    if len(d.fixef) != 2 or set(d.fixef) != {unit, time}:
        return f"the FEs {d.fixef} are not exactly unit + time ({unit} + {time})"
    if stat == "coef" or spec.kind == "iid":
        return None
    if spec.kind != "CRV1" or len(spec.clusters) != 1:
        return f"vcov {spec.label} (fast path: iid or one-way CRV1)"
    if not d.nesting(spec.clusters)[d.fixef.index(unit)]:  # the fit's nesting facts
        return f"units are not nested in the clusters {spec.clusters[0]!r}"
    return None


# ------------------------------------------------------- false adoption date
@dataclass(eq=False)
class PlaceboTimingResult(Result):
    """Result of :func:`placebo_timing` (a refit on pre-treatment rows)."""

    param: str
    shift: int
    estimate: float
    se: float
    tstat: float
    pvalue: float
    nobs: int
    fit: Feols = field(repr=False)

    def tidy(self) -> pl.DataFrame:
        """One row: ``term, shift, estimate, se, tstat, pvalue, nobs``."""
        return pl.DataFrame({"term": [self.param], "shift": [self.shift], "estimate": [self.estimate],
                             "se": [self.se], "tstat": [self.tstat], "pvalue": [self.pvalue], "nobs": [self.nobs]})

    def summary(self) -> str:
        """A printable report."""
        return (f"False adoption date test for {self.param}: adoption moved {-self.shift} period(s) earlier, "
                f"pre-treatment rows only ({self.nobs:,} obs, vcov {self.fit.vcov_spec.label})\n"
                f"estimate {self.estimate:.5g}  se {self.se:.5g}  t {self.tstat:.3f}  p {self.pvalue:.4f}")

    def __repr__(self) -> str:
        return self.summary()


def placebo_timing(
    fit: Any,
    shift: int = -2,
    *,
    param: str = "treat",
    cohort: str | None = None,
    unit: str | None = None,
    time: str | None = None,
) -> PlaceboTimingResult:
    """False adoption date test: move adoption ``-shift`` periods earlier.

    Keeps the never-treated units and the treated units' pre-treatment rows,
    sets the placebo treatment ``1[t >= g_i + shift]`` (in periods of the
    panel) and refits the fit's formula with its vcov and weights.

    Parameters
    ----------
    fit : staggerlab Feols or pyfixest Feols
    shift : int
        Negative number of periods to move each treated unit's adoption.
    param, cohort, unit, time
        As in :func:`placebo`.

    Returns
    -------
    PlaceboTimingResult
    """
    fit = as_feols(fit)
    shift = int(shift)
    if shift >= 0:
        raise ArgumentError(f"shift must be negative (periods earlier), got {shift}")
    unit, time, ids, unit_N, time_N, g_U, _, tvals = _setup(fit, param, unit, time, cohort)
    d = fit.design
    g_N = g_U[unit_N]
    treated = g_N != 0
    keep = ~treated | (time_N < g_N)
    pos = np.searchsorted(tvals, g_U) + shift
    fake_U = np.where(g_U != 0, tvals[np.clip(pos, 0, tvals.size - 1)], NEVER)
    fake_U = np.where((g_U != 0) & (pos < 0), np.iinfo(np.int64).min, fake_U)
    D = (time_N >= fake_U[unit_N]).astype(np.float64)
    if not (D[keep] == 1).any():
        raise TreatmentError(f"no pre-treatment row gets the placebo treatment with shift={shift}")
    # the fit's validated columns and codes, restricted: nothing is parsed, checked or factorized again
    sub = d.restrict(keep, {param: D})
    y = sub.column(fit.depvar)
    yw = np.ascontiguousarray(sub.demean(y.reshape(-1, 1))[:, 0])  # as feols demeans its outcome block
    refit = Feols(sub, fit.depvar, yw, y, fit.vcov_spec, fit.formula)
    if param not in refit.coefnames:
        raise TreatmentError(f"the placebo treatment is collinear with the fixed effects (shift={shift})")
    return PlaceboTimingResult(param=param, shift=shift, estimate=refit.coef()[param], se=refit.se()[param],
                               tstat=refit.tstat()[param], pvalue=refit.pvalue()[param], nobs=refit.nobs, fit=refit)
