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

from ..._parallel import run_blocks
from ..._seed import SeedLike, block_generator, resolve_entropy
from ..._validate import alpha_of
from ...errors import (
    ArgumentError,
    ArgumentTypeError,
    CovariatesNotSupportedError,
    MissingValueWarning,
    TreatmentError,
)
from ...kernels.cs import influence_rows, multiplier_sums
from ...panels.panel import run_lengths
from ..results import Aggregate, PretrendTest, Result
from .staggered_data import COHORT, StaggeredData, prepare

__all__ = [
    "callaway_santanna",
    "cs",
    "CSResult",
    "CSTuning",
    "CSAggregate",
    "CovariatesNotSupportedError",
]

ControlGroup = Literal["never", "notyet"]
BasePeriod = Literal["varying", "universal"]
AggKind = Literal["simple", "dynamic", "group", "calendar"]

_BOOT_BLOCK = 128  # draws per seeded block: fixed, so results do not depend on n_jobs
_ZERO_SE = np.sqrt(np.finfo(float).eps) * 10  # did's threshold for "no variance"


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


# --------------------------------------------------------------------------- data
@dataclass(eq=False)
class _Wide:
    """Balanced panel in wide form: one row per unit."""

    y: np.ndarray  # n x T outcomes (a view of the frame's column when it is float64)
    g: np.ndarray  # n adoption period (0 = never)
    w: np.ndarray  # n unit weights (ones if unweighted)
    cluster: np.ndarray  # n dense cluster codes (unit codes if clustered by unit)
    times: np.ndarray  # T periods
    by_unit: bool  # clustered by unit (no summing of influence functions)


def _unit_layout(sd: StaggeredData) -> tuple[np.ndarray, np.ndarray]:
    """Rows and adoption period of each unit, in frame order (sorted by unit)."""
    if sd.unit_cohort is not None:
        return sd.unit_rows, sd.unit_cohort
    lens = run_lengths(sd.frame[sd.unit])
    starts = np.cumsum(lens) - lens
    return lens, sd.frame[COHORT].to_numpy()[starts].astype(np.int64)


def _to_wide(sd: StaggeredData, anticipation: int) -> _Wide:
    frame = sd.frame
    times = sd.times
    n_t = times.size
    lens, g = _unit_layout(sd)
    keep = lens == n_t
    if not keep.all():
        warnings.warn(
            f"Callaway-Sant'Anna needs a balanced panel; dropped {int((~keep).sum())} unit(s) not observed "
            f"in all {n_t} periods",
            MissingValueWarning,
            stacklevel=4,
        )
    first = times[0]
    early = keep & (g > 0) & (g <= first + anticipation)
    if early.any():
        warnings.warn(
            f"dropped {int(early.sum())} unit(s) already treated in the first period "
            f"({first}{' + anticipation' if anticipation else ''}); they have no pre-period",
            UserWarning,
            stacklevel=4,
        )
        keep &= ~early
    if not keep.any():
        raise TreatmentError("no unit is left after balancing the panel")
    if not keep.all():  # one copy of the frame, without the dropped units
        frame = frame.filter(pl.Series(np.repeat(keep, lens)))
        g = g[keep]
    n = g.size
    # prepare() sorted the rows by (unit, time) with no pair repeated, so a
    # unit with all n_t rows has exactly the periods `times`, in order: the
    # long columns reshape to units x periods as they are (no copy for float64)
    y = frame[sd.y].cast(pl.Float64).to_numpy().reshape(n, n_t)
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
_NEVER_ONLY = np.iinfo(np.int64).max  # horizon of a cell whose comparison group is the never-treated


@dataclass(eq=False)
class _Cells:
    """The ATT(g,t) and what their influence functions are made of.

    Cell c compares the treated cohort ``group[c]`` with the units never
    treated or (not-yet design) treated after ``horizon[c]``, on the outcome
    change ``y[:, t_idx] - y[:, b_idx]``. Its influence function (did's
    scaling, ``se = sqrt(sum inf^2) / n``) is
    ``n w_i (dy_i - mu1) / s1`` on its treated units,
    ``-n w_i (dy_i - mu0) / s0`` on its comparison units and 0 elsewhere:
    it is recomputed from the outcomes when needed, never stored as a
    units x cells matrix (360 MB at a million units).
    """

    group: np.ndarray  # k cohort of each cell
    time: np.ndarray  # k period
    base: np.ndarray  # k base period
    att: np.ndarray  # k
    t_idx: np.ndarray  # k column of the period in the wide outcomes
    b_idx: np.ndarray  # k column of the base period
    horizon: np.ndarray  # k comparison units: g == 0 or (g > horizon and g != group)
    mu1: np.ndarray  # k weighted mean change of the treated
    mu0: np.ndarray  # k ... of the comparison units
    s1: np.ndarray  # k treated weight (0: the universal reference cell, identically 0)
    s0: np.ndarray  # k comparison weight
    cohorts: np.ndarray  # G distinct cohorts of the cells
    gidx: np.ndarray  # n each unit's position in `cohorts` (-1: none)


def _att_gt(wd: _Wide, control: ControlGroup, anticipation: int, base_period: BasePeriod) -> _Cells:
    times = wd.times
    cohorts = np.unique(wd.g[wd.g > 0])
    cohorts = cohorts[cohorts > times[0] + anticipation]
    never = wd.g == 0
    if control == "never" and not never.any():
        raise TreatmentError(
            "no never-treated unit: use control='notyet' (or drop the periods after the last adoption)"
        )
    rows: list[tuple] = []  # (g, t, b, att, ti, bi, horizon, mu1, mu0, s1, s0)
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
                horizon = _NEVER_ONLY
                ctrl = never
            else:
                horizon = int(max(times[ti], times[bi]) + anticipation)
                ctrl = never | ((wd.g > horizon) & (wd.g != g))
            if ti == bi:  # the universal reference cell: exactly zero
                rows.append((g, times[ti], times[bi], 0.0, ti, bi, horizon, 0.0, 0.0, 0.0, 1.0))
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
            rows.append((g, times[ti], times[bi], mu1 - mu0, ti, bi, horizon, mu1, mu0, s1, s0))
    if not rows:
        raise TreatmentError("no ATT(g,t) can be estimated (no cohort with a pre-period and a comparison group)")
    cols = list(zip(*rows))
    ints = [np.asarray(c, dtype=np.int64) for c in cols[:3]]
    idx = [np.asarray(c, dtype=np.int64) for c in cols[4:7]]
    flt = [np.asarray(c, dtype=float) for c in cols[7:]]
    cell_cohorts = np.unique(ints[0])
    at = np.searchsorted(cell_cohorts, wd.g).clip(0, cell_cohorts.size - 1)
    gidx = np.where(cell_cohorts[at] == wd.g, at, -1)
    return _Cells(*ints, np.asarray(cols[3], dtype=float), *idx, *flt, cell_cohorts, gidx)


# --------------------------------------------------------------------------- influence functions


@dataclass(eq=False)
class _IFMap:
    """Influence functions of linear combinations of the ATT(g,t): column j is
    ``inf @ W[:, j]`` plus the weights' term ``w_i A[j, cohort_i]``."""

    cells: _Cells
    wd: _Wide
    W: np.ndarray  # k x m
    A: np.ndarray  # m x G
    chunk: int  # units per chunk of rows (CSTuning.if_chunk)

    def _chunks(self):
        c, wd = self.cells, self.wd
        n = wd.g.size
        W, A = np.ascontiguousarray(self.W), np.ascontiguousarray(self.A)
        buf = np.empty((min(self.chunk, n), W.shape[1]))
        for lo in range(0, n, self.chunk):
            hi = min(lo + self.chunk, n)
            out = buf[: hi - lo]
            influence_rows(wd.y, wd.g, wd.w, c.gidx, lo, hi, float(n), c.t_idx, c.b_idx, c.group, c.horizon,
                     c.mu1, c.mu0, c.s1, c.s0, W, A, out)
            yield lo, hi, out

    def matrix(self) -> np.ndarray:
        """The units x m influence functions (materialized: n x m floats)."""
        out = np.empty((self.wd.g.size, self.W.shape[1]))
        for lo, hi, rows in self._chunks():
            out[lo:hi] = rows
        return out

    def cluster_sums(self) -> np.ndarray:
        """Sums of the influence functions by cluster (clusters x m)."""
        if self.wd.by_unit:
            return self.matrix()
        out = np.zeros((int(self.wd.cluster.max()) + 1, self.W.shape[1]))
        for lo, hi, rows in self._chunks():
            np.add.at(out, self.wd.cluster[lo:hi], rows)
        return out

    def gram(self, full: bool = True) -> np.ndarray:
        """``S'S`` of the cluster sums S (m x m), or only its diagonal: one
        streaming pass over the units when clusters are units."""
        if not self.wd.by_unit:
            s = self.cluster_sums()
            return s.T @ s if full else np.einsum("ij,ij->j", s, s)
        m = self.W.shape[1]
        acc = np.zeros((m, m)) if full else np.zeros(m)
        for _, _, rows in self._chunks():
            acc += rows.T @ rows if full else np.einsum("ij,ij->j", rows, rows)
        return acc


def _se_from_gram(diag: np.ndarray, n: int) -> np.ndarray:
    se = np.sqrt(diag) / n
    return np.where(se <= _ZERO_SE, np.nan, se)


# --------------------------------------------------------------------------- variance / bootstrap
@dataclass(frozen=True)
class _BootSpec:
    biters: int
    multipliers: str
    seed: np.random.SeedSequence
    n_jobs: int
    alpha: float
    multipliers_at_once: int  # CSTuning.boot_multipliers


def _draw_multipliers(rng: np.random.Generator, size: tuple[int, int], kind: str) -> np.ndarray:
    if kind == "rademacher":
        return rng.integers(0, 2, size=size).astype(np.float64) * 2.0 - 1.0
    if kind == "mammen":
        s5 = np.sqrt(5.0)
        lo, hi = (1.0 - s5) / 2.0, (1.0 + s5) / 2.0
        return np.where(rng.random(size) < (s5 + 1.0) / (2.0 * s5), lo, hi)
    raise ArgumentError(f"multipliers must be 'rademacher' or 'mammen', got {kind!r}")


def _bootstrap(s: np.ndarray, n: int, spec: _BootSpec, band: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Multiplier bootstrap (did's ``mboot``) on the cluster sums ``s``
    (clusters x m): bootstrap SEs (IQR-based) of the m columns and the sup-t
    critical value over the columns in ``band`` (all if None). Each column's
    draws depend on its own sums only, so a column's SE is the same whatever
    other columns are bootstrapped with it."""
    s = np.ascontiguousarray(s)
    nc = s.shape[0]
    n_blocks = -(-spec.biters // _BOOT_BLOCK)
    blocks = [(i, min(_BOOT_BLOCK, spec.biters - i * _BOOT_BLOCK)) for i in range(n_blocks)]

    # draws are made a few rows at a time (a block of 128 draws for a million
    # clusters would be a 1 GB matrix); numpy's Generator yields the same
    # stream whether a block's rows are drawn at once or in pieces
    rows_at_once = max(1, spec.multipliers_at_once // max(nc, 1))

    def one(block: tuple[int, int]) -> np.ndarray:
        i, size = block
        rng = block_generator(spec.seed, i)
        out = []
        for lo in range(0, size, rows_at_once):
            v = _draw_multipliers(rng, (min(rows_at_once, size - lo), nc), spec.multipliers)
            out.append(multiplier_sums(v, s, float(n)))
        return np.vstack(out)

    draws = np.vstack(run_blocks(one, blocks, n_jobs=spec.n_jobs, desc="multiplier bootstrap"))
    q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    ok = se > _ZERO_SE
    se = np.where(ok, se, np.nan)
    if band is not None:
        ok &= band
    if not ok.any():
        return se, float(stats.norm.ppf(1 - spec.alpha / 2))
    tmax = np.max(np.abs(draws[:, ok] / se[ok]), axis=1)
    crit = float(np.quantile(tmax, 1 - spec.alpha))
    return se, crit


# --------------------------------------------------------------------------- aggregation
def _wif_coef(pk: np.ndarray, gk: np.ndarray, v: np.ndarray, cohorts: np.ndarray) -> np.ndarray:
    """``wif @ v`` for did's ``wif`` (the influence function of the estimated
    aggregation weights ``pk / sum(pk)`` of cells of cohorts ``gk``) is
    ``w_i a[cohort_i]``: returns ``a`` over ``cohorts`` (0 for a cohort not in
    ``gk``). With ``c_ij = w_i 1[g_i = gk_j] - pk_j`` and ``T = sum pk``,
    ``wif = c / T - rowsum(c) pk' / T^2``; the terms without ``w_i`` cancel."""
    total = pk.sum()
    pos = np.searchsorted(cohorts, gk)
    v_by = np.bincount(pos, weights=v, minlength=cohorts.size)  # per cohort: sum of v over its cells
    n_by = np.bincount(pos, minlength=cohorts.size).astype(float)
    return v_by / total - n_by * ((pk @ v) / total**2)


@dataclass(eq=False)
class CSAggregate(Aggregate):
    """One aggregation of the ATT(g,t) (``kind`` in simple, dynamic, group, calendar).

    An :class:`~staggerlab.inference.results.Aggregate` (``components`` are the
    per-label effects; ``df`` is None: normal inference) with the influence
    functions and the bootstrap critical value besides.

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
    vcov : ndarray
        Analytic covariance of ``estimates`` (labels x labels).
    inf, inf_overall : ndarray
        Influence functions (n x labels, and n) on did's scale, computed from
        the outcomes on access (they are not stored: n x labels floats).
    """

    kind: str
    estimate: float
    se: float
    labels: np.ndarray
    estimates: np.ndarray
    ses: np.ndarray
    crit: float
    alpha: float
    vcov: np.ndarray = field(repr=False)
    _map: _IFMap = field(repr=False)

    @property
    def inf(self) -> np.ndarray:
        """Influence functions of the per-label estimates (units x labels)."""
        return self._map.matrix()[:, :-1]

    @property
    def inf_overall(self) -> np.ndarray:
        """Influence function of the overall estimate (units)."""
        m = self._map
        return _IFMap(m.cells, m.wd, m.W[:, -1:], m.A[-1:], m.chunk).matrix()[:, 0]

    _LABEL = {"dynamic": "rel_time", "group": "cohort", "calendar": "time", "simple": "label"}
    df = None

    @property
    def components(self) -> pl.DataFrame | None:
        """The per-label effects ``level, estimate, se`` (None for ``simple``)."""
        if self.kind == "simple":
            return None
        return pl.DataFrame({"level": self.labels, "estimate": self.estimates, "se": self.ses})

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
    if_chunk: int,
) -> CSAggregate:
    att, grp, tim, cohorts = cells.att, cells.group, cells.time, cells.cohorts
    k, n_coh = att.size, cohorts.size
    pg_cohort = {g: float(np.mean(wd.w * (wd.g == g))) for g in cohorts}
    pg = np.array([pg_cohort[g] for g in grp])
    post = grp <= tim
    z = float(stats.norm.ppf(1 - alpha / 2))

    def column(keep: np.ndarray, with_wif: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """A pg-weighted average of the cells ``keep``: estimate, W column, A row."""
        wts = pg[keep] / pg[keep].sum()
        w_col = np.zeros(k)
        w_col[keep] = wts
        a_row = _wif_coef(pg[keep], grp[keep], att[keep], cohorts) if with_wif else np.zeros(n_coh)
        return float(att[keep] @ wts), w_col, a_row

    if kind == "simple":
        est, w_col, a_row = column(np.flatnonzero(post), True)
        labels, est_l = np.array([], dtype=np.int64), np.array([])
        W, A = np.zeros((k, 0)), np.zeros((0, n_coh))
        w_all, a_all = w_col, a_row
    else:
        if kind == "group":
            labels = np.unique(grp)
            parts = [column(np.flatnonzero((grp == g) & post), False) for g in labels]
        elif kind == "dynamic":
            e_all = tim - grp
            labels = np.unique(e_all)
            labels = labels[(labels >= window[0]) & (labels <= window[1])]
            if labels.size == 0:
                raise TreatmentError(f"no event time falls in window={window}")
            parts = [column(np.flatnonzero(e_all == e), True) for e in labels]
        elif kind == "calendar":
            labels = np.array([t for t in wd.times if t >= grp.min() and np.any((tim == t) & post)], dtype=np.int64)
            parts = [column(np.flatnonzero((tim == t) & post), True) for t in labels]
        else:
            raise ArgumentError(f"kind must be one of 'simple', 'dynamic', 'group', 'calendar'; got {kind!r}")
        est_l = np.array([p[0] for p in parts])
        W = np.column_stack([p[1] for p in parts])
        A = np.vstack([p[2] for p in parts])
        if kind == "group":
            pgg = np.array([pg_cohort[g] for g in labels])
            wts = pgg / pgg.sum()
            est = float(est_l @ wts)
            # plus the cohort weights' own IF (did: wif with keepers = all cohorts)
            w_all, a_all = W @ wts, A.T @ wts + _wif_coef(pgg, labels, est_l, cohorts)
        elif kind == "dynamic":
            epos = labels >= 0
            if not epos.any():
                raise TreatmentError(f"window={window} contains no post-adoption event time")
            est = float(est_l[epos].mean())
            w_all, a_all = W[:, epos].mean(axis=1), A[epos].mean(axis=0)
        else:
            est = float(est_l.mean())
            w_all, a_all = W.mean(axis=1), A.mean(axis=0)
    # the labels' influence functions and the overall one, as one map: one pass over the units
    ifmap = _IFMap(cells, wd, np.column_stack([W, w_all]), np.vstack([A, a_all]), if_chunk)
    m = labels.size
    n = wd.g.size
    if boot is None:
        gram = ifmap.gram()
        se_all = _se_from_gram(np.diag(gram).copy(), n)
        crit = z
    else:
        sums = ifmap.cluster_sums()
        gram = sums.T @ sums
        se_all, crit = _bootstrap(sums, n, boot, band=np.arange(m + 1) < m)
        del sums
        crit = max(crit, z) if m else z  # did falls back to pointwise when the band is narrower
    return CSAggregate(kind, est, float(se_all[m]), labels, np.asarray(est_l, dtype=float), se_all[:m], crit,
                       alpha, gram[:m, :m] / n**2, ifmap)


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
    base_period, control, anticipation, level, n_units : as given / as used.
    alpha : float
        ``1 - level`` (the size of the tests).
    """

    method = "cs"

    def __init__(self, cells: _Cells, wd: _Wide, *, window, control, anticipation, base_period, level, boot,
                 tuning: CSTuning = CSTuning()):
        self._cells = cells
        self._wd = wd
        self.window = tuple(window)
        self.control = control
        self.anticipation = int(anticipation)
        self.base_period = base_period
        self.level = float(level)
        self.alpha = alpha = alpha_of(level)
        self._boot = boot
        self._tuning = tuning
        self.bootstrap = boot is not None
        self.n_units = int(wd.g.size)
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
            self._cell_se = _se_from_gram(cell_map.gram(full=False), self.n_units)
            self._cell_crit = float(stats.norm.ppf(1 - alpha / 2))
        else:
            self._cell_se, self._cell_crit = _bootstrap(cell_map.cluster_sums(), self.n_units, boot)

    def _cell_map(self) -> _IFMap:
        k, n_coh = self._cells.att.size, self._cells.cohorts.size
        return _IFMap(self._cells, self._wd, np.eye(k), np.zeros((k, n_coh)), self._tuning.if_chunk)

    # -- aggregations
    def aggregate(self, kind: AggKind = "dynamic") -> CSAggregate:
        """Aggregate the ATT(g,t): ``"simple"``, ``"dynamic"``, ``"group"`` or ``"calendar"``."""
        if kind not in self._aggs:
            self._aggs[kind] = _aggregate(kind, self._cells, self._wd, self.window, self.alpha, self._boot,
                                          self._tuning.if_chunk)
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

        Computed from the outcomes on each access (units x cells floats; they
        are not kept with the result)."""
        return self._cell_map().matrix()

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

    def pretrend_test(self) -> PretrendTest:
        """Joint Wald test that the pre-adoption event-time effects are all zero.

        Uses the event times ``< 0`` inside ``window`` (excluding any with zero
        variance, i.e. the universal reference period) and the analytic covariance;
        chi-squared reference (``test["stat"]``, ``["df"]``, ``["pvalue"]`` as before).
        """
        pre = (self.rel_time < 0) & (np.diag(self.vcov) > _ZERO_SE**2)
        if not pre.any():
            raise TreatmentError("no pre-adoption event time with positive variance to test")
        b = self.coef[pre]
        v = self.vcov[np.ix_(pre, pre)]
        rank = np.linalg.matrix_rank(v)
        stat = float(b @ np.linalg.pinv(v) @ b)
        return PretrendTest(stat, int(rank), None, self.rel_time[pre].tolist())

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
    bootstrap: bool = False,
    biters: int = 999,
    multipliers: Literal["rademacher", "mammen"] = "rademacher",
    level: float = 0.95,
    seed: SeedLike = 0,
    n_jobs: int = 1,
    tuning: CSTuning = CSTuning(),
) -> CSResult:
    """Callaway-Sant'Anna ATT(g,t), their aggregations and influence-function inference.

    Parameters
    ----------
    sd : StaggeredData
        From :func:`staggerlab.inference.did.staggered_data.prepare`. Unbalanced
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
    level : float
        Confidence level of the intervals.
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
    if sd.controls:
        raise CovariatesNotSupportedError(
            f"covariates {sd.controls} (conditional parallel trends) are not implemented for "
            "Callaway-Sant'Anna yet; drop controls= for the unconditional estimator"
        )
    if control not in ("never", "notyet"):
        raise ArgumentError(f"control must be 'never' or 'notyet', got {control!r}")
    if base_period not in ("varying", "universal"):
        raise ArgumentError(f"base_period must be 'varying' or 'universal', got {base_period!r}")
    alpha = alpha_of(level)
    if int(anticipation) != anticipation or anticipation < 0:
        raise ArgumentError(f"anticipation must be a non-negative integer, got {anticipation}")
    if len(window) != 2 or window[0] > window[1]:
        raise ArgumentError(f"window must be (low, high) with low <= high, got {window}")
    boot = None
    if bootstrap:
        if int(biters) < 2:
            raise ArgumentError("biters must be at least 2")
        if multipliers not in ("rademacher", "mammen"):
            raise ArgumentError(f"multipliers must be 'rademacher' or 'mammen', got {multipliers!r}")
        boot = _BootSpec(int(biters), multipliers, resolve_entropy(seed), n_jobs, float(alpha), tuning.boot_multipliers)
    wd = _to_wide(sd, int(anticipation))
    cells = _att_gt(wd, control, int(anticipation), base_period)
    return CSResult(
        cells, wd, window=window, control=control, anticipation=anticipation,
        base_period=base_period, level=level, boot=boot, tuning=tuning,
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
    ``multipliers``, ``level``, ``seed``, ``n_jobs``, ``tuning``) go to
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
