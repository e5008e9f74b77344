"""Power of estimators that are refitted on every re-assigned panel.

Every draw is a re-assigned panel: the placebo adoption periods become the
cohort column, ``delta * h`` is added to the outcome on the treated cells, and
the estimator runs on it. Estimators that report an estimate and a standard
error are linear in the outcome with a variance that is a quadratic form of
it (imputation, Sun-Abraham, dynamic TWFE, Callaway-Sant'Anna); for them the
whole curve of a draw follows from a few fits:

* ``shift`` (homogeneous paths): one fit; the aggregate moves by ``delta`` and
  its standard error does not change (the estimators' cells absorb a constant
  effect on the treated cells);
* ``quadratic``: three fits (``delta = 0, +s, -s``) give the estimate's slope and
  the variance's quadratic coefficients;
* ``refit``: one fit per effect size (p-value based tests, or when neither
  shortcut holds).

Each block's first draw is also fitted at an extra effect size; the cheapest
mode that reproduces it (relative 1e-8) is used for the block, so a shortcut
is never assumed. Blocks have a fixed size, so results do not depend on
``n_jobs``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import numpy as np
import polars as pl
from scipy import special

from ..._parallel import run_blocks
from ..._seed import block_seed
from ..._validate import alpha_of
from ...errors import ArgumentError
from ...panels.panel import fresh_name
from ..resampling.placebo_blocks import SERIAL_BLAS
from .power_effects import EffectPath, RowDesign

__all__ = ["RefitEstimator", "REFIT_ESTIMATORS", "refit_curves", "REFIT_BLOCK", "COHORT", "TREAT", "OUTCOME"]

#: draws per block of refits (fixed: the mode checks and seeds follow blocks)
REFIT_BLOCK = 25
#: relative tolerance of the shortcut checks
CHECK_RTOL = 1e-8
#: the re-assigned columns of a draw's panel (a name taken by a column of the data gets a suffix).
#: No leading "_": the estimators would rename such columns on every fit (``isolate_columns``)
COHORT, TREAT, OUTCOME = "power cohort", "power treat", "power outcome"


@dataclass(frozen=True)
class RefitEstimator:
    """An estimator of a power study refitted per draw.

    ``func(frame, spec, seed, truth)`` returns ``(estimate, se, df)`` when
    ``kind == "t"`` (two-sided t test, normal reference when ``df`` is None), or
    ``(estimate, reject, covers)`` when ``kind == "p"`` (``covers`` None: no interval).
    """

    name: str
    func: Callable[..., tuple]
    kind: str
    hypothesis: str


def _es(method: str, with_controls: bool) -> Callable[..., tuple]:
    def run(frame: pl.DataFrame, spec: "RefitSpec", seed: Any, truth: float) -> tuple:
        from ..did.event_study import EventStudyTuning, event_study

        kw: dict[str, Any] = {}
        if method == "sunab":  # the lean path: the same estimates, no dense N x k design
            kw["tuning"] = EventStudyTuning(lean_bytes=0)
        cohort, _, outcome = spec.names
        agg = event_study(frame, y=outcome, unit=spec.unit, time=spec.time, cohort=cohort,
                          controls=list(spec.controls) if with_controls else None, cluster=spec.cluster,
                          method=method, **kw).aggregate("simple")
        return agg.estimate, agg.se, agg.df

    run.__name__ = run.__qualname__ = f"power_{method}"
    return run


def _sunab_crv3(frame: pl.DataFrame, spec: "RefitSpec", seed: Any, truth: float) -> tuple:
    from .power_sunab import sunab_crv3

    return sunab_crv3(frame, OUTCOME, spec.unit, spec.time, COHORT, spec.controls, spec.cluster)


def _cs(frame: pl.DataFrame, spec: "RefitSpec", seed: Any, truth: float) -> tuple:
    from ..did.cs import cs

    cohort, _, outcome = spec.names
    agg = cs(frame, y=outcome, unit=spec.unit, time=spec.time, cohort=cohort, cluster=spec.cluster).aggregate("simple")
    return agg.estimate, agg.se, getattr(agg, "df", None)


def _twfe_fit(frame: pl.DataFrame, spec: "RefitSpec") -> Any:
    from ..regression.feols import feols
    from ..regression.formula import Formula, quote

    _, treat, outcome = spec.names
    return feols(Formula.of(outcome, [treat, *spec.controls], [spec.unit, spec.time]), frame,
                 vcov={"CRV1": quote(spec.cluster)})


def _twfe_wildboot(frame: pl.DataFrame, spec: "RefitSpec", seed: Any, truth: float) -> tuple:
    from ..resampling.wildboot import wildboot

    fit = _twfe_fit(frame, spec)
    alpha = alpha_of(spec.level)
    treat = spec.names[1]
    wb = wildboot(fit, param=treat, draws=spec.boot_draws, seed=seed, confint=False)
    # the test-inversion interval covers the truth iff the test of h0 = truth does not reject
    wb0 = wildboot(fit, param=treat, draws=spec.boot_draws, h0=truth, seed=seed, confint=False)
    return fit.coef()[treat], wb.pvalue < alpha, wb0.pvalue >= alpha


def _twfe_placebo(frame: pl.DataFrame, spec: "RefitSpec", seed: Any, truth: float) -> tuple:
    from ..resampling.placebo import placebo

    fit = _twfe_fit(frame, spec)
    treat = spec.names[1]
    ri = placebo(fit, param=treat, draws=spec.inner_draws, scheme=spec.scheme, strata=spec.strata,
                 cluster=spec.assign_by, seed=seed, unit=spec.unit, time=spec.time)
    return fit.coef()[treat], ri.pvalue <= alpha_of(spec.level), None


REFIT_ESTIMATORS: dict[str, RefitEstimator] = {
    "imputation": RefitEstimator("imputation", _es("imputation", True), "t",
                                 "overall ATT (imputation, simple aggregate) = 0, t test with CRV1 s.e."),
    # CRV3: the CRV1 t test of this aggregate over-rejects on the built-in panel (power_sunab)
    "sunab": RefitEstimator("sunab", _sunab_crv3, "t",
                            "overall ATT (Sun-Abraham, simple aggregate) = 0, t test with CRV3 (leave-one-cluster-"
                            "out jackknife) s.e., G - 1 df"),
    "sunab+crv1": RefitEstimator("sunab+crv1", _es("sunab", True), "t",
                                 "overall ATT (Sun-Abraham, simple aggregate) = 0, t test with CRV1 s.e. (as "
                                 "fixest's summary(agg = \"ATT\"))"),
    "event_study": RefitEstimator("event_study", _es("twfe", True), "t",
                                  "average post-period dynamic-TWFE effect (simple aggregate) = 0, CRV1 t test"),
    "cs": RefitEstimator("cs", _cs, "t",
                         "overall ATT (Callaway-Sant'Anna, never-treated controls, no covariates, simple "
                         "aggregate) = 0, normal test with influence-function s.e."),
    "twfe+wildboot": RefitEstimator("twfe+wildboot", _twfe_wildboot, "p",
                                    "TWFE coefficient = 0, wild cluster bootstrap (WCR, Rademacher) p-value"),
    "twfe+placebo": RefitEstimator("twfe+placebo", _twfe_placebo, "p",
                                   "sharp null of no effect, placebo (randomization) p-value of the TWFE t"),
}


@dataclass(eq=False)
class RefitSpec:
    """Everything a block of refits needs (picklable)."""

    frame: pl.DataFrame
    y: np.ndarray
    unit: str
    time: str
    controls: tuple[str, ...]
    cluster: str
    rows: RowDesign
    path: EffectPath
    assign: np.ndarray
    sizes: np.ndarray
    level: float
    scheme: str
    strata: str | None
    assign_by: str | None
    boot_draws: int
    inner_draws: int
    estimator: RefitEstimator
    seed: np.random.SeedSequence
    names: tuple[str, str, str] = (COHORT, TREAT, OUTCOME)  # a draw's (cohort, treatment, outcome) columns


def refit_curves(spec: RefitSpec, n_jobs: int | None = 1, backend: str | None = None
                 ) -> tuple[Any, ...]:
    """``draws x sizes`` arrays ``(estimate, reject, covers, truth, t)`` and the modes used
    (``covers`` None without an interval, ``t`` None for p-value tests)."""
    # a draw's panel: the columns the fits read, and the re-assigned ones under names the data leave free
    used = list(dict.fromkeys([spec.unit, spec.time, *spec.controls, spec.cluster,
                               *(c for c in (spec.strata, spec.assign_by) if c)]))
    spec = replace(spec, frame=spec.frame.select(used), names=tuple(fresh_name(c, used) for c in (COHORT, TREAT, OUTCOME)))
    n = spec.assign.shape[0]
    blocks = [(a, min(a + REFIT_BLOCK, n)) for a in range(0, n, REFIT_BLOCK)]
    parts = run_blocks(_block, blocks, shared=spec, n_jobs=n_jobs, backend=backend,
                       desc=f"power ({spec.estimator.name})")
    est, rej, cov, truth, t = (np.concatenate([p[k] for p in parts]) for k in range(5))
    modes = sorted({p[5] for p in parts if p[5] is not None})  # None: a block without a valid draw
    covers = None if spec.estimator.name == "twfe+placebo" else cov
    return est, rej, covers, truth, (t if spec.estimator.kind == "t" else None), "+".join(modes)


class _Draw:
    """One re-assigned panel: fits at any effect size."""

    def __init__(self, spec: RefitSpec, b: int):
        self.spec = spec
        adopt = spec.assign[b]
        self.rows, self.h = spec.path.scale(spec.rows, adopt)
        self.m = float(self.h.mean()) if self.h.size else np.nan
        treat = np.zeros(spec.y.size)
        treat[self.rows] = 1.0
        cohort, treat_col, _ = spec.names
        self.base = spec.frame.with_columns(pl.Series(cohort, adopt[spec.rows.unit_N]), pl.Series(treat_col, treat))
        self.seed = block_seed(spec.seed, b)
        self._fits: dict[float, tuple] = {}  # the mode check's fits, reused by the block's loop

    def fit(self, delta: float) -> tuple:
        if delta not in self._fits:
            self._fits[delta] = self._fit(delta)
        return self._fits[delta]

    def _fit(self, delta: float) -> tuple:
        y = self.spec.y.copy()
        y[self.rows] += delta * self.h
        frame = self.base.with_columns(pl.Series(self.spec.names[2], y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return tuple(self.spec.estimator.func(frame, self.spec, self.seed, delta * self.m))
            except (ArgumentError, ValueError, np.linalg.LinAlgError):
                # a re-assigned design the estimator cannot fit (e.g. no usable cohort): an invalid draw
                return (np.nan, np.nan, None)


def _t_outcome(e: float, se: float, df: Any, truth: float, alpha: float) -> tuple[float, bool, bool]:
    # scipy.special: the functions scipy.stats' norm.ppf / t.ppf evaluate, at a thousandth of the
    # per-call cost (this runs once per draw and effect size)
    crit = special.ndtri(1 - alpha / 2) if df is None else special.stdtrit(df, 1 - alpha / 2)
    return e, bool(abs(e) > crit * se), bool(abs(e - truth) <= crit * se)


def _close(a: float, b: float, scale: float) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and abs(a - b) <= CHECK_RTOL * (abs(a) + abs(b) + scale))


def _block(spec: RefitSpec, block: tuple[int, int]) -> tuple[np.ndarray, ...]:
    # small dense solves: BLAS threads cost more than they save (and contend with the blocks' workers)
    with SERIAL_BLAS:
        return _block_serial(spec, block)


def _block_serial(spec: RefitSpec, block: tuple[int, int]) -> tuple[np.ndarray, ...]:
    sizes = spec.sizes
    K = sizes.size
    B = block[1] - block[0]
    est, rej, cov, truth = np.full((B, K), np.nan), np.zeros((B, K), bool), np.zeros((B, K), bool), np.zeros((B, K))
    tst = np.full((B, K), np.nan)
    alpha = alpha_of(spec.level)
    kind = spec.estimator.kind
    s = float(np.max(np.abs(sizes))) or 1.0
    mode = "refit" if kind == "p" else None
    for j in range(B):
        draw = _Draw(spec, block[0] + j)
        truth[j] = sizes * draw.m
        if mode is None:  # the block's first draw that fits at zero effect picks the mode
            mode = _pick_mode(draw, spec, s)
            if mode is None:  # no fit at zero effect: an invalid draw, left out at every size
                continue
        if mode == "refit":
            for k, d in enumerate(sizes):
                out = draw.fit(float(d))
                if kind == "t":
                    if not np.isfinite(out[0]) or not np.isfinite(out[1]):
                        continue
                    tst[j, k] = out[0] / out[1]
                    out = _t_outcome(out[0], out[1], out[2], truth[j, k], alpha)
                est[j, k], rej[j, k], cov[j, k] = out[0], bool(out[1]), bool(out[2]) if out[2] is not None else False
            continue
        e0, se0, df = draw.fit(0.0)
        if not (np.isfinite(e0) and np.isfinite(se0)):
            continue
        if mode == "shift":
            slope, v0, v1, v2 = 1.0, se0**2, 0.0, 0.0
        else:
            ep, sep, _ = draw.fit(s)
            em, sem, _ = draw.fit(-s)
            slope = (ep - em) / (2 * s)
            v0, v1 = se0**2, (sep**2 - sem**2) / (4 * s)
            v2 = ((sep**2 + sem**2) / 2 - v0) / s**2
        for k, d in enumerate(sizes):
            se = np.sqrt(max(v0 + 2 * d * v1 + d * d * v2, 0.0))
            est[j, k], rej[j, k], cov[j, k] = _t_outcome(e0 + d * slope, se, df, truth[j, k], alpha)
            tst[j, k] = est[j, k] / se
    return est, rej, cov, truth, tst, mode


def _pick_mode(draw: _Draw, spec: RefitSpec, s: float) -> str | None:
    """The cheapest exact mode for this block, checked on ``draw``; ``None`` when
    the draw does not fit at zero effect (the next draw picks: refitting every
    effect size of a block because its first draw was invalid cost 17x)."""
    e0, se0, _ = draw.fit(0.0)
    if not (np.isfinite(e0) and np.isfinite(se0)):
        return None
    check = 0.61803 * s  # an effect size the shortcuts do not use
    ec, sec, _ = draw.fit(check)
    if spec.path.homogeneous and _close(ec, e0 + check, s) and _close(sec, se0, se0):
        return "shift"
    ep, sep, _ = draw.fit(s)
    em, sem, _ = draw.fit(-s)
    slope = (ep - em) / (2 * s)
    v1, v2 = (sep**2 - sem**2) / (4 * s), ((sep**2 + sem**2) / 2 - se0**2) / s**2
    var = se0**2 + 2 * check * v1 + check**2 * v2
    if _close(ec, e0 + check * slope, s) and _close(sec**2, var, se0**2):
        return "quadratic"
    return "refit"


def resolve(estimators: Any) -> list[str]:
    """Estimator names of a power study (validated)."""
    names = [estimators] if isinstance(estimators, str) else list(estimators)
    known = ("twfe", *REFIT_ESTIMATORS)
    for e in names:
        if e not in known:
            raise ArgumentError(f"unknown estimator {e!r}; use any of {known}")
    if not names or len(set(names)) != len(names):
        raise ArgumentError(f"estimators must be distinct and non-empty, got {names}")
    return names


def hypotheses(names: list[str]) -> Mapping[str, str]:
    """The null hypothesis each estimator tests."""
    twfe = "TWFE coefficient of the treatment = 0, t test with CRV1 s.e. (t with G - 1 df)"
    return {n: twfe if n == "twfe" else REFIT_ESTIMATORS[n].hypothesis for n in names}
