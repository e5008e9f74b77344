"""The exact TWFE power curve (CRV1 t-test), without a refit per effect size.

With ``D_b`` a draw's re-assigned treatment and ``h_b`` the effect path on its
treated cells, the outcome ``y + delta * h_b`` regressed on ``D_b`` and the
controls (unit and period FEs) gives

* a coefficient linear in delta: ``beta_b + delta * gamma_b`` with ``gamma_b``
  the coefficient of ``h_b`` on the same design;
* residuals ``e0 + delta * e_h``, so the CRV1 meat is the quadratic form
  ``sum_g (s0_g + delta * sh_g)^2`` of the two cluster scores.

For a homogeneous path ``h_b = D_b``: ``gamma_b = 1`` and ``e_h = 0``, so one
placebo run (its coefficients and standard errors) gives the whole curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._parallel import run_blocks
from ...kernels import placebo as kp
from ...kernels.cluster import cluster_sums
from ..regression.feols import Feols
from ..regression.rank import COLLIN_TOL
from ..resampling.placebo_blocks import GENERAL_SLAB
from ..resampling.placebo_engines import GeneralEngine
from ..resampling.placebo_sampler import NEVER
from .power_effects import EffectPath, RowDesign

__all__ = ["LinearCurve", "homogeneous_curve", "dynamic_curve"]


@dataclass(frozen=True)
class LinearCurve:
    """Per-draw algebra of a statistic linear in the effect size.

    ``estimate(delta) = a + delta * b``, ``var(delta) = v0 + 2 delta v1 + delta^2 v2``,
    ``truth(delta) = delta * m`` (``m``: mean effect scale on the draw's treated cells).
    """

    a: np.ndarray
    b: np.ndarray
    v0: np.ndarray
    v1: np.ndarray
    v2: np.ndarray
    m: np.ndarray

    def evaluate(self, sizes: np.ndarray, crit: float) -> tuple[np.ndarray, ...]:
        """``draws x sizes`` arrays ``(estimate, reject, covers, truth, t)`` for tests ``|t| > crit``."""
        d = np.asarray(sizes, float)[None, :]
        est = self.a[:, None] + d * self.b[:, None]
        var = self.v0[:, None] + 2 * d * self.v1[:, None] + d * d * self.v2[:, None]
        # rounding can make a zero quadratic form slightly negative
        se = np.sqrt(np.maximum(var, 0.0))
        truth = d * self.m[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            reject = np.abs(est) > crit * se
            covers = np.abs(est - truth) <= crit * se
            t = est / se
        return est, reject, covers, truth, t


def homogeneous_curve(beta: np.ndarray, tstat: np.ndarray) -> LinearCurve:
    """The curve of a homogeneous effect from one placebo run's coefficients and t statistics."""
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(tstat != 0, beta / tstat, np.nan)
    ones = np.ones_like(beta)
    zeros = np.zeros_like(beta)
    return LinearCurve(np.where(np.isfinite(se), beta, np.nan), ones, se * se, zeros, zeros, ones)


@dataclass(eq=False)
class _DynamicContext:
    engine: GeneralEngine
    rows: RowDesign
    path: EffectPath
    assign: np.ndarray
    unit_N: np.ndarray
    time_N: np.ndarray


def dynamic_curve(fit: Feols, param: str, rows: RowDesign, path: EffectPath, assign: np.ndarray,
                  time_N: np.ndarray, n_jobs: int | None = 1, backend: str | None = None) -> LinearCurve:
    """The exact curve of any effect path for the fit's CRV1 t-test of ``param``.

    ``assign`` is ``draws x units`` adoption periods (0 = untreated), in the
    unit order of ``rows``. Blocks of draws are demeaned together (the
    placebo's general engine: FE demeaning, controls partialled out).
    """
    d = fit.design
    engine = GeneralEngine(fit, param, fit.vcov_spec, d.df_k(fit.vcov_spec), "t")
    ctx = _DynamicContext(engine, rows, path, assign, rows.unit_N.astype(np.int64), time_N)
    step = max(1, min(250, GENERAL_SLAB // max(1, 2 * time_N.size)))
    blocks = [(a, min(a + step, assign.shape[0])) for a in range(0, assign.shape[0], step)]
    parts = run_blocks(_dynamic_block, blocks, shared=ctx, n_jobs=n_jobs, backend=backend, desc="power (TWFE)")
    return LinearCurve(*(np.concatenate([p[k] for p in parts]) for k in range(6)))


def _dynamic_block(ctx: _DynamicContext, block: tuple[int, int]) -> tuple[np.ndarray, ...]:
    eng = ctx.engine
    A = ctx.assign[block[0] : block[1]]
    D = kp.placebo_columns(np.where(A == 0, NEVER, A), ctx.unit_N, ctx.time_N)
    H = np.zeros_like(D)
    m = np.empty(A.shape[0])
    for j in range(A.shape[0]):
        r, h = ctx.path.scale(ctx.rows, A[j])
        H[r, j] = h
        m[j] = h.mean() if h.size else np.nan
    w = eng.w
    ss = w @ (D - (w @ D) / w.sum()) ** 2
    Dd, Hd = (_partial(eng, M) for M in (D, H))
    den = np.einsum("nb,nb->b", Dd, Dd)
    ok = den > COLLIN_TOL * ss  # the rank rule of the placebo engines
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(ok, (eng.yy @ Dd) / den, np.nan)
        b = np.where(ok, np.einsum("nb,nb->b", Dd, Hd) / den, np.nan)
    az, bz = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    s0 = np.ascontiguousarray(Dd * (eng.yy[:, None] - Dd * az))
    sh = np.ascontiguousarray(Dd * (Hd - Dd * bz))
    q = np.zeros((3, A.shape[0]))
    for codes, sign, g in eng.parts:
        S0, Sh = cluster_sums(s0, codes, g), cluster_sums(sh, codes, g)
        q += sign * np.stack([(S0 * S0).sum(0), (S0 * Sh).sum(0), (Sh * Sh).sum(0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        v = eng.adj * q / den**2
    return a, b, v[0], v[1], v[2], m


def _partial(eng: Any, M: np.ndarray) -> np.ndarray:
    """FE-demeaned, weighted columns with the controls partialled out (FWL)."""
    Md = eng.absorber.demean(M) * eng.sw[:, None]
    if eng.Xc.shape[1]:
        Md -= eng.Xc @ (eng.Hc @ (eng.Xc.T @ Md))
    return Md
