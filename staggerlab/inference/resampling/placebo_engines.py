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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...kernels import placebo as kp
from ...kernels import placebo_stream as kps
from ...kernels.cluster import cluster_sums
from ..regression.feols import Feols
from ..regression.rank import COLLIN_TOL
from ..regression.vcov import VcovSpec, cluster_parts, residual_variance, ssc_factor
from ..regression.within import UnitPeriodWithin
from .placebo_sampler import Sampler
from .placebo_tuning import PlaceboTuning

__all__ = ["FastEngine", "GeneralEngine", "DENSE_CHUNK", "MANY_TREATED"]

#: doubles in one clusters x draws chunk of the dense meat
DENSE_CHUNK = 1 << 19
#: draws treating at least 1 / MANY_TREATED of the units walk all units
#: (branch-free); fewer gather their rows
MANY_TREATED = 8


class FastEngine:
    """Unit + period FEs, unweighted, iid or CRV1 by a cluster containing units."""

    def __init__(self, fit: Feols, param: str, unit_N: np.ndarray, n_units: int, per_N: np.ndarray,
                 n_periods: int, thr_L: np.ndarray, cl_U: np.ndarray | None, adj: float, df_resid: int,
                 stat: str, sampler: Sampler, tuning: PlaceboTuning = PlaceboTuning()):
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
        W = self._tables(fit, param, unit_N, n_units, per_N, n_periods, thr_L, with_w)
        self.cl, self.Wc, self.gram = None, None, None
        if with_w:
            self._clusters(cl_U, W, sampler)

    def _tables(self, fit: Feols, param: str, unit_N: np.ndarray, n_units: int, per_N: np.ndarray,
                n_periods: int, thr_L: np.ndarray, with_w: bool) -> np.ndarray:
        """Unit tables of the residualized outcome; returns W (see kernels)."""
        d = fit.design
        # the fit's demeaned regressors span, with the period dummies, the
        # same space after unit demeaning as the raw controls (FWL): passing
        # them with the treatment's column skipped avoids an N x K copy
        xc = [j for j, r in enumerate(d.regressors) if r != param]
        wi = UnitPeriodWithin(unit_N, n_units, per_N, n_periods, d.Xw, fit.y_raw, x_cols=xc)
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

    def _clusters(self, cl_U: np.ndarray, W: np.ndarray | None, sampler: Sampler) -> None:
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
            self.gram = kp.gram(self.Wc)

    def run(self, slabs: Any, out: np.ndarray) -> None:
        """Statistics of a block's draws (``slabs`` from ``Sampler.slabs``) into ``out``."""
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
        theta, dmd, dmy, uu = kps.stream_thetas(*args, B, self.Cinv)
        beta, bz = self._beta(dmd, dmy, uu)
        if self.stat == "coef":
            return beta
        if self.cl is None:
            return self._iid_t(beta, dmd)
        meat = kps.stream_meats(*args, np.ascontiguousarray(theta.T), bz, self.cl_order, self.cl_starts)
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
        # the dense level matrix (draws x units) is bounded by tuning.level_slab
        step = max(1, self.tuning.level_slab // self.n_units)
        if pick.shape[0] > step:
            return np.concatenate([self.compute(pick[a : a + step], lidx[a : a + step])
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


class GeneralEngine:
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
        # a two-way variance (V1 + V2 - V12) can be negative: that draw's t is undefined (NaN, left out)
        with np.errstate(invalid="ignore"):
            return beta / np.sqrt(var)
