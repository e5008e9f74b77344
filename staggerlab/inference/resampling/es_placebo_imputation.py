"""Exact refits of an imputation (Borusyak-Jaravel-Spiess) event study for
placebo adoption times.

A draw gives unit ``i`` the adoption time ``g_i`` (or none). The imputation
estimator fits ``y = alpha_i + gamma_t + x'delta`` on the untreated rows
(``t < g_i``) and averages the residuals ``e`` over groups of rows (binned
event times; all treated rows for ``simple``). With ``f_it = [period dummies
2..T, x_it]`` (``m`` columns) and, per unit, ``n_i``, ``sy_i``, ``sf_i`` the
count and sums of ``y`` and ``f`` over its untreated rows, the first stage is
``theta = S^+ r`` with ``S = sum_i (F_i'F_i - sf_i sf_i' / n_i)`` and ``r =
sum_i (F_i'y_i - sf_i sy_i / n_i)`` over untreated rows, and ``alpha_i =
(sy_i - sf_i'theta) / n_i``. A group's residual sum is then

    sum_i [ysum_ij - c_ij sy_i / n_i] - theta' sum_i [fsum_ij - c_ij sf_i / n_i]

(``c_ij``, ``ysum_ij``, ``fsum_ij``: the count and sums of unit ``i``'s rows in
group ``j``). Every term depends on the unit and its adoption time only, so it
is tabulated once per (unit, candidate adoption time) as the difference from
the unit being untreated; a draw sums its treated units' rows of the tables
and solves one ``m x m`` system: O(treated units x k m + m^3), not O(rows).

As the estimator does, a unit with no untreated row in a draw contributes
nothing (its treated rows cannot be imputed and are dropped); a draw in which
some period has no untreated row is left out (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._seed import block_generator
from ...errors import EventStudyError
from ...kernels.wildboot import cluster_wsums_into
from ...panels.adoption import adoption_times
from ..regression.rank import psd_pinv
from .placebo_sampler import Sampler

__all__ = ["imputation_tables", "ImputationTables"]


@dataclass(eq=False)
class ImputationTables:
    """Per-(unit, adoption time) differences from the unit being untreated.

    Shapes: ``U`` units, ``L`` candidate adoption times, ``m`` first-stage
    columns, ``k`` groups (event times of the window but the reference, then
    the treated rows as one more group for ``simple``), ``T`` periods.
    """

    dS: np.ndarray  # U x L x m x m
    dr: np.ndarray  # U x L x m
    a: np.ndarray  # U x L x k: ysum - c sy / n
    Bm: np.ndarray  # U x L x k x m: fsum - c sf / n
    cnt: np.ndarray  # U x L x k: rows per group
    dT: np.ndarray  # U x L x T: untreated rows lost by period
    S0: np.ndarray  # m x m, every unit untreated
    r0: np.ndarray  # m
    T0: np.ndarray  # T: untreated rows by period, every unit untreated
    sampler: Sampler
    keep: bool

    def __call__(self, block: tuple[int, int, np.random.SeedSequence]) -> tuple[np.ndarray, ...]:
        index, size, seed = block
        rng = block_generator(seed, index)
        out: list[list[np.ndarray]] = [[], [], []]
        for _, pick, lidx in self.sampler.slabs(rng, size):
            S = self.S0 + self.dS[pick, lidx].sum(axis=1)
            r = self.r0 + self.dr[pick, lidx].sum(axis=1)
            theta = np.einsum("bmn,bn->bm", psd_pinv(S), r)
            num = self.a[pick, lidx].sum(axis=1) - np.einsum("bkm,bm->bk", self.Bm[pick, lidx].sum(axis=1), theta)
            n = self.cnt[pick, lidx].sum(axis=1)
            ok = ((self.T0 - self.dT[pick, lidx].sum(axis=1)) > 0).all(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                b = np.where((n > 0) & ok[:, None], num / n, np.nan)
            out[0].append(b)
            out[1].append(n)
            if self.keep:
                out[2].append(self.sampler.dense(pick, lidx))
        return tuple(np.vstack(o) for o in out if o)


def imputation_tables(es: Any, scheme: str, tuning: Any, keep: bool) -> tuple[ImputationTables, np.ndarray,
                                                                             np.ndarray]:
    """The tables of an imputation event study, its groups' event times (``levels``) and unit ids."""
    from ..did.staggered_data import COHORT

    imp = es.extra["imputation"]
    x = es.extra.get("placebo")
    if x is None:  # pragma: no cover - every imputation event study records it
        raise EventStudyError("this imputation event study does not record its window")
    if imp.w is not None:
        raise EventStudyError("randomization inference of a weighted event study is not supported")
    if x["dropped"]:
        raise EventStudyError("randomization inference of an imputation event study needs every treated row "
                              "imputed (the fit dropped treated rows whose unit or period has no untreated row)")
    frame = imp.frame
    unit_N, per_N = imp.ucode, imp.tcode
    nU, nT = imp.U, imp.T
    time_N = frame[x["time"]].to_numpy().astype(np.int64)
    ids = np.unique(frame[x["unit"]].to_numpy())
    g_U = adoption_times(frame[COHORT].to_numpy().astype(float), time_N, column="cohort", units=ids,
                         unit_codes=unit_N, cohort=True).g
    gvals = np.unique(g_U[g_U != 0])
    y = frame[x["y"]].cast(float).to_numpy()
    K = len(imp.X)
    m = nT - 1 + K
    F = np.zeros((unit_N.size, m))
    hit = per_N > 0
    F[np.flatnonzero(hit), per_N[hit] - 1] = 1.0
    for j, col in enumerate(imp.X):
        F[:, nT - 1 + j] = col
    lo, hi = x["window"]
    levels = np.array([r for r in range(lo, hi + 1) if r != es.ref], dtype=np.int64)
    k = levels.size
    lut = np.full(hi - lo + 1, -1, dtype=np.int64)
    lut[levels - lo] = np.arange(k)

    def untreated_part(mask: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per unit over the rows in ``mask``: n, sy, sf, the demeaned S_i and r_i."""
        rows = np.flatnonzero(mask)
        u = unit_N[rows]
        n = np.bincount(u, minlength=nU).astype(float)
        sy = np.bincount(u, weights=y[rows], minlength=nU)
        FF = np.zeros((m, nU, m + 2))
        Fe = np.column_stack([F[rows], y[rows], np.ones(rows.size)])
        cluster_wsums_into(FF, Fe, F[rows], u)  # FF[q, i, :] = sum f_q [f, y, 1]
        FF = FF.transpose(1, 0, 2)  # U x m x (m + 2)
        sf = FF[:, :, m + 1]
        inv_n = np.where(n > 0, 1.0 / np.maximum(n, 1.0), 0.0)
        S = FF[:, :, :m] - inv_n[:, None, None] * sf[:, :, None] * sf[:, None, :]
        r = FF[:, :, m] - inv_n[:, None] * sf * sy[:, None]
        per = np.bincount(u * nT + per_N[rows], minlength=nU * nT).reshape(nU, nT)
        return n, sy, sf, S, r, inv_n, per

    _, _, _, S_never, r_never, _, per_never = untreated_part(np.ones(unit_N.size, dtype=bool))
    L = gvals.size
    dS, dr = np.zeros((nU, L, m, m)), np.zeros((nU, L, m))
    a, Bm, cnt = np.zeros((nU, L, k + 1)), np.zeros((nU, L, k + 1, m)), np.zeros((nU, L, k + 1))
    dT = np.zeros((nU, L, nT))
    for li, g in enumerate(gvals):
        treated = time_N >= g
        n, sy, sf, S, r, inv_n, per = untreated_part(~treated)
        dS[:, li], dr[:, li] = S - S_never, r - r_never
        dT[:, li] = per_never - per
        rel = time_N - g
        if x["bin_endpoints"]:
            rel = np.clip(rel, lo, hi)
        j_N = np.where((rel >= lo) & (rel <= hi), lut[np.clip(rel, lo, hi) - lo], -1)
        j_N = np.where(n[unit_N] > 0, j_N, -1)  # a unit with no untreated row has its treated rows dropped
        for jj, sel in ((j_N, j_N >= 0), (np.full(j_N.size, k), treated & (n[unit_N] > 0))):
            rows = np.flatnonzero(sel)
            cell = unit_N[rows] * (k + 1) + jj[rows]
            c = np.bincount(cell, minlength=nU * (k + 1)).reshape(nU, k + 1)
            ys = np.bincount(cell, weights=y[rows], minlength=nU * (k + 1)).reshape(nU, k + 1)
            fs = np.zeros((1, nU * (k + 1), m))
            cluster_wsums_into(fs, F[rows], np.ones((rows.size, 1)), cell)
            fs = fs[0].reshape(nU, k + 1, m)
            cnt[:, li] += c
            a[:, li] += ys - c * (sy * inv_n)[:, None]
            Bm[:, li] += fs - c[:, :, None] * (sf * inv_n[:, None])[:, None, :]
    sampler = Sampler(scheme, g_U, np.zeros(nU, dtype=np.int64), np.arange(nU), gvals, tuning)
    tables = ImputationTables(dS, dr, a, Bm, cnt, dT, S_never.sum(axis=0), r_never.sum(axis=0),
                              per_never.sum(axis=0).astype(float), sampler, keep)
    return tables, levels, ids
