"""Callaway & Sant'Anna (2021) group-time average treatment effects.

ATT(g, t) for every treated cohort ``g`` and period ``t`` is an unconditional
2x2 difference in differences between cohort ``g`` and a comparison group
(never-treated units, or units not yet treated by ``max(t, base) +
anticipation``), as the R ``did`` package computes it with
``est_method="reg"`` and no covariates. Standard errors come from the
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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl
from scipy import stats

from .._parallel import run_blocks
from .._seed import SeedLike, block_generator, resolve_entropy
from ..errors import MissingValueWarning, StaggerlabError, TreatmentError
from ..kernels._jit import jit
from .staggered_data import COHORT, StaggeredData, prepare

__all__ = [
    "callaway_santanna",
    "cs",
    "CSResult",
    "CSAggregate",
    "CovariatesNotSupportedError",
]

ControlGroup = Literal["never", "notyet"]
BasePeriod = Literal["varying", "universal"]
AggKind = Literal["simple", "dynamic", "group", "calendar"]

_BOOT_BLOCK = 128  # draws per seeded block: fixed, so results do not depend on n_jobs
_ZERO_SE = np.sqrt(np.finfo(float).eps) * 10  # did's threshold for "no variance"


class CovariatesNotSupportedError(StaggerlabError, NotImplementedError):
    """Conditional parallel trends (covariates) are not implemented for Callaway-Sant'Anna."""


# --------------------------------------------------------------------------- kernels
@jit
def _multiplier_sums(v_BC, s_CK, n):
    """Bootstrap draws of the estimators: out[b, k] = sum_c v[b, c] s[c, k] / n.

    Plain loops (not BLAS) so that every draw is bit-identical whichever
    process or thread computes it.
    """
    nb, nc = v_BC.shape
    nk = s_CK.shape[1]
    out_BK = np.zeros((nb, nk))
    for b in range(nb):
        for c in range(nc):
            vb = v_BC[b, c]
            for k in range(nk):
                out_BK[b, k] += vb * s_CK[c, k]
    for b in range(nb):
        for k in range(nk):
            out_BK[b, k] /= n
    return out_BK


# --------------------------------------------------------------------------- data
@dataclass(eq=False)
class _Wide:
    """Balanced panel in wide form: one row per unit."""

    y: np.ndarray  # n x T outcomes
    g: np.ndarray  # n adoption period (0 = never)
    w: np.ndarray  # n unit weights (ones if unweighted)
    cluster: np.ndarray  # n dense cluster codes (unit codes if clustered by unit)
    times: np.ndarray  # T periods
    by_unit: bool  # clustered by unit (no summing of influence functions)


def _to_wide(sd: StaggeredData, anticipation: int) -> _Wide:
    frame = sd.frame
    times = sd.times
    n_t = times.size
    counts = frame.group_by(sd.unit).len()
    if counts["len"].min() != n_t:
        full = counts.filter(pl.col("len") == n_t)[sd.unit]
        dropped = counts.height - full.len()
        warnings.warn(
            f"Callaway-Sant'Anna needs a balanced panel; dropped {dropped} unit(s) not observed "
            f"in all {n_t} periods",
            MissingValueWarning,
            stacklevel=4,
        )
        frame = frame.filter(pl.col(sd.unit).is_in(full.implode()))
    first = times[0]
    early = frame.filter((pl.col(COHORT) > 0) & (pl.col(COHORT) <= first + anticipation))
    if early.height:
        warnings.warn(
            f"dropped {early[sd.unit].n_unique()} unit(s) already treated in the first period "
            f"({first}{' + anticipation' if anticipation else ''}); they have no pre-period",
            UserWarning,
            stacklevel=4,
        )
        frame = frame.filter(~((pl.col(COHORT) > 0) & (pl.col(COHORT) <= first + anticipation)))
    if frame.height == 0:
        raise TreatmentError("no unit is left after balancing the panel")
    n = frame.height // n_t
    # rows must be unit-major with periods in order; prepare() sorts them and
    # filters keep that order, so only sort (a copy of the frame) if needed
    t_mat = frame[sd.time].to_numpy().reshape(n, n_t)
    u_mat = frame[sd.unit].to_physical().to_numpy().reshape(n, n_t)
    if not (np.array_equal(t_mat, np.broadcast_to(times, (n, n_t))) and (u_mat == u_mat[:, :1]).all()):
        frame = frame.sort(sd.unit, sd.time)
    del t_mat, u_mat
    y = frame[sd.y].cast(pl.Float64).to_numpy().reshape(n, n_t)
    g = frame[COHORT].to_numpy().reshape(n, n_t)[:, 0].astype(np.int64)
    # adoption after the last period (+ anticipation) is never treated within the sample (as did)
    g = np.where(g > times[-1] + anticipation, 0, g)
    if sd.weights is not None:
        wmat = frame[sd.weights].cast(pl.Float64).to_numpy().reshape(n, n_t)
        if not np.all(wmat == wmat[:, :1]):
            raise TreatmentError(f"weights {sd.weights!r} vary within a unit; give unit-level weights")
        w = wmat[:, 0].copy()
        if np.any(w < 0):
            raise TreatmentError("weights must be non-negative")
    else:
        w = np.ones(n)
    by_unit = sd.cluster == sd.unit
    if by_unit:
        cluster = np.arange(n)
    else:
        cmat = frame[sd.cluster].to_numpy().reshape(n, n_t)
        if not np.all(cmat == cmat[:, :1]):
            raise TreatmentError(
                f"cluster {sd.cluster!r} varies within a unit; Callaway-Sant'Anna clusters must nest units"
            )
        _, cluster = np.unique(cmat[:, 0], return_inverse=True)
    return _Wide(y, g, w, cluster.astype(np.int64), np.asarray(times), by_unit)


# --------------------------------------------------------------------------- ATT(g,t)
@dataclass(eq=False)
class _Cells:
    group: np.ndarray  # k cohort of each cell
    time: np.ndarray  # k period
    base: np.ndarray  # k base period
    att: np.ndarray  # k
    inf: np.ndarray  # n x k influence functions (did's scaling: se = sqrt(sum inf^2) / n)


def _att_gt(wd: _Wide, control: ControlGroup, anticipation: int, base_period: BasePeriod) -> _Cells:
    times = wd.times
    n = wd.g.size
    cohorts = np.unique(wd.g[wd.g > 0])
    cohorts = cohorts[cohorts > times[0] + anticipation]
    never = wd.g == 0
    if control == "never" and not never.any():
        raise TreatmentError(
            "no never-treated unit: use control='notyet' (or drop the periods after the last adoption)"
        )
    groups, tt, bb, atts = [], [], [], []
    # one column per cell, written in place (F order: a column is contiguous;
    # pages of the unused tail are never touched)
    inf_all = np.empty((n, cohorts.size * times.size), order="F")
    for g in cohorts:
        treated = wd.g == g
        pre_idx = np.flatnonzero(times + anticipation < g)  # periods before anticipation starts
        if pre_idx.size == 0:
            continue
        g_base = pre_idx[-1]
        for ti in range(times.size):
            if base_period == "universal":
                bi = g_base
            elif times[ti] + anticipation >= g:
                bi = g_base
            else:
                if ti == 0:
                    continue
                bi = ti - 1
            if base_period == "varying" and ti == bi:
                continue
            if control == "never":
                ctrl = never
            else:
                horizon = max(times[ti], times[bi]) + anticipation
                ctrl = never | ((wd.g > horizon) & (wd.g != g))
            if ti == bi:  # the universal reference cell: exactly zero
                inf_all[:, len(atts)] = 0.0
                groups.append(g), tt.append(times[ti]), bb.append(times[bi])
                atts.append(0.0)
                continue
            w1 = wd.w * treated
            w0 = wd.w * ctrl
            s1, s0 = w1.sum(), w0.sum()
            if s1 <= 0 or s0 <= 0:
                warnings.warn(
                    f"ATT({g},{times[ti]}) has no {'treated' if s1 <= 0 else 'comparison'} unit; skipped",
                    UserWarning,
                    stacklevel=4,
                )
                continue
            dy = wd.y[:, ti] - wd.y[:, bi]
            mu1 = (w1 @ dy) / s1
            mu0 = (w0 @ dy) / s0
            # did's IF of the 2x2 regression DID, rescaled by n / n_cell: the n_cell cancels
            inf_all[:, len(atts)] = n * (w1 * (dy - mu1) / s1 - w0 * (dy - mu0) / s0)
            groups.append(g), tt.append(times[ti]), bb.append(times[bi])
            atts.append(mu1 - mu0)
    if not atts:
        raise TreatmentError("no ATT(g,t) can be estimated (no cohort with a pre-period and a comparison group)")
    return _Cells(
        np.asarray(groups, dtype=np.int64),
        np.asarray(tt, dtype=np.int64),
        np.asarray(bb, dtype=np.int64),
        np.asarray(atts, dtype=float),
        inf_all[:, : len(atts)],
    )


# --------------------------------------------------------------------------- variance / bootstrap
def _cluster_sums(inf: np.ndarray, wd: _Wide) -> np.ndarray:
    if wd.by_unit:
        return inf
    out = np.zeros((wd.cluster.max() + 1, inf.shape[1]))
    np.add.at(out, wd.cluster, inf)
    return out


def _vcov(inf: np.ndarray, wd: _Wide) -> np.ndarray:
    s = _cluster_sums(inf, wd)
    n = inf.shape[0]
    return (s.T @ s) / n**2


def _se(inf: np.ndarray, wd: _Wide) -> np.ndarray:
    s = _cluster_sums(inf, wd)
    se = np.sqrt(np.einsum("ij,ij->j", s, s)) / inf.shape[0]
    return np.where(se <= _ZERO_SE, np.nan, se)


@dataclass(frozen=True)
class _BootSpec:
    biters: int
    multipliers: str
    seed: np.random.SeedSequence
    n_jobs: int
    alpha: float


def _draw_multipliers(rng: np.random.Generator, size: tuple[int, int], kind: str) -> np.ndarray:
    if kind == "rademacher":
        return rng.integers(0, 2, size=size).astype(np.float64) * 2.0 - 1.0
    if kind == "mammen":
        s5 = np.sqrt(5.0)
        lo, hi = (1.0 - s5) / 2.0, (1.0 + s5) / 2.0
        return np.where(rng.random(size) < (s5 + 1.0) / (2.0 * s5), lo, hi)
    raise ValueError(f"multipliers must be 'rademacher' or 'mammen', got {kind!r}")


def _bootstrap(inf: np.ndarray, wd: _Wide, spec: _BootSpec) -> tuple[np.ndarray, float]:
    """Multiplier bootstrap (did's ``mboot``): bootstrap SEs (IQR-based) and the sup-t critical value."""
    s = np.ascontiguousarray(_cluster_sums(inf, wd))
    n = inf.shape[0]
    nc = s.shape[0]
    n_blocks = -(-spec.biters // _BOOT_BLOCK)
    blocks = [(i, min(_BOOT_BLOCK, spec.biters - i * _BOOT_BLOCK)) for i in range(n_blocks)]

    def one(block: tuple[int, int]) -> np.ndarray:
        i, size = block
        v = _draw_multipliers(block_generator(spec.seed, i), (size, nc), spec.multipliers)
        return _multiplier_sums(v, s, float(n))

    draws = np.vstack(run_blocks(one, blocks, n_jobs=spec.n_jobs, desc="multiplier bootstrap"))
    q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    ok = se > _ZERO_SE
    se = np.where(ok, se, np.nan)
    if not ok.any():
        return se, float(stats.norm.ppf(1 - spec.alpha / 2))
    tmax = np.max(np.abs(draws[:, ok] / se[ok]), axis=1)
    crit = float(np.quantile(tmax, 1 - spec.alpha))
    return se, crit


# --------------------------------------------------------------------------- aggregation
def _wif_dot(pk: np.ndarray, gk: np.ndarray, v: np.ndarray, wd: _Wide) -> np.ndarray:
    """``wif @ v`` for did's ``wif``, the influence function of the estimated
    aggregation weights ``pk / sum(pk)`` (cells of cohorts ``gk``), without
    forming the units x cells matrix: with ``c_ij = w_i 1[g_i = gk_j] - pk_j``,
    ``wif = c / T - rowsum(c) pk' / T^2`` (T = sum pk)."""
    total = pk.sum()
    cohorts, pos = np.unique(gk, return_inverse=True)
    # per unit: the sum of v (and the count) over the cells of its own cohort
    v_by = np.bincount(pos, weights=v, minlength=cohorts.size)
    n_by = np.bincount(pos, minlength=cohorts.size).astype(float)
    at = np.searchsorted(cohorts, wd.g).clip(0, cohorts.size - 1)
    mine = cohorts[at] == wd.g
    cv = wd.w * np.where(mine, v_by[at], 0.0) - pk @ v
    c1 = wd.w * np.where(mine, n_by[at], 0.0) - total
    return cv / total - c1 * ((pk @ v) / total**2)


@dataclass(eq=False)
class CSAggregate:
    """One aggregation of the ATT(g,t) (``kind`` in simple, dynamic, group, calendar).

    Attributes
    ----------
    kind : str
    estimate, se : float
        The overall aggregated ATT and its standard error.
    labels : ndarray
        Event times (dynamic), cohorts (group) or periods (calendar); empty for simple.
    estimates, ses : ndarray
        The per-label aggregated effects and their standard errors.
    crit : float
        Critical value of the per-label intervals (sup-t if bootstrapped, else normal).
    inf, inf_overall : ndarray
        Influence functions (n x labels, and n) on did's scale.
    """

    kind: str
    estimate: float
    se: float
    labels: np.ndarray
    estimates: np.ndarray
    ses: np.ndarray
    crit: float
    alpha: float
    inf: np.ndarray = field(repr=False)
    inf_overall: np.ndarray = field(repr=False)

    _LABEL = {"dynamic": "rel_time", "group": "cohort", "calendar": "time", "simple": "label"}

    def tidy(self) -> pl.DataFrame:
        """Per-label rows then the overall row: ``term, <label>, estimate, se, ci_low, ci_high``.

        The label column is ``rel_time`` (dynamic), ``cohort`` (group) or ``time``
        (calendar), null on the ``overall`` row. Per-label intervals use ``crit``
        (uniform when bootstrapped); the overall interval is pointwise normal.
        """
        z = stats.norm.ppf(1 - self.alpha / 2)
        name = self._LABEL[self.kind]
        terms = [f"{name}={int(v)}" for v in self.labels] + ["overall"]
        est = np.append(self.estimates, self.estimate)
        se = np.append(self.ses, self.se)
        crit = np.append(np.full(self.labels.size, self.crit), z)
        return pl.DataFrame(
            {
                "term": terms,
                name: pl.Series(name, [int(v) for v in self.labels] + [None], dtype=pl.Int64),
                "estimate": est,
                "se": se,
                "ci_low": est - crit * se,
                "ci_high": est + crit * se,
            }
        )

    def summary(self) -> str:
        """Printable table."""
        return f"Callaway-Sant'Anna aggregation: {self.kind}\n{self.tidy()}"

    def __repr__(self) -> str:
        return f"CSAggregate(kind={self.kind!r}, estimate={self.estimate:.6g}, se={self.se:.6g})"


def _aggregate(
    kind: AggKind,
    cells: _Cells,
    wd: _Wide,
    window: tuple[float, float],
    alpha: float,
    boot: _BootSpec | None,
) -> CSAggregate:
    att, inf = cells.att, cells.inf
    grp, tim = cells.group, cells.time
    pg_cohort = {g: float(np.mean(wd.w * (wd.g == g))) for g in np.unique(grp)}
    pg = np.array([pg_cohort[g] for g in grp])
    post = grp <= tim
    z = float(stats.norm.ppf(1 - alpha / 2))

    def combine(keep: np.ndarray, weights: np.ndarray, with_wif: bool) -> np.ndarray:
        w_all = np.zeros(att.size)
        w_all[keep] = weights  # a product over every cell: no copy of inf[:, keep]
        f = inf @ w_all
        if with_wif:
            f += _wif_dot(pg[keep], grp[keep], att[keep], wd)
        return f

    if kind == "simple":
        keep = np.flatnonzero(post)
        wts = pg[keep] / pg[keep].sum()
        f = combine(keep, wts, True)
        est = float(att[keep] @ wts)
        labels = np.array([], dtype=np.int64)
        inf_l = np.zeros((inf.shape[0], 0))
        est_l = np.array([])
    elif kind == "group":
        labels = np.unique(grp)
        est_l, cols = [], []
        for g in labels:
            keep = np.flatnonzero((grp == g) & post)
            wts = pg[keep] / pg[keep].sum()
            est_l.append(att[keep] @ wts), cols.append(combine(keep, wts, False))
        est_l, inf_l = np.asarray(est_l), np.column_stack(cols)
        pgg = np.array([pg_cohort[g] for g in labels])
        wts = pgg / pgg.sum()
        est = float(est_l @ wts)
        # weights' own IF, over cohorts (did: wif with keepers = all cohorts)
        f = inf_l @ wts + _wif_dot(pgg, labels, est_l, wd)
    elif kind == "dynamic":
        e_all = tim - grp
        labels = np.unique(e_all)
        labels = labels[(labels >= window[0]) & (labels <= window[1])]
        if labels.size == 0:
            raise TreatmentError(f"no event time falls in window={window}")
        est_l, cols = [], []
        for e in labels:
            keep = np.flatnonzero(e_all == e)
            wts = pg[keep] / pg[keep].sum()
            est_l.append(att[keep] @ wts), cols.append(combine(keep, wts, True))
        est_l, inf_l = np.asarray(est_l), np.column_stack(cols)
        epos = labels >= 0
        if not epos.any():
            raise TreatmentError(f"window={window} contains no post-adoption event time")
        est = float(est_l[epos].mean())
        f = inf_l[:, epos].mean(axis=1)
    elif kind == "calendar":
        labels = np.array([t for t in wd.times if t >= grp.min() and np.any((tim == t) & post)], dtype=np.int64)
        est_l, cols = [], []
        for t in labels:
            keep = np.flatnonzero((tim == t) & post)
            wts = pg[keep] / pg[keep].sum()
            est_l.append(att[keep] @ wts), cols.append(combine(keep, wts, True))
        est_l, inf_l = np.asarray(est_l), np.column_stack(cols)
        est = float(est_l.mean())
        f = inf_l.mean(axis=1)
    else:
        raise ValueError(f"kind must be one of 'simple', 'dynamic', 'group', 'calendar'; got {kind!r}")

    if boot is None:
        se = float(_se(f[:, None], wd)[0])
        ses = _se(inf_l, wd) if inf_l.shape[1] else np.array([])
        crit = z
    else:
        se = float(_bootstrap(f[:, None], wd, boot)[0][0])
        if inf_l.shape[1]:
            ses, crit = _bootstrap(inf_l, wd, boot)
            crit = max(crit, z)  # did falls back to pointwise when the band is narrower
        else:
            ses, crit = np.array([]), z
    return CSAggregate(kind, est, se, labels, np.asarray(est_l, dtype=float), ses, crit, alpha, inf_l, f)


# --------------------------------------------------------------------------- result
class CSResult:
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
    base_period, control, anticipation, alpha, n_units : as given / as used.
    """

    method = "cs"

    def __init__(self, cells: _Cells, wd: _Wide, *, window, control, anticipation, base_period, alpha, boot):
        self._cells = cells
        self._wd = wd
        self.window = tuple(window)
        self.control = control
        self.anticipation = int(anticipation)
        self.base_period = base_period
        self.alpha = float(alpha)
        self._boot = boot
        self.bootstrap = boot is not None
        self.n_units = int(wd.g.size)
        self.ref = -1 - self.anticipation
        self._aggs: dict[str, CSAggregate] = {}
        dyn = self.aggregate("dynamic")
        self.rel_time = dyn.labels.astype(np.int64)
        self.coef = dyn.estimates.copy()
        self.vcov = _vcov(dyn.inf, wd)
        self.se = np.nan_to_num(dyn.ses, nan=0.0)
        self.crit = dyn.crit
        if boot is None:
            self._cell_se = _se(cells.inf, wd)
            self._cell_crit = float(stats.norm.ppf(1 - alpha / 2))
        else:
            self._cell_se, self._cell_crit = _bootstrap(cells.inf, wd, boot)

    # -- aggregations
    def aggregate(self, kind: AggKind = "dynamic") -> CSAggregate:
        """Aggregate the ATT(g,t): ``"simple"``, ``"dynamic"``, ``"group"`` or ``"calendar"``."""
        if kind not in self._aggs:
            self._aggs[kind] = _aggregate(kind, self._cells, self._wd, self.window, self.alpha, self._boot)
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
        """Influence functions of the ATT(g,t) (units x cells; ``se = sqrt(sum inf^2) / n``)."""
        return self._cells.inf

    def tidy(self) -> pl.DataFrame:
        """Event-study table: ``rel_time, estimate, se, ci_low, ci_high``.

        Intervals use the sup-t critical value when ``bootstrap=True`` (uniform
        band), else the normal one.
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

    def pretrend_test(self) -> dict[str, float]:
        """Joint Wald test that the pre-adoption event-time effects are all zero.

        Uses the event times ``< 0`` inside ``window`` (excluding any with zero
        variance, i.e. the universal reference period) and the analytic covariance.
        Returns ``{"stat", "df", "pvalue"}`` (chi-squared).
        """
        pre = (self.rel_time < 0) & (np.diag(self.vcov) > _ZERO_SE**2)
        if not pre.any():
            raise TreatmentError("no pre-adoption event time with positive variance to test")
        b = self.coef[pre]
        v = self.vcov[np.ix_(pre, pre)]
        rank = np.linalg.matrix_rank(v)
        stat = float(b @ np.linalg.pinv(v) @ b)
        return {"stat": stat, "df": int(rank), "pvalue": float(stats.chi2.sf(stat, rank))}

    def summary(self) -> str:
        """Printable summary (overall ATTs and the event study)."""
        lines = [
            "Callaway-Sant'Anna (2021)",
            f"control group: {self.control}   base period: {self.base_period}   "
            f"anticipation: {self.anticipation}   units: {self.n_units}",
        ]
        for kind in ("simple", "dynamic", "group", "calendar"):
            a = self.aggregate(kind)
            lines.append(f"overall ATT ({kind:8s}): {a.estimate: .6f}  (se {a.se:.6f})")
        lines.append(str(self.tidy()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CSResult(att={self.att:.6g}, n_units={self.n_units}, control={self.control!r})"

    def plot(self, path: str | None = None, *, ax: Any = None):
        """Event-study figure: estimates with intervals against event time.

        Returns the matplotlib Figure; saves it to ``path`` if given.
        """
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 4))
        else:
            fig = ax.figure
        tab = self.tidy()
        pre = self.rel_time < 0
        err = np.vstack([self.coef - tab["ci_low"].to_numpy(), tab["ci_high"].to_numpy() - self.coef])
        for mask, colour, label in ((pre, "tab:red", "pre-adoption"), (~pre, "tab:blue", "post-adoption")):
            if mask.any():
                ax.errorbar(self.rel_time[mask], self.coef[mask], yerr=err[:, mask], fmt="o", color=colour,
                            capsize=3, label=label)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.axvline(-0.5 - self.anticipation, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("event time (periods since adoption)")
        ax.set_ylabel("ATT (Callaway-Sant'Anna)")
        band = "uniform" if self.bootstrap else "pointwise"
        ax.set_title(f"Event study ({band} {100 * (1 - self.alpha):.0f}% intervals)")
        ax.legend(frameon=False)
        if path is not None:
            fig.savefig(path, bbox_inches="tight", dpi=150)
        return fig


# --------------------------------------------------------------------------- entry points
def callaway_santanna(
    sd: StaggeredData,
    *,
    window: tuple[float, float] = (-5, 5),
    control: ControlGroup = "never",
    anticipation: int = 0,
    base_period: BasePeriod = "varying",
    bootstrap: bool = False,
    biters: int = 999,
    multipliers: Literal["rademacher", "mammen"] = "rademacher",
    alpha: float = 0.05,
    seed: SeedLike = 0,
    n_jobs: int = 1,
) -> CSResult:
    """Callaway-Sant'Anna ATT(g,t), their aggregations and influence-function inference.

    Parameters
    ----------
    sd : StaggeredData
        From :func:`staggerlab.inference.staggered_data.prepare`. Unbalanced
        panels are balanced by dropping incomplete units (as ``did``); units
        treated in the first period are dropped. Weights must be unit-level.
    window : (low, high)
        Event times kept in the dynamic aggregation (``rel_time``/``coef``); the
        overall dynamic ATT averages the kept event times ``>= 0``.
    control : {"never", "notyet"}
        Comparison group: never-treated units, or never- plus not-yet-treated.
    anticipation : int
        Periods of anticipation (shift of the base period).
    base_period : {"varying", "universal"}
        See the module docstring.
    bootstrap : bool
        Multiplier bootstrap (``biters`` draws, ``multipliers`` weights on the
        cluster sums of the influence functions): bootstrap SEs and uniform
        bands. Draws are made in fixed blocks seeded by block index, so the
        result does not depend on ``n_jobs``.
    alpha : float
        Significance level of the intervals.
    seed : int, Generator, SeedSequence or None
    n_jobs : int
        joblib workers for the bootstrap blocks.

    Returns
    -------
    CSResult
    """
    if not isinstance(sd, StaggeredData):
        raise TypeError("callaway_santanna takes a StaggeredData (see staggered_data.prepare) or use cs(data, ...)")
    if sd.controls:
        raise CovariatesNotSupportedError(
            f"covariates {sd.controls} (conditional parallel trends) are not implemented for "
            "Callaway-Sant'Anna yet; drop controls= for the unconditional estimator"
        )
    if control not in ("never", "notyet"):
        raise ValueError(f"control must be 'never' or 'notyet', got {control!r}")
    if base_period not in ("varying", "universal"):
        raise ValueError(f"base_period must be 'varying' or 'universal', got {base_period!r}")
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if int(anticipation) != anticipation or anticipation < 0:
        raise ValueError(f"anticipation must be a non-negative integer, got {anticipation}")
    if len(window) != 2 or window[0] > window[1]:
        raise ValueError(f"window must be (low, high) with low <= high, got {window}")
    boot = None
    if bootstrap:
        if int(biters) < 2:
            raise ValueError("biters must be at least 2")
        if multipliers not in ("rademacher", "mammen"):
            raise ValueError(f"multipliers must be 'rademacher' or 'mammen', got {multipliers!r}")
        boot = _BootSpec(int(biters), multipliers, resolve_entropy(seed), n_jobs, float(alpha))
    wd = _to_wide(sd, int(anticipation))
    cells = _att_gt(wd, control, int(anticipation), base_period)
    return CSResult(
        cells, wd, window=window, control=control, anticipation=anticipation,
        base_period=base_period, alpha=alpha, boot=boot,
    )


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

    ``cohort`` is the adoption-period column (0 or null = never treated), or give
    ``treat`` (an absorbing 0/1 treatment). Remaining keywords (``window``,
    ``control``, ``anticipation``, ``base_period``, ``bootstrap``, ``biters``,
    ``multipliers``, ``alpha``, ``seed``, ``n_jobs``) go to
    :func:`callaway_santanna`.

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.cs import cs
    >>> df = sl.simulate.staggered(200, 8, seed=1)
    >>> res = cs(df, y="y", unit="unit", time="time", cohort="cohort")
    >>> res.aggregate("simple").estimate  # doctest: +SKIP
    """
    sd = prepare(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat, controls=controls,
                 cluster=cluster, weights=weights)
    return callaway_santanna(sd, **options)
