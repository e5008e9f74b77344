"""Placebo (randomization inference) battery: design-respecting draws of a
staggered treatment and exact refits of every draw.

A draw is a unit-level vector of placebo adoption times (0 = untreated); the
placebo treatment is ``D_it = 1[t >= g_i]`` on the rows each unit has. Every
draw's coefficient and t statistic are those of an OLS refit of the fit's
model with the placebo column in place of ``param``; two exact paths compute
them without refitting:

* fast (unit + period FEs, unweighted, iid or CRV1 by a cluster that contains
  the units): per-(unit, adoption time) suffix-sum tables (ARCHITECTURE.md), cost per
  draw independent of the number of rows. A draw is the list of its treated
  units; the CRV1 meat is a Gram-matrix quadratic form plus the treated
  clusters when few clusters are treated per draw, one matrix product per
  chunk of clusters when many are; panels whose tables would exceed
  ``PlaceboTuning.table_budget`` stream their rows instead (two passes per slab of draws);
* general (any FEs, weights, HC1, two-way CRV1): blocks of placebo columns are
  demeaned together, the demeaned controls are partialled out with one matrix
  product (Frisch-Waugh-Lovell), and statistics are column reductions.

Draws come in fixed-size blocks seeded by block index, so results are the same
for any ``n_jobs`` and joblib backend.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import stats as sstats
from threadpoolctl import ThreadpoolController

from ..._parallel import run_blocks
from ..._seed import SeedLike, as_seedsequence, block_generator
from ..._validate import check_alternative, check_draws, check_level
from ...errors import ArgumentError, FormulaError, PanelError, StaggerlabWarning, TreatmentError, VcovError
from ...kernels import placebo as kp
from ...kernels._jit import threads_for
from ...kernels.cluster import cluster_sums
from ...panels.adoption import adoption_times
from ...panels.panel import check_columns, factorize_with_ids
from ..regression.compat import as_feols
from ..regression.feols import Feols
from ..regression.rank import COLLIN_TOL
from ..regression.vcov import VcovSpec, cluster_parts, residual_variance, ssc_factor
from ..regression.within import UnitPeriodWithin
from ..results import Result

__all__ = ["placebo", "placebo_timing", "PlaceboResult", "PlaceboTimingResult", "PlaceboTuning", "BLOCK_SIZE", "SCHEMES"]

#: draws per seeded block; fixed so that a seed always means the same draws.
BLOCK_SIZE = 250
#: doubles in one clusters x draws chunk of the dense meat
DENSE_CHUNK = 1 << 19
#: draws treating at least 1 / MANY_TREATED of the units walk all units
#: (branch-free); fewer gather their rows
MANY_TREATED = 8
#: doubles in one N x B slab of placebo columns on the general path (~64 MB).
GENERAL_SLAB = 8_000_000
SCHEMES = ("units", "timing", "units+timing", "iid")
#: relative tolerance under which a placebo statistic ties the observed one
#: (ties count as at least as extreme: the conservative choice).
TIE_RTOL = 1e-10
_NEVER = np.iinfo(np.int64).max

Scheme = Literal["units", "timing", "units+timing", "iid"]
Alternative = Literal["two-sided", "greater", "less"]


@dataclass(frozen=True)
class PlaceboTuning:
    """Memory bounds of the placebo engines (every setting gives the same statistics).

    Parameters
    ----------
    gram_ratio : float
        The Gram-matrix meat is used when clusters outnumber the treated units
        of a draw by this factor: a treated cluster costs a P-long dot product
        with a row gathered from memory, an untreated one a share of a
        cache-friendly matrix product (rule of thumb; both strategies are exact).
    sampler_slab : int
        Random numbers (draws x treated entities) per sampler slab.
    level_slab : int
        Entries of the units x draws level matrix of the fast engine (int8).
    table_budget : int
        Bytes of per-unit tables above which the fast engine streams the rows
        instead (10 million rows: ~2 GB of tables).
    stream_levels : int
        Entries of the level matrix of one streaming pass.
    """

    gram_ratio: float = 4.0
    sampler_slab: int = 1 << 20
    level_slab: int = 1 << 24
    table_budget: int = 1 << 30
    stream_levels: int = 1 << 26


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


# ------------------------------------------------------------------ sampler
@dataclass(eq=False)
class _Sampler:
    """Draws blocks of placebo assignments for a scheme, sparsely.

    Assignment happens on entities (units, or clusters of units), within
    strata of entities; ``ent_U`` maps units to entities. A draw is the list
    of treated entities and the index (into ``gvals``) of each one's adoption
    time; the number treated is the same in every draw, so a slab of draws is
    two ``draws x K`` arrays. Random numbers are drawn slab by slab, with a
    slab size that depends only on K, so a seed means the same draws whatever
    the panel engine or the number of jobs.
    """

    scheme: str
    g_E: np.ndarray
    strata_E: np.ndarray
    ent_U: np.ndarray
    gvals: np.ndarray
    tuning: PlaceboTuning = PlaceboTuning()
    groups: list = field(init=False)
    ent_ptr: np.ndarray = field(init=False)
    ent_units: np.ndarray = field(init=False)
    K: int = field(init=False)
    slab: int = field(init=False)

    def __post_init__(self) -> None:
        n_ent = self.g_E.size
        self.ent_units = np.argsort(self.ent_U, kind="stable").astype(np.int64)
        self.ent_ptr = np.zeros(n_ent + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.ent_U, minlength=n_ent), out=self.ent_ptr[1:])
        l_E = np.searchsorted(self.gvals, self.g_E).astype(np.int64)
        self.groups = []
        for s in np.unique(self.strata_E):
            idx = np.flatnonzero(self.strata_E == s)
            tr = idx[self.g_E[idx] != 0]
            if tr.size:
                self.groups.append((idx, tr, l_E[tr]))
        self.K = sum(tr.size for _, tr, _ in self.groups)
        self.slab = max(1, self.tuning.sampler_slab // max(1, self.K))

    @property
    def n_units(self) -> int:
        return self.ent_U.size

    def units_per_draw(self) -> float:
        """Expected number of treated units in a draw."""
        size = np.diff(self.ent_ptr).astype(float)
        return float(sum(tr.size * size[idx].mean() for idx, tr, _ in self.groups))

    def slabs(self, rng: np.random.Generator, size: int):
        """Yield ``(start, pick_BK, l_BK)`` for the ``size`` draws of a block."""
        for a in range(0, size, self.slab):
            s = min(self.slab, size - a)
            picks, ls = [], []
            for idx, tr, ltr in self.groups:
                k = tr.size
                if self.scheme == "timing":
                    # the treated keep their place; their adoption times are permuted
                    pos = kp.partial_shuffle(rng.random((s, k)), k)
                    picks.append(np.broadcast_to(tr, (s, k)))
                    ls.append(ltr[pos])
                    continue
                picks.append(idx[kp.partial_shuffle(rng.random((s, k)), idx.size)])
                if self.scheme == "units":
                    # a uniformly ordered sample given the times in a fixed
                    # order is a uniform permutation of the times over units
                    ls.append(np.broadcast_to(ltr, (s, k)))
                else:  # units+timing
                    ls.append(ltr[rng.integers(0, k, size=(s, k))])
            if not picks:
                picks = ls = [np.zeros((s, 0), dtype=np.int64)]
            pick = picks[0] if len(picks) == 1 else np.hstack(picks)
            lidx = ls[0] if len(ls) == 1 else np.hstack(ls)
            yield a, np.ascontiguousarray(pick), np.ascontiguousarray(lidx)

    def dense(self, pick: np.ndarray, lidx: np.ndarray) -> np.ndarray:
        """``draws x units`` int64 adoption times (0 = untreated)."""
        return kp.adoption_times(pick, lidx, self.ent_ptr, self.ent_units, self.gvals, self.n_units)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """The dense adoption times of a block of ``size`` draws."""
        return np.vstack([self.dense(p, l) for _, p, l in self.slabs(rng, size)])


# ------------------------------------------------------------------ engines
class _FastEngine:
    """Unit + period FEs, unweighted, iid or CRV1 by a cluster containing units."""

    def __init__(self, fit: Feols, param: str, unit_N: np.ndarray, n_units: int, per_N: np.ndarray,
                 n_periods: int, thr_L: np.ndarray, cl_U: np.ndarray | None, adj: float, df_resid: int,
                 stat: str, sampler: _Sampler, tuning: PlaceboTuning = PlaceboTuning()):
        self.tuning = tuning
        self.ent_ptr, self.ent_units = sampler.ent_ptr, sampler.ent_units
        self.n_units = n_units
        # adoption indices per (unit, draw): one byte unless there are > 127 adoption times
        self.lev_dtype = np.int8 if thr_L.size <= 127 else np.int16
        self.many_treated = sampler.units_per_draw() * MANY_TREATED >= n_units
        self.adj, self.df_resid, self.stat = adj, df_resid, stat
        with_w = stat == "t" and cl_U is not None
        M = n_periods - 1 + len(fit.design.regressors) - 1
        table_bytes = 8 * n_units * (thr_L.size * (M + 2) + (M + M * (M + 1) // 2 if with_w else 0))
        # huge panels: no per-unit tables, two passes over the rows per slab
        self.stream = table_bytes > tuning.table_budget
        with threads_for(unit_N.size * n_periods):
            W = self._tables(fit, param, unit_N, n_units, per_N, n_periods, thr_L, with_w)
        self.cl, self.Wc, self.gram = None, None, None
        if with_w:
            self._clusters(cl_U, W, sampler)

    def _tables(self, fit: Feols, param: str, unit_N: np.ndarray, n_units: int, per_N: np.ndarray,
                n_periods: int, thr_L: np.ndarray, with_w: bool) -> np.ndarray:
        """Unit tables of the residualized outcome; returns W (see kernels)."""
        d = fit.design
        controls = [r for r in d.regressors if r != param]
        y = fit.y_raw
        X = np.empty((y.size, len(controls)))
        for k, c in enumerate(controls):
            X[:, k] = d.column(c)
        wi = UnitPeriodWithin(unit_N, n_units, per_N, n_periods, X, y)
        cols, max_rows, L = wi.cols, wi.max_rows, thr_L.size
        if self.stream:
            tab, W = None, None
            C, Fy = wi.normal_equations()
        else:
            tab, W = kp.unit_tables(*cols, thr_L, max_rows, with_w)
            # C = F'F and F'yu are the sums of every unit's G_i and P_i (the W table)
            C, Fy = wi.normal_equations(W if with_w else None)
        # a disconnected panel or a control collinear with the period FE makes
        # C singular: the general path handles those designs
        if not wi.factor(C):
            raise np.linalg.LinAlgError("period dummies + controls are rank deficient after unit demeaning")
        self.Cinv = np.ascontiguousarray(wi.inverse())
        theta_y = wi.solve(Fy)
        if tab is not None:
            kp.residualize_tables(tab, W, L, theta_y)
        self.n_l, self.tab = L, tab
        self.yy = wi.resid_ss(theta_y)
        self.cols, self.thr_L, self.theta_y, self.max_rows = cols, thr_L, theta_y, max_rows
        return W

    def _clusters(self, cl_U: np.ndarray, W: np.ndarray | None, sampler: _Sampler) -> None:
        """Cluster-level W and the meat strategy."""
        n_units = self.n_units
        n_cl = int(cl_U.max()) + 1
        self.n_cl, self.gram = n_cl, None
        if n_cl == n_units and bool(np.array_equal(cl_U, np.arange(n_units))):
            self.cl, self.Wc = np.empty(0, dtype=np.int64), W
            self.cl_order, self.cl_starts = np.arange(n_units, dtype=np.int64), np.arange(n_units + 1)
        else:
            self.cl = cl_U.astype(np.int64)
            self.cl_order = np.argsort(cl_U, kind="stable").astype(np.int64)
            self.cl_starts = np.r_[np.flatnonzero(np.r_[True, np.diff(cl_U[self.cl_order]) != 0]), n_units]
            self.Wc = None if W is None else np.add.reduceat(W[self.cl_order], self.cl_starts[:-1], axis=0)
        # few treated clusters per draw: the untreated part of the meat is a
        # quadratic form (Gram matrix) and treated clusters are dot products;
        # many: one matrix product gives every cluster's untreated score
        if self.Wc is not None and self.tuning.gram_ratio * sampler.units_per_draw() < n_cl:
            self.gram = self.Wc.T @ self.Wc

    def run(self, slabs: Any, out: np.ndarray) -> None:
        """Statistics of a block's draws (``slabs`` from ``_Sampler.slabs``) into ``out``."""
        if not self.stream:
            for a, pick, lidx in slabs:
                out[a : a + pick.shape[0]] = self.compute(pick, lidx)
            return
        # streaming: collect draws until the level matrix is full, then two passes
        width = max(1, min(out.size, self.tuning.stream_levels // self.n_units))
        lev = np.empty((self.n_units, width), dtype=self.lev_dtype)
        start = filled = 0
        for _, pick, lidx in slabs:
            c = 0
            while c < pick.shape[0]:
                take = min(width - filled, pick.shape[0] - c)
                kp.draw_levels(pick[c : c + take], lidx[c : c + take], self.ent_ptr, self.ent_units, lev, filled)
                c += take
                filled += take
                if filled == width:
                    out[start : start + filled] = self._stream(lev, filled)
                    start, filled = start + filled, 0
        if filled:
            out[start : start + filled] = self._stream(lev, filled)

    def _stream(self, lev: np.ndarray, B: int) -> np.ndarray:
        args = (*self.cols, self.thr_L, self.theta_y, self.max_rows, lev)
        theta, dmd, dmy, uu = kp.stream_thetas(*args, B, self.Cinv)
        beta, bz = self._beta(dmd, dmy, uu)
        if self.stat == "coef":
            return beta
        if self.cl is None:
            return self._iid_t(beta, dmd)
        meat = kp.stream_meats(*args, np.ascontiguousarray(theta.T), bz, self.cl_order, self.cl_starts)
        return beta / np.sqrt(self.adj * meat / dmd**2)

    def _beta(self, dmd, dmy, uu):
        # a draw whose partialled-out treatment keeps at most COLLIN_TOL of its
        # variance is collinear with the FEs/controls (the package's rank rule)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(dmd > COLLIN_TOL * uu, dmy / dmd, np.nan)
        return beta, np.where(np.isfinite(beta), beta, 0.0)

    def _iid_t(self, beta, dmd):
        return beta / np.sqrt((self.yy - beta**2 * dmd) / self.df_resid / dmd)

    def compute(self, pick: np.ndarray, lidx: np.ndarray) -> np.ndarray:
        with threads_for(pick.shape[0] * (self.n_units if self.many_treated else pick.shape[1] * self.tab.shape[1])):
            return self._compute(pick, lidx)

    def _compute(self, pick: np.ndarray, lidx: np.ndarray) -> np.ndarray:
        # the dense level matrix (draws x units) is bounded by tuning.level_slab
        step = max(1, self.tuning.level_slab // self.n_units)
        if pick.shape[0] > step:
            return np.concatenate([self._compute(pick[a : a + step], lidx[a : a + step])
                                   for a in range(0, pick.shape[0], step)])
        lev = None
        if self.many_treated:
            lev = self._levels(pick, lidx)
            theta, dmd, dmy, uu = kp.draw_thetas(lev, self.tab, self.n_l, self.Cinv)
        else:
            theta, dmd, dmy, uu = kp.draw_thetas_sparse(pick, lidx, self.ent_ptr, self.ent_units, self.tab, self.n_l,
                                                        self.Cinv)
        beta, bz = self._beta(dmd, dmy, uu)
        if self.stat == "coef":
            return beta
        if self.cl is None:
            return self._iid_t(beta, dmd)
        Z = kp.pack_outer(theta, bz)
        if self.gram is not None:
            q0 = kp.gram_q0(Z, self.gram)
            if self.cl.shape[0] == 0:  # clusters are the units
                inv = kp.invert_draws(pick, lidx, self.ent_ptr, self.ent_units, self.n_units)
                meat = kp.draw_meats_by_unit(*inv, self.tab, self.n_l, theta, bz, Z, self.Wc, q0)
            else:
                meat = kp.draw_meats(pick, lidx, self.ent_ptr, self.ent_units, self.cl, self.n_cl, self.tab,
                                     self.n_l, theta, bz, Z, self.Wc, q0)
        else:
            lev = self._levels(pick, lidx) if lev is None else lev
            meat = kp.dense_meats(lev, self.tab, self.n_l, theta, bz, np.ascontiguousarray(Z.T), self.Wc,
                                  self.cl_order, self.cl_starts, max(16, DENSE_CHUNK // Z.shape[0]))
        return beta / np.sqrt(self.adj * meat / dmd**2)

    def _levels(self, pick: np.ndarray, lidx: np.ndarray) -> np.ndarray:
        lev = np.empty((self.n_units, pick.shape[0]), dtype=self.lev_dtype)
        kp.draw_levels(pick, lidx, self.ent_ptr, self.ent_units, lev, 0)
        return lev


class _GeneralEngine:
    """Any design: demean placebo columns in slabs, partial out controls (FWL)."""

    def __init__(self, fit: Feols, param: str, spec: VcovSpec, df_k: int, stat: str):
        d = fit.design
        self.absorber, self.sw = d.absorber, d.sw
        ctrl = [j for j, r in enumerate(d.regressors) if r != param]
        self.Xc = np.ascontiguousarray(d.Xw[:, ctrl])
        self.Hc = np.linalg.inv(self.Xc.T @ self.Xc) if ctrl else np.zeros((0, 0))
        yw = fit.yw
        self.yy = yw - self.Xc @ (self.Hc @ (self.Xc.T @ yw)) if ctrl else yw.copy()
        self.w = d.sw**2
        self.N, self.df_k, self.spec, self.stat = d.nobs, df_k, spec, stat
        if spec.kind == "CRV1":
            self.parts = cluster_parts([d.clusters[c] for c in spec.clusters])
            G = min(g for _, _, g in self.parts)
            self.adj = ssc_factor("CRV1", self.N, df_k, G)

    def compute(self, D_NB: np.ndarray) -> np.ndarray:
        w = self.w
        mean = (w @ D_NB) / w.sum()
        ss = w @ (D_NB - mean) ** 2
        Dd = self.absorber.demean(D_NB) * self.sw[:, None]
        if self.Xc.shape[1]:
            Dd -= self.Xc @ (self.Hc @ (self.Xc.T @ Dd))
        den = np.einsum("nb,nb->b", Dd, Dd)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(den > COLLIN_TOL * ss, (self.yy @ Dd) / den, np.nan)
        if self.stat == "coef":
            return beta
        u = self.yy[:, None] - Dd * np.where(np.isfinite(beta), beta, 0.0)
        kind = self.spec.kind
        if kind == "iid":
            var = residual_variance(np.einsum("nb,nb->b", u, u), self.N, self.df_k) / den
        elif kind == "hetero":
            sc = Dd * u
            var = ssc_factor("hetero", self.N, self.df_k) * np.einsum("nb,nb->b", sc, sc) / den**2
        else:
            sc = np.ascontiguousarray(Dd * u)
            meat = sum(s * (cluster_sums(sc, c, g) ** 2).sum(axis=0) for c, s, g in self.parts)
            var = self.adj * meat / den**2
        return beta / np.sqrt(var)


# ------------------------------------------------------------------- blocks
@dataclass(eq=False)
class _Context:
    """Everything a block needs (picklable, so loky workers can run blocks)."""

    seed: np.random.SeedSequence
    scheme: str
    sampler: _Sampler | None
    engine: Any
    fast: bool
    unit_N: np.ndarray
    time_N: np.ndarray
    p_iid: float = 0.0

    def iid_rows(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``N x size`` i.i.d. Bernoulli(p) treatment columns, drawn draw by draw."""
        return (rng.random((size, self.unit_N.size)) < self.p_iid).T.astype(np.float64)

    def slab(self, size: int) -> int:
        return max(1, min(size, GENERAL_SLAB // max(1, self.unit_N.size)))


def _run_block(ctx: _Context, block: tuple[int, int]) -> np.ndarray:
    # a matrix product split over BLAS threads can round differently from a
    # serial one; the kernels parallelize over fixed chunks instead
    with _SERIAL_BLAS:
        return _run_block_serial_blas(ctx, block)


class _SerialBlas:
    """Process-wide "BLAS on one thread" while any block runs.

    Reference-counted: with the threading backend (or a multi-threaded dask
    worker) several blocks run at once, and the first to finish must not
    restore multi-threaded BLAS under the others.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._ctx: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._ctx = _blas_controller().limit(limits=1, user_api="blas")
            self._depth += 1

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._ctx.restore_original_limits()
                self._ctx = None


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # found once: discovering the loaded libraries reads /proc (~2 ms a call)
    return ThreadpoolController()


_SERIAL_BLAS = _SerialBlas()


def _run_block_serial_blas(ctx: _Context, block: tuple[int, int]) -> np.ndarray:
    index, size = block
    rng = block_generator(ctx.seed, index)
    out = np.empty(size)
    if ctx.scheme == "iid":
        step = ctx.slab(size)
        for a in range(0, size, step):
            out[a : a + step] = ctx.engine.compute(np.ascontiguousarray(ctx.iid_rows(rng, min(step, size - a))))
        return out
    if ctx.fast:
        ctx.engine.run(ctx.sampler.slabs(rng, size), out)
        return out
    for a, pick, lidx in ctx.sampler.slabs(rng, size):
        step = ctx.slab(pick.shape[0])
        for c in range(0, pick.shape[0], step):
            A = ctx.sampler.dense(pick[c : c + step], lidx[c : c + step])
            D = kp.placebo_columns(np.where(A == 0, _NEVER, A), ctx.unit_N, ctx.time_N)
            out[a + c : a + c + D.shape[1]] = ctx.engine.compute(D)
    return out


def _blocks(draws: int) -> list[tuple[int, int]]:
    return [(i, min(BLOCK_SIZE, draws - i * BLOCK_SIZE)) for i in range(-(-draws // BLOCK_SIZE))]


# ------------------------------------------------------------------- result
def clopper_pearson(count: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion ``count / n``."""
    a = 1.0 - level
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
    _ctx: _Context = field(repr=False)
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
        return np.vstack([self._ctx.sampler.draw(block_generator(self._ctx.seed, i), s) for i, s in _blocks(self._draws)])

    def column(self, draw: int) -> np.ndarray:
        """The placebo treatment column of ``draw`` on the fit's estimation rows."""
        i, j = divmod(int(draw), BLOCK_SIZE)
        size = _blocks(self._draws)[i][1]
        rng = block_generator(self._ctx.seed, i)
        if self._ctx.sampler is None:
            return self._ctx.iid_rows(rng, j + 1)[:, j]
        for start, pick, lidx in self._ctx.sampler.slabs(rng, size):
            if j < start + pick.shape[0]:
                a = self._ctx.sampler.dense(pick[j - start : j - start + 1], lidx[j - start : j - start + 1])[0]
                break
        adopt = np.where(a == 0, _NEVER, a)
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
                            pvalue=self.pvalue, alternative=self.alternative, path=path, **kwargs)


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
) -> PlaceboResult:
    """Randomization inference with design-respecting placebo assignments.

    Parameters
    ----------
    fit : staggerlab Feols or pyfixest Feols
        The fitted TWFE model; ``param`` is its (absorbing, staggered) treatment.
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
        sampler = _Sampler(scheme, g_E, st_E, ent_U, gvals, tuning)

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
                engine = _FastEngine(fit, param, unit_N, n_units, per_N, tvals.size,
                                     np.searchsorted(tvals, gvals).astype(np.int64), cl_U, adj, d.nobs - df_k, stat, sampler, tuning)
                fast = True
            except np.linalg.LinAlgError as err:
                reason = str(err)
        if reason is not None and method == "fast":
            raise ArgumentError(f"the fast path does not apply: {reason}")
    if engine is None:
        engine = _GeneralEngine(fit, param, spec, df_k, stat)

    ctx = _Context(ss, scheme, sampler, engine, fast, unit_N, time_N, p_iid)
    # held here too, so that in-process backends (threads) share one limit set
    # and restored by this thread, after every block
    with _SERIAL_BLAS:
        parts = run_blocks(_run_block, _blocks(draws), shared=ctx, n_jobs=n_jobs, backend=backend, desc="placebo")
    statistics = np.concatenate(parts)
    observed = float(fit.coef()[param] if stat == "coef" else fit.tstat()[param])
    valid = np.isfinite(statistics)
    n_valid = int(valid.sum())
    if n_valid < draws:
        warnings.warn(
            f"{draws - n_valid} placebo draw(s) gave a treatment collinear with the fixed effects/controls "
            "and were left out of the p-value",
            StaggerlabWarning,
            stacklevel=2,
        )
    s = statistics[valid]
    tol = TIE_RTOL * max(abs(observed), 1e-300)
    if alternative == "two-sided":
        count = int((np.abs(s) >= abs(observed) - tol).sum())
    elif alternative == "greater":
        count = int((s >= observed - tol).sum())
    else:
        count = int((s <= observed + tol).sum())
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
    fake_U = np.where(g_U != 0, tvals[np.clip(pos, 0, tvals.size - 1)], _NEVER)
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
