"""Data-generating processes with known truth for Monte Carlo studies.

A :class:`DGP` is a frozen description of a staggered-adoption panel (design,
effects, error structure, covariates). ``DGP.draw(seed)`` returns a polars
frame and a :class:`Truth`: the realized ATT(g,t) cells, event-time effects,
the overall aggregations (simple, dynamic, group) and the probability limit of
the static TWFE coefficient.

Model, for unit ``i`` adopting in period ``g_i`` (0 = never) and period ``t``::

    y_it = intercept + a_i + l_t + c_{k(i),t} + sum_k x_effect * z_kit + tau_it + u_it
    tau_it = 1[t >= g_i] (effect + cohort_slope (g_i - g_min) + cohort_effects[g_i]
                          + dynamic * min(t - g_i, dynamic_cap) + eta_i)
           + 1[g_i - anticipation <= t < g_i] * anticipation_effect
    u_it = ar1 * u_i,t-1 + sqrt(1 - ar1^2) * noise_sd * N(0, 1)   (stationary AR(1))

``c_kt`` are cluster-period shocks, ``eta_i ~ N(0, effect_sd)`` unit-level
effect heterogeneity, ``z_kit`` standardized covariates (reported as
``x_k = x_means[k] + x_sds[k] * z_k``); ``z_1`` trends upward for eventually
treated units when ``x_confound != 0``, so parallel trends hold only
conditionally on ``x1``.

Cohort sizes are fixed counts (largest-remainder rounding of the shares), so
in a balanced panel without unit-level heterogeneity every draw has the same
design and the same truth; only which units are treated, the fixed effects,
covariates and errors are random.

Truth conventions: every quantity in :class:`Truth` is computed on the
**realized** draw (its rows, cohorts and unit-level effects), i.e. it is the
sample estimand, conditional on the design. ``twfe_plim`` (computed by
``staggerlab.inference.studies.plim.twfe_plim``, a fit) is
``E[beta_TWFE | design, covariates, tau]``: the coefficient on ``treat`` from
regressing the known ``tau_it`` on ``treat`` (plus the covariates, as the
``"twfe"`` estimator does) with unit and period fixed effects on the realized
sample. It is exact because ``y`` is linear in the covariates and the errors
have mean zero given the design.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from .._seed import SeedLike, as_generator
from ..errors import DGPError

__all__ = ["DGP", "Truth", "dgp", "PRESETS", "DGPError"]


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` proportional to ``shares``."""
    raw = total * shares / shares.sum()
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


@dataclass(frozen=True)
class DGP:
    """A staggered-adoption data-generating process with known effects.

    Build one with :func:`dgp` (a preset plus overrides). All knobs are
    keyword fields; see the module docstring for the model.

    Parameters
    ----------
    name : str
        Label used in Monte Carlo summaries.
    n_units, n_periods, start : int
        Units, periods, and the first period label.
    cohorts : tuple of int, optional
        Adoption periods (period labels). Default: four interior periods.
    cohort_shares : tuple of float, optional
        Relative sizes of the cohorts among treated units (default equal).
    never_share : float
        Share of never-treated units (or clusters, with ``assign_by_cluster``).
    effect, cohort_slope, cohort_effects : float, float, tuple
        Effect on impact; its change per period of later adoption; extra
        additive effect per cohort (same order as ``cohorts``).
    dynamic, dynamic_cap : float, int or None
        Change of the effect per period of exposure, and the exposure after
        which it stops growing.
    effect_sd : float
        Standard deviation of unit-level effect heterogeneity.
    anticipation, anticipation_effect : int, float
        Effect ``anticipation_effect`` in the ``anticipation`` periods before
        adoption (while ``treat`` is still 0).
    intercept, unit_sd, time_sd, noise_sd, ar1 : float
        Outcome level; sd of unit and period effects; innovation sd and AR(1)
        coefficient of the within-unit errors (stationary, marginal sd ``noise_sd``).
    n_clusters, cluster_sd, assign_by_cluster : int or None, float, bool
        Units are split into ``n_clusters`` contiguous clusters (column
        ``cluster``) with cluster-period shocks of sd ``cluster_sd``; with
        ``assign_by_cluster`` treatment (cohort) is assigned per cluster.
    inference_cluster : str
        Column the built-in estimators cluster their standard errors on.
    drop_share : float
        Share of unit-period rows dropped at random.
    entry_share : float
        Share of units entering late (uniform entry period; eventually treated
        units enter at least two periods before adoption).
    n_covariates, x_effect, x_confound, x_between : int, float, float, float
        Covariates ``x1..xK``: effect of each (per sd) on ``y``; upward trend of
        ``x1`` (total over the panel, in sd) for eventually treated units;
        share of each covariate's variance between units.
    x_means, x_sds : tuple of float, optional
        Location and scale of the reported covariates (default 0 and 1).
    """

    name: str = "custom"
    n_units: int = 500
    n_periods: int = 10
    start: int = 1
    cohorts: tuple[int, ...] | None = None
    cohort_shares: tuple[float, ...] | None = None
    never_share: float = 0.5
    effect: float = 1.0
    cohort_slope: float = 0.0
    cohort_effects: tuple[float, ...] | None = None
    dynamic: float = 0.0
    dynamic_cap: int | None = None
    effect_sd: float = 0.0
    anticipation: int = 0
    anticipation_effect: float = 0.0
    intercept: float = 0.0
    unit_sd: float = 1.0
    time_sd: float = 0.5
    noise_sd: float = 1.0
    ar1: float = 0.0
    n_clusters: int | None = None
    cluster_sd: float = 0.0
    assign_by_cluster: bool = False
    inference_cluster: str = "unit"
    drop_share: float = 0.0
    entry_share: float = 0.0
    n_covariates: int = 0
    x_effect: float = 0.5
    x_confound: float = 0.0
    x_between: float = 0.5
    x_means: tuple[float, ...] | None = None
    x_sds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.n_units < 2 or self.n_periods < 2:
            raise DGPError(f"need at least 2 units and 2 periods, got {self.n_units} x {self.n_periods}")
        if not 0.0 <= self.never_share < 1.0:
            raise DGPError(f"never_share must be in [0, 1), got {self.never_share}")
        if not -1.0 < self.ar1 < 1.0:
            raise DGPError(f"ar1 must be in (-1, 1) for a stationary AR(1), got {self.ar1}")
        for knob in ("drop_share", "entry_share", "x_between"):
            v = getattr(self, knob)
            if not 0.0 <= v <= 1.0:
                raise DGPError(f"{knob} must be in [0, 1], got {v}")
        g = self.cohort_labels
        if g.size == 0 or g.min() <= self.start or g.max() > self.start + self.n_periods - 1:
            raise DGPError(
                f"cohorts {g.tolist()} must lie in ({self.start}, {self.start + self.n_periods - 1}] "
                "so that every cohort has a pre-period"
            )
        for knob in ("cohort_shares", "cohort_effects"):
            v = getattr(self, knob)
            if v is not None and len(v) != g.size:
                raise DGPError(f"{knob} has {len(v)} entries for {g.size} cohorts")
        for knob in ("x_means", "x_sds"):
            v = getattr(self, knob)
            if v is not None and len(v) != self.n_covariates:
                raise DGPError(f"{knob} has {len(v)} entries for {self.n_covariates} covariates")
        if self.n_clusters is not None and not 2 <= self.n_clusters <= self.n_units:
            raise DGPError(f"n_clusters must be in [2, n_units], got {self.n_clusters}")
        if self.assign_by_cluster and self.n_clusters is None:
            raise DGPError("assign_by_cluster needs n_clusters")
        if self.inference_cluster not in ("unit", "cluster"):
            raise DGPError(f"inference_cluster must be 'unit' or 'cluster', got {self.inference_cluster!r}")
        if self.inference_cluster == "cluster" and self.n_clusters is None:
            raise DGPError("inference_cluster='cluster' needs n_clusters")

    # ------------------------------------------------------------ design
    @property
    def cohort_labels(self) -> np.ndarray:
        """Adoption periods of the cohorts (period labels)."""
        if self.cohorts is None:
            s, T = self.start, self.n_periods
            return np.unique(np.linspace(s + max(1, T // 4), s + T - 2, 4).astype(np.int64))
        return np.asarray(sorted(self.cohorts), dtype=np.int64)

    @property
    def periods(self) -> np.ndarray:
        """Period labels."""
        return np.arange(self.start, self.start + self.n_periods, dtype=np.int64)

    @property
    def covariates(self) -> list[str]:
        """Covariate column names ``x1..xK``."""
        return [f"x{k + 1}" for k in range(self.n_covariates)]

    def cohort_counts(self) -> dict[int, int]:
        """Number of units in each cohort (0 = never treated) in every draw."""
        g = self.cohort_labels
        shares = np.ones(g.size) if self.cohort_shares is None else np.asarray(self.cohort_shares, float)
        if self.assign_by_cluster:
            sizes = np.bincount(self._cluster_of_unit(), minlength=self.n_clusters)
            if np.unique(sizes).size != 1:
                raise DGPError("cohort_counts with assign_by_cluster needs n_units divisible by n_clusters")
            n_tr = int(round(self.n_clusters * (1.0 - self.never_share)))
            counts = _largest_remainder(n_tr, shares) * int(sizes[0])
        else:
            counts = _largest_remainder(int(round(self.n_units * (1.0 - self.never_share))), shares)
        out = {0: self.n_units - int(counts.sum())}
        out.update({int(c): int(n) for c, n in zip(g, counts)})
        return out

    def cell_effect(self, cohort: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Expected effect ``E[tau_it]`` of cohort ``cohort`` in period ``time`` (0 for never)."""
        cohort = np.asarray(cohort, dtype=np.int64)
        time = np.asarray(time, dtype=np.int64)
        g = self.cohort_labels
        extra = np.zeros(g.size) if self.cohort_effects is None else np.asarray(self.cohort_effects, float)
        idx = np.clip(np.searchsorted(g, cohort), 0, g.size - 1)
        base = self.effect + self.cohort_slope * (cohort - g.min()) + extra[idx]
        e = time - cohort
        expo = e if self.dynamic_cap is None else np.minimum(e, self.dynamic_cap)
        treated = (cohort > 0) & (e >= 0)
        ant = (cohort > 0) & (e < 0) & (e >= -self.anticipation)
        return np.where(treated, base + self.dynamic * expo, np.where(ant, self.anticipation_effect, 0.0))

    def _cluster_of_unit(self) -> np.ndarray:
        assert self.n_clusters is not None
        return (np.arange(self.n_units) * self.n_clusters) // self.n_units

    # -------------------------------------------------------------- draw
    def draw(self, seed: SeedLike = 0) -> tuple[pl.DataFrame, "Truth"]:
        """Draw one panel and its truth.

        Parameters
        ----------
        seed : int, Generator or SeedSequence

        Returns
        -------
        frame : polars.DataFrame
            ``unit, time, cohort`` (0 = never), ``treat``, ``y``, ``tau`` (the
            row's true effect, including anticipation), ``cluster`` (if
            ``n_clusters``), ``x1..xK``; sorted by unit and time.
        truth : Truth
        """
        rng = as_generator(seed)
        n, T = self.n_units, self.n_periods
        times = self.periods
        counts = self.cohort_counts()
        labels = np.repeat(
            np.array(list(counts.keys()), dtype=np.int64), np.array(list(counts.values()), dtype=np.int64)
        )
        if self.assign_by_cluster:
            size = n // int(self.n_clusters)
            cl_labels = labels[::size]
            cohort_u = rng.permutation(cl_labels)[self._cluster_of_unit()]
        else:
            cohort_u = rng.permutation(labels)

        a_std = rng.normal(size=n)
        alpha_u = self.unit_sd * a_std
        lam_t = rng.normal(0.0, self.time_sd, T)
        eta_u = rng.normal(0.0, self.effect_sd, n) if self.effect_sd > 0 else np.zeros(n)
        # stationary AR(1) within unit
        innov = rng.normal(size=(n, T))
        u = np.empty((n, T))
        u[:, 0] = innov[:, 0]
        scale = np.sqrt(1.0 - self.ar1**2)
        for j in range(1, T):
            u[:, j] = self.ar1 * u[:, j - 1] + scale * innov[:, j]
        u *= self.noise_sd

        unit = np.repeat(np.arange(1, n + 1, dtype=np.int64), T)
        t = np.tile(times, n)
        g = np.repeat(cohort_u, T)
        treat = ((g > 0) & (t >= g)).astype(np.int64)
        tau = self.cell_effect(g, t) + treat * np.repeat(eta_u, T)
        y = self.intercept + np.repeat(alpha_u, T) + np.tile(lam_t, n) + u.ravel() + tau

        cols: dict[str, np.ndarray] = {}
        if self.n_clusters is not None:
            cl_u = self._cluster_of_unit()
            cols["cluster"] = np.repeat(cl_u + 1, T)
            if self.cluster_sd > 0:
                shocks = rng.normal(0.0, self.cluster_sd, (self.n_clusters, T))
                y = y + shocks[np.repeat(cl_u, T), np.tile(np.arange(T), n)]
        if self.n_covariates:
            ev = np.repeat((cohort_u > 0).astype(float), T)
            trend = (t - self.start) / max(T - 1, 1)
            b = np.sqrt(self.x_between)
            for k in range(self.n_covariates):
                between = b * (0.5 * a_std + np.sqrt(0.75) * rng.normal(size=n))
                z = np.repeat(between, T) + np.sqrt(1.0 - self.x_between) * rng.normal(size=n * T)
                if k == 0 and self.x_confound:
                    z = z + self.x_confound * ev * trend
                y = y + self.x_effect * z
                mu = 0.0 if self.x_means is None else self.x_means[k]
                sd = 1.0 if self.x_sds is None else self.x_sds[k]
                cols[f"x{k + 1}"] = mu + sd * z

        keep = np.ones(n * T, dtype=bool)
        if self.entry_share > 0 and T > 2:
            late = rng.random(n) < self.entry_share
            entry = rng.integers(1, T - 1, n)  # offset of the first observed period
            cap = np.where(cohort_u > 0, cohort_u - self.start - 2, T)
            entry = np.where(late, np.maximum(np.minimum(entry, cap), 0), 0)
            keep &= (t - self.start) >= np.repeat(entry, T)
        if self.drop_share > 0:
            keep &= rng.random(n * T) >= self.drop_share

        data = {"unit": unit, "time": t, "cohort": g, "treat": treat, "y": y, "tau": tau, **cols}
        if not keep.all():
            data = {k: v[keep] for k, v in data.items()}
        frame = pl.DataFrame(data)
        return frame, Truth(frame, covariates=self.covariates)

    def replace(self, **knobs: Any) -> "DGP":
        """A copy with some knobs changed."""
        return _build(self, knobs)

    def describe(self) -> dict[str, Any]:
        """All knobs as a dict (for checkpoints and reports)."""
        return asdict(self)


class Truth:
    """The true effects of one drawn panel (realized sample estimands).

    Attributes
    ----------
    att : float
        Overall simple ATT: mean of ``tau`` over treated unit-periods.
    att_gt : polars.DataFrame
        ``cohort, time, rel_time, att, n``: mean effect of each cohort in each
        period (pre-periods included: 0, or the anticipation effect) and its
        number of rows.
    event_time : polars.DataFrame
        ``rel_time, att, n``: mean effect by periods since adoption, over
        eventually treated units.
    """

    def __init__(self, frame: pl.DataFrame, *, covariates: list[str] | None = None):
        self._covariates = list(covariates or [])
        self._frame = frame  # polars frames are immutable: a reference, not a copy
        treated = frame["treat"].to_numpy() == 1
        tau = frame["tau"].to_numpy()
        self.att = float(tau[treated].mean()) if treated.any() else float("nan")
        self._plim: float | None = None

    @property
    def frame(self) -> pl.DataFrame:
        """The drawn panel (``unit, time, cohort, treat, tau`` and the covariates)."""
        return self._frame

    @property
    def covariates(self) -> list[str]:
        """The covariates the ``"twfe"`` estimator (and so the plim) adjusts for."""
        return list(self._covariates)

    @property
    def known_twfe_plim(self) -> float | None:
        """The TWFE plim if it has been computed for this draw, else None."""
        return self._plim

    def record_twfe_plim(self, value: float) -> None:
        """Record the TWFE plim computed by a fit on this draw (the fit lives in
        ``staggerlab.inference.studies``; the data layer fits nothing)."""
        self._plim = float(value)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, *, covariates: list[str] | None = None) -> "Truth":
        """The truth of a panel with ``unit, time, cohort, treat, tau`` columns."""
        return cls(frame, covariates=covariates)

    def __repr__(self) -> str:
        plim = "not computed" if self._plim is None else f"{self._plim:.6g}"
        return f"Truth(att={self.att:.6g}, twfe_plim={plim}, rows={self._frame.height})"

    @cached_property
    def att_gt(self) -> pl.DataFrame:
        """``cohort, time, rel_time, att, n`` for every cohort and observed period."""
        return (
            self._frame.filter(pl.col("cohort") > 0)
            .group_by("cohort", "time")
            .agg(pl.col("tau").mean().alias("att"), pl.len().cast(pl.Int64).alias("n"))
            .with_columns((pl.col("time") - pl.col("cohort")).alias("rel_time"))
            .select("cohort", "time", "rel_time", "att", "n")
            .sort("cohort", "time")
        )

    @cached_property
    def event_time(self) -> pl.DataFrame:
        """``rel_time, att, n``: mean effect by periods since adoption."""
        return (
            self._frame.filter(pl.col("cohort") > 0)
            .with_columns((pl.col("time") - pl.col("cohort")).alias("rel_time"))
            .group_by("rel_time")
            .agg(pl.col("tau").mean().alias("att"), pl.len().cast(pl.Int64).alias("n"))
            .sort("rel_time")
        )

    @property
    def dynamic(self) -> float:
        """Mean of the event-time effects over ``rel_time >= 0`` (CS dynamic aggregation)."""
        post = self.event_time.filter(pl.col("rel_time") >= 0)["att"].to_numpy()
        return float(post.mean()) if post.size else float("nan")

    @property
    def group(self) -> float:
        """Cohort-size-weighted mean of each cohort's mean post-adoption effect (CS group aggregation)."""
        post = self.att_gt.filter(pl.col("rel_time") >= 0)
        per = post.group_by("cohort").agg(pl.col("att").mean().alias("theta")).sort("cohort")
        sizes = (
            self._frame.filter(pl.col("cohort") > 0)
            .group_by("cohort")
            .agg(pl.col("unit").n_unique().alias("units"))
        )
        j = per.join(sizes, on="cohort")
        w = j["units"].to_numpy().astype(float)
        return float(np.sum(w * j["theta"].to_numpy()) / w.sum()) if w.size else float("nan")

    @property
    def twfe_plim(self) -> float:
        """``E[beta_TWFE | design]``: ``tau`` regressed on ``treat`` (+ covariates) with unit and period FE.

        Computed on the realized sample (the same rows the ``"twfe"`` estimator
        uses, singletons dropped as feols does), so it is the exact mean of the
        static TWFE coefficient conditional on the design, covariates and
        unit-level effects. It costs a fit: it is known once
        :func:`staggerlab.inference.studies.plim.twfe_plim` (or a Monte Carlo
        TWFE replication) has run on this draw.
        """
        if self._plim is None:
            raise DGPError(
                "the TWFE plim of this draw is not computed yet; "
                "staggerlab.inference.studies.plim.twfe_plim(truth) computes it (one TWFE fit)"
            )
        return self._plim

    @property
    def estimands(self) -> dict[str, float]:
        """All targets by name: ``simple``, ``dynamic``, ``group``, and ``twfe_plim`` once computed."""
        out = {"simple": self.att, "dynamic": self.dynamic, "group": self.group}
        if self._plim is not None:
            out["twfe_plim"] = self._plim
        return out

    def target(self, kind: str) -> float:
        """One estimand by name (see :attr:`estimands`); ``"att"`` is ``"simple"``."""
        kind = {"att": "simple"}.get(kind, kind)
        if kind == "simple":
            return self.att
        if kind in ("dynamic", "group", "twfe_plim"):
            return float(getattr(self, kind))
        raise DGPError(f"unknown estimand {kind!r}; use 'simple', 'dynamic', 'group' or 'twfe_plim'")


# ----------------------------------------------------------------- presets
# Table 3 of the study (docs/study.md): means and sds of the 8 controls, in order
# Size, Lev, Roa, Cash, Age, Mb, Top1, Dual.
_PAPER_X_MEANS = (21.934, 0.414, 0.033, 0.195, 2.132, 0.578, 0.330, 0.301)
_PAPER_X_SDS = (1.138, 0.251, 0.075, 0.138, 0.760, 0.241, 0.140, 0.459)

PRESETS: dict[str, dict[str, Any]] = {
    # The study's shape: 1,420 firms x 2011-2022, 84 pilot firms in four
    # batches 2015-2018 (mean(IM) ~ 0.035), 22% entering late, NQPF-like
    # outcome (mean 0.339, sd ~0.33) with firm/year effects and 8 controls at
    # Table 3's means and sds; true effect 0.093 (the study's estimate).
    "paper_panel": dict(
        n_units=1420,
        n_periods=12,
        start=2011,
        cohorts=(2015, 2016, 2017, 2018),
        never_share=1.0 - 84 / 1420,
        effect=0.093,
        intercept=0.339,
        unit_sd=0.2,
        time_sd=0.085,
        noise_sd=0.12,
        ar1=0.3,
        entry_share=0.22,
        n_covariates=8,
        x_effect=0.03,
        x_means=_PAPER_X_MEANS,
        x_sds=_PAPER_X_SDS,
    ),
    # Constant effect, balanced, no dynamics: every estimator is unbiased.
    "homogeneous": dict(n_units=400, n_periods=8, cohorts=(3, 5, 7), never_share=0.4, effect=1.0),
    # The textbook failure of static TWFE: effects grow with exposure and
    # early cohorts gain more, few never-treated units, so already-treated
    # units serve as controls and their growing effects are subtracted.
    "heterogeneous_dynamic": dict(
        n_units=400,
        n_periods=10,
        cohorts=(3, 5, 7),
        never_share=0.1,
        effect=1.0,
        dynamic=0.6,
        cohort_slope=-0.25,
    ),
    # Treatment assigned to 6 of 40 clusters with cluster-period shocks:
    # cluster-robust t-tests over-reject, the wild cluster bootstrap should not.
    "few_treated_clusters": dict(
        n_units=800,
        n_periods=8,
        cohorts=(4, 6),
        never_share=1.0 - 6 / 40,
        effect=0.5,
        n_clusters=40,
        cluster_sd=0.5,
        assign_by_cluster=True,
        inference_cluster="cluster",
    ),
}


def _build(base: DGP, knobs: dict[str, Any]) -> DGP:
    valid = set(DGP.__dataclass_fields__)
    bad = sorted(set(knobs) - valid)
    if bad:
        raise DGPError(f"unknown DGP knob(s) {bad}; valid knobs: {sorted(valid)}")
    fixed = {k: tuple(v) if isinstance(v, (list, np.ndarray)) else v for k, v in knobs.items()}
    return replace(base, **fixed)


def dgp(preset: str | None = None, /, **knobs: Any) -> DGP:
    """A data-generating process: a preset plus overrides, or knobs alone.

    Parameters
    ----------
    preset : str, optional
        ``"paper_panel"``, ``"homogeneous"``, ``"heterogeneous_dynamic"`` or
        ``"few_treated_clusters"``; None starts from :class:`DGP` defaults.
    **knobs
        Any :class:`DGP` field (e.g. ``n_units=1000, ar1=0.5``).

    Returns
    -------
    DGP

    Examples
    --------
    >>> import staggerlab as sl
    >>> d = sl.simulate.dgp("heterogeneous_dynamic", n_units=200)
    >>> frame, truth = d.draw(seed=1)
    >>> from staggerlab.inference.studies.plim import twfe_plim
    >>> twfe_plim(truth) < truth.att
    True
    """
    if preset is None:
        return _build(DGP(), knobs)
    if preset not in PRESETS:
        raise DGPError(f"unknown DGP preset {preset!r}; choose one of {sorted(PRESETS)}")
    return _build(DGP(name=preset), {**PRESETS[preset], **knobs})
