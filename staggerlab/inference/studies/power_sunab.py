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

from ...errors import VcovError
from ...panels.panel import factorize_column
from ..regression.absorb import Absorber
from ..regression.vcov import fe_df, jackknife_nested, nested_in, ssc_factor

__all__ = ["sunab_crv3", "WINDOW"]

#: the event study's window (its default): relative periods beyond it are binned into its ends
WINDOW = (-5, 5)


def sunab_crv3(frame: pl.DataFrame, y: str, unit: str, time: str, cohort: str, controls: tuple[str, ...],
               cluster: str) -> tuple[float, float, int]:
    """The Sun-Abraham overall ATT (``aggregate("simple")``), its CRV3 standard error and ``G - 1``.

    ``frame`` has no missing values and no singleton unit or period (the sample of
    a power study). The event study gives the cohort x event-time cells and their
    weights; the regression on them, with the periods as dummies and the units
    absorbed, gives the estimate and the jackknife.

    Raises
    ------
    VcovError
        Units not nested in the clusters, rows left out by the event study, or a
        coefficient resting on one cluster.
    """
    from ..did.event_study import EventStudyTuning, event_study

    es = event_study(frame, y=y, unit=unit, time=time, cohort=cohort, controls=list(controls) or None,
                     cluster=cluster, method="sunab", window=WINDOW, tuning=EventStudyTuning(lean_bytes=0))
    if es.nobs != frame.height:
        raise VcovError(f"the Sun-Abraham fit used {es.nobs} of {frame.height} rows; its CRV3 needs all of them")
    cells = es.extra["cells"]
    w = es.extra["cell_weights"]("simple")
    ucode, tcode = factorize_column(frame[unit]), factorize_column(frame[time])
    cl = ucode if cluster == unit else factorize_column(frame[cluster])
    if not nested_in(ucode, cl):
        raise VcovError(f"the CRV3 test of Sun-Abraham needs every unit ({unit!r}) within one cluster ({cluster!r})")
    g_N = frame[cohort].to_numpy()
    rel_N = np.clip(frame[time].to_numpy() - g_N, *WINDOW)
    # each treated row's cell column, from a (cohort, relative period) lookup table (vectorised: this
    # runs once per draw of a power study)
    cell_g = np.asarray(cells["cohort"], dtype=np.int64)
    cell_r = np.asarray(cells["rel_time"], dtype=np.int64)
    k, T = cell_g.size, int(tcode.max()) + 1
    cohorts = np.unique(cell_g)
    lookup = np.full((cohorts.size, WINDOW[1] - WINDOW[0] + 1), -1, dtype=np.int64)
    lookup[np.searchsorted(cohorts, cell_g), cell_r - WINDOW[0]] = np.arange(k)
    X = np.zeros((frame.height, k + len(controls) + T - 1))
    rows = np.flatnonzero(g_N > 0)
    g, r = g_N[rows].astype(np.int64), rel_N[rows].astype(np.int64)
    pos = np.minimum(np.searchsorted(cohorts, g), cohorts.size - 1)
    j_N = np.where(cohorts[pos] == g, lookup[pos, r - WINDOW[0]], -1)
    X[rows[j_N >= 0], j_N[j_N >= 0]] = 1.0
    for i, c in enumerate(controls):
        X[:, k + i] = frame[c].cast(pl.Float64).to_numpy()
    on = tcode > 0  # the first period is the base
    X[np.flatnonzero(on), k + len(controls) + tcode[on] - 1] = 1.0
    within = Absorber([ucode])
    Xd, yd = within.demean(X), within.demean(frame[y].cast(pl.Float64).to_numpy())
    bread = np.linalg.inv(Xd.T @ Xd)
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
