"""The Sun-Abraham test of a power study: the overall ATT with a CRV3 standard error.

The CRV1 t test of the Sun-Abraham overall ATT over-rejects at zero effect on
the built-in panel: 0.067 (MC s.e. 0.006) at 2,000 placebo draws, the same with
a normal reference (G = 1,780 clusters), while the aggregate's weights are fixed
by the assignment. The CRV1 standard error is 0.96 of the estimate's Monte Carlo
s.d.: each cohort x event-time coefficient rests on ~20 treated units of an
unbalanced panel, whose leverage CRV1 ignores. The leave-one-cluster-out
jackknife (CRV3) rejects 0.051 (0.005) on the same draws, so it is the test of
``sl.power(estimators=["sunab"])``; ``"sunab+crv1"`` keeps the CRV1 test
(fixest's ``summary(agg = "ATT")``).

The jackknife is exact without refits: the Sun-Abraham regression with the
period effects as dummies and the unit effects absorbed (units nested in the
clusters) has each cluster's leave-out change in closed form
(:func:`~staggerlab.inference.regression.vcov.jackknife_nested`); it equals
``feols(y ~ cells + controls + i(period) | unit, vcov={"CRV3": cluster})``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.linalg as sla

from ...errors import VcovError
from ...panels.panel import factorize_column
from ..regression.absorb import Absorber
from ..regression.rank import scaled_cholesky
from ..regression.vcov import fe_df, jackknife_nested, nested_in, ssc_factor

__all__ = ["sunab_crv3", "sunab_cells", "WINDOW", "REF"]

#: the event study's window and reference period (its defaults): relative periods beyond the window
#: are binned into its ends
WINDOW, REF = (-5, 5), -1


def sunab_crv3(frame: pl.DataFrame, y: str, unit: str, time: str, cohort: str, controls: tuple[str, ...],
               cluster: str) -> tuple[float, float, int]:
    """The Sun-Abraham overall ATT (``aggregate("simple")``), its CRV3 standard error and ``G - 1``.

    ``frame`` has no missing values and no singleton unit or period (the sample of
    a power study). The cohort x event-time cells and their weights are the event
    study's (:func:`sunab_cells`, without its fit: this runs once per draw); the
    regression on them, with the periods as dummies and the units absorbed, gives
    the estimate and the jackknife.

    Raises
    ------
    VcovError
        Units not nested in the clusters, rows the event study would leave out
        (:func:`sunab_cells`), a singleton unit or period, missing values, a
        collinear design, or a coefficient resting on one cluster.
    """
    ucode, tcode = factorize_column(frame[unit]), factorize_column(frame[time])
    cl = ucode if cluster == unit else factorize_column(frame[cluster])
    if not nested_in(ucode, cl):
        raise VcovError(f"the CRV3 test of Sun-Abraham needs every unit ({unit!r}) within one cluster ({cluster!r})")
    if np.bincount(ucode).min() < 2 or np.bincount(tcode).min() < 2:
        raise VcovError("the CRV3 test of Sun-Abraham needs every unit and period on two or more rows")
    cell_g, cell_r, j_N, rows, n_c = sunab_cells(frame[cohort].to_numpy(), frame[time].to_numpy())
    k, T = cell_g.size, int(tcode.max()) + 1
    # the simple aggregate: the post-period cells weighted by their rows (as the event study's)
    w = np.where(cell_r >= 0, n_c, 0.0)
    w = w / w.sum()
    X = np.zeros((frame.height, k + len(controls) + T - 1))
    X[rows, j_N] = 1.0
    for i, c in enumerate(controls):
        X[:, k + i] = frame[c].cast(pl.Float64).to_numpy()
    on = tcode > 0  # the first period is the base
    X[np.flatnonzero(on), k + len(controls) + tcode[on] - 1] = 1.0
    yv = frame[y].cast(pl.Float64).to_numpy()
    if not (np.isfinite(yv).all() and np.isfinite(X).all()):
        raise VcovError(f"the CRV3 test of Sun-Abraham needs finite values of {y!r} and the controls")
    within = Absorber([ucode])
    Xd, yd = within.demean(X), within.demean(yv)
    gram = Xd.T @ Xd
    fac = scaled_cholesky(gram)
    if fac is None:  # a cell (or control) collinear with the others: the event study would drop it
        raise VcovError("the Sun-Abraham design of this draw is collinear; its CRV3 is not computed")
    (cho, sc) = fac
    bread = sla.cho_solve(cho, np.eye(gram.shape[0])) * sc[:, None] * sc[None, :]
    beta = bread @ (Xd.T @ yd)
    # only the aggregate's leave-one-cluster-out changes: the jackknife of the contrast w'b
    contrast = np.zeros((X.shape[1], 1))
    contrast[:k, 0] = w
    Dw = jackknife_nested(Xd, yd - Xd @ beta, bread, cl, contrasts=contrast)[:, 0]
    G = Dw.shape[0]
    # parameters counted as fixest/pyfixest do: the unit FE nested in the clusters counts once
    df_k = fe_df(k + len(controls), [int(ucode.max()) + 1, T], [True, False])
    se = float(np.sqrt(ssc_factor("CRV3", frame.height, df_k, G) * np.sum(Dw**2)))
    return float(w @ beta[:k]), se, G - 1


def sunab_cells(g_N: np.ndarray, t_N: np.ndarray, ref: int = REF
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cohort x relative-period cells of ``event_study(method="sunab")`` at its
    defaults (window :data:`WINDOW`, endpoints binned, reference ``ref``), from the
    rows' adoption periods ``g_N`` (0: never treated) and periods ``t_N``.

    Returns ``(cell_g, cell_r, j_N, rows, n_c)``: the cells' cohorts and binned relative
    periods (sorted by cohort, then period), the cell of each row in ``rows`` (the
    treated rows outside the reference period) and the rows per cell.

    Raises
    ------
    VcovError
        Where the event study would leave rows out of its regression, which the
        jackknife needs whole: no never-treated unit (the last cohort becomes the
        control, its late rows dropped), or a cohort with no row at the reference
        period (the event study drops it); no treated row after adoption.
    """
    treated = g_N > 0
    if treated.all():
        raise VcovError("no never-treated unit: Sun-Abraham's control would be the last cohort, whose rows "
                        "after its adoption leave the sample; the CRV3 test needs every row")
    rows = np.flatnonzero(treated)
    g = g_N[rows].astype(np.int64)
    r = np.clip(t_N[rows].astype(np.int64) - g, *WINDOW)
    cohorts = np.unique(g)
    lost = cohorts[~np.isin(cohorts, g[r == ref])]
    if lost.size:
        raise VcovError(f"cohort(s) {lost.tolist()} have no row at the reference period {ref}: the event study "
                        "drops them, and the CRV3 test needs every row")
    keep = r != ref
    rows, g, r = rows[keep], g[keep], r[keep]
    if not (r >= 0).any():
        raise VcovError("no treated row at or after adoption: Sun-Abraham's overall ATT is not defined")
    span = WINDOW[1] - WINDOW[0] + 1
    keys, j_N, n_c = np.unique((g - cohorts[0]) * span + (r - WINDOW[0]), return_inverse=True, return_counts=True)
    return keys // span + cohorts[0], keys % span + WINDOW[0], j_N, rows, n_c.astype(float)
