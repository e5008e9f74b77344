"""Borusyak-Jaravel-Spiess imputation event study (= Gardner's two-stage DID)
with Gardner's GMM standard errors.

Inference uses t(G - 1) (G clusters) by default; ``event_study(df="normal")``
gives the normal reference. With few treated clusters the intervals
under-cover (89.6% at 95% with 10 treated of 50 clusters and skewed errors
larger for the treated; benchmarks/RESULTS.md, "Event-study inference"): the
GMM variance, the same as did2s's, rests on the treated clusters' scores. This
is the method's small-sample behaviour, not a coding error; the wild
bootstrap of the event study (``wildboot(es)``) covers 95.4% there.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterator

import numpy as np
import polars as pl

from ...errors import EventStudyError, TreatmentError
from ...kernels.cluster import cluster_score_sums_into
from ...panels.panel import factorize_column
from ..regression.rank import psd_pinv
from ..results import Aggregate
from .event_study import EventStudyResult, EventStudyTuning
from .relative_periods import RELB, add_binned_rel
from .staggered_data import COHORT, StaggeredData

__all__ = ["imputation"]


class _Imputation:
    """Borusyak-Jaravel-Spiess imputation with Gardner's GMM variance.

    First stage: unit + period FE (+ controls) fitted on untreated rows;
    second stage: means of the first-stage residuals over disjoint groups of
    rows (relative periods, cohorts, ...). The variance of those means is the
    two-stage GMM (stacked moments) variance clustered by ``cluster``,
    without small-sample factor, as in Butts-Gardner's did2s.

    The first-stage normal equations are solved by eliminating the unit
    effects: what remains is a small system in the period effects (first
    period as reference) and the controls, ``S`` (its Schur complement),
    factorized once. Period dummies are never formed; they enter through
    (unit, period) and (period, group) weight tables.

    Memory: the controls stay the frame's columns (never stacked into an
    N x K matrix), sums over the untreated rows use ``w0`` (the weights, 0
    on treated rows) instead of gathered copies, and every pass that needs
    per-row N x K or N x k values runs over chunks of ``chunk_rows`` rows.
    """

    def __init__(self, sd: StaggeredData, chunk_rows: int):
        self.chunk_rows = chunk_rows
        frame = sd.frame
        D = frame["_treat"].to_numpy().astype(bool)
        if sd.id_codes is not None:  # a Panel's codes (no second factorization of N ids)
            ucode, tcode = sd.id_codes
        else:
            ucode = factorize_column(frame[sd.unit])
            tcode = factorize_column(frame[sd.time])
        w = frame[sd.weights].cast(pl.Float64).to_numpy() if sd.weights else np.ones(frame.height)
        n_u = np.bincount(ucode, weights=np.where(D, 0.0, w), minlength=int(ucode.max()) + 1)
        t_ok = np.bincount(tcode, weights=~D, minlength=int(tcode.max()) + 1) > 0
        ok = ~D | ((n_u[ucode] > 0) & t_ok[tcode])
        if not ok.all():
            warnings.warn(
                f"dropped {int((~ok).sum())} treated row(s) whose unit or period has no untreated "
                "observation (their untreated outcome cannot be imputed)",
                stacklevel=4,
            )
            frame = frame.filter(pl.Series(ok))
            D, w = D[ok], w[ok]
            ucode = factorize_column(frame[sd.unit])
            tcode = factorize_column(frame[sd.time])
        if D.all() or not D.any():
            raise TreatmentError("imputation needs both treated and untreated observations")
        # unweighted: no N-sized vector of ones is kept (see _weights)
        self.frame, self.D, self.w, self.ucode, self.tcode = frame, D, w if sd.weights else None, ucode, tcode
        U, T = int(ucode.max()) + 1, int(tcode.max()) + 1
        self.U, self.T = U, T
        self.X = [frame[c].cast(pl.Float64).to_numpy() for c in sd.controls]
        K = len(self.X)
        self.w0 = w0 = np.where(D, 0.0, w)
        CT = np.bincount(ucode * T + tcode, weights=w0, minlength=U * T).reshape(U, T)
        self.n_u = CT.sum(axis=1)
        self.CT = CT[:, 1:]  # weight of each unit's untreated rows by period (period 0 = reference)
        self.CX = np.column_stack([np.bincount(ucode, weights=w0 * x, minlength=U) for x in self.X]) \
            if K else np.zeros((U, 0))
        y = frame[sd.y].cast(pl.Float64).to_numpy()
        # S = F0' W M_U F0 with F0 = [period dummies 2..T, controls] on the untreated rows
        Stt = np.diag(CT.sum(axis=0)[1:]) - (self.CT / self.n_u[:, None]).T @ self.CT
        Stx, Sxx, _, _ = self._within_moments(y)
        self.Spinv = psd_pinv(np.block([[Stt, Stx], [Stx.T, Sxx]]))
        self.u1 = self.first_stage_resid(y)
        self.unit, self.time = sd.unit, sd.time
        self.cl = ucode if sd.cluster == sd.unit else factorize_column(frame[sd.cluster])
        self.G = int(self.cl.max()) + 1

    def first_stage_resid(self, y: np.ndarray) -> np.ndarray:
        """Residuals of ``y`` (every row) from the first stage fitted on its untreated rows.

        Linear in ``y``: the wild bootstrap applies it to weighted residuals.
        """
        _, _, rhs_t, rhs_x = self._within_moments(y)
        theta = self.Spinv @ np.concatenate([rhs_t, rhs_x])
        e = np.empty(y.size)
        for r in self._chunks():
            e[r] = y[r] - self._fit_F(theta[:, None], r)[:, 0]
        alpha = np.bincount(self.ucode, weights=self.w0 * e, minlength=self.U) / self.n_u
        for r in self._chunks():
            e[r] -= alpha[self.ucode[r]]
        return e

    def _weights(self, rows: slice | np.ndarray) -> np.ndarray:
        """The observation weights of ``rows`` (ones when unweighted)."""
        return np.ones(self.D[rows].size) if self.w is None else self.w[rows]

    def _chunks(self, untreated: bool = False) -> Iterator[slice | np.ndarray]:
        """Row chunks in row order: slices, or the untreated rows of each slice."""
        n = self.D.size
        for lo in range(0, n, self.chunk_rows):
            hi = min(lo + self.chunk_rows, n)
            yield lo + np.flatnonzero(~self.D[lo:hi]) if untreated else slice(lo, hi)

    def _controls(self, rows: slice | np.ndarray) -> np.ndarray:
        """The controls of ``rows`` (len(rows) x K)."""
        n = self.D[rows].size
        return np.column_stack([x[rows] for x in self.X]) if self.X else np.zeros((n, 0))

    def _within_moments(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``F0' W M_U [X0, y0]`` blocks: period x controls, controls x controls,
        and the right-hand sides, from the untreated rows demeaned by unit."""
        T, K = self.T, len(self.X)
        xbar = self.CX / self.n_u[:, None]  # untreated unit means of the controls
        ybar = np.bincount(self.ucode, weights=self.w0 * y, minlength=self.U) / self.n_u
        Stx, Sxx = np.zeros((T, K)), np.zeros((K, K))
        rhs_t, rhs_x = np.zeros(T), np.zeros(K)
        for r in self._chunks(untreated=True):
            u, t, w = self.ucode[r], self.tcode[r], self.w0[r]
            Xd = self._controls(r) - xbar[u]
            wyd = w * (y[r] - ybar[u])
            WXd = w[:, None] * Xd
            Sxx += Xd.T @ WXd
            for j in range(K):
                Stx[:, j] += np.bincount(t, weights=WXd[:, j], minlength=T)
            rhs_t += np.bincount(t, weights=wyd, minlength=T)
            rhs_x += Xd.T @ wyd
        return Stx[1:], Sxx, rhs_t[1:], rhs_x

    def _fit_F(self, theta: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
        """``F @ theta`` on ``rows`` for a (T-1+K) x k coefficient matrix, without forming F."""
        T = self.T
        tt = np.vstack([np.zeros((1, theta.shape[1])), theta[: T - 1]])
        return tt[self.tcode[rows]] + self._controls(rows) @ theta[T - 1:]

    def second_stage(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Means of the residuals over groups ``codes`` (0..k-1, -1 = none) and their GMM vcov.

        Returns ``(beta, vcov, group weight sums)``.
        """
        beta, Wg, sw = self.scores(codes, k, self.u1)
        return beta, Wg.T @ Wg, sw

    def loadings(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the GMM scores of the group means of ``codes`` load on.

        Returns ``(m, sw, alpha, theta)``: the grouped rows, the group weight
        sums, and the coefficients of each group's weights ``x2_j`` (the
        group's weight on its rows, divided by nothing) projected on the first
        stage, ``gamma_j = (X10'W X10)^-1 X1'W x2_j`` in (unit FE ``alpha``,
        U x k | period effects and controls ``theta``, (T-1+K) x k) blocks.
        An untreated row's loading on group ``j`` is ``z_j = alpha[u, j] +
        F theta_j``.
        """
        T = self.T
        m = np.flatnonzero(codes >= 0)
        c = codes[m]
        wm = self._weights(m)
        sw = np.bincount(c, weights=wm, minlength=k)
        bUn = np.bincount(self.ucode[m] * k + c, weights=wm, minlength=self.U * k).reshape(self.U, k)
        bUn /= self.n_u[:, None]
        bT = np.bincount(self.tcode[m] * k + c, weights=wm, minlength=T * k).reshape(T, k)[1:]
        bX = np.vstack([np.bincount(c, weights=wm * x[m], minlength=k) for x in self.X]) \
            if self.X else np.zeros((0, k))
        theta = self.Spinv @ np.vstack([bT - self.CT.T @ bUn, bX - self.CX.T @ bUn])
        # alpha = bUn - (CT theta_t + CX theta_x) / n_u, in place (U x k arrays are N-sized)
        alpha = self.CT @ theta[: T - 1]
        alpha += self.CX @ theta[T - 1:]
        alpha /= self.n_u[:, None]
        np.subtract(bUn, alpha, out=alpha)
        return m, sw, alpha, theta

    def scores(self, codes: np.ndarray, k: int, u1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The group means of first-stage residuals ``u1`` and their per-cluster GMM
        scores (``G x k``; the vcov is ``W'W``), with the group weight sums."""
        m, sw, alpha, theta = self.loadings(codes, k)
        c = codes[m]
        wm = self._weights(m)
        beta = np.bincount(c, weights=u1[m] * wm, minlength=k) / sw
        u2 = u1[m] - beta[c]
        Wg = np.bincount(self.cl[m] * k + c, weights=u2 * wm, minlength=self.G * k).reshape(self.G, k)
        Wg -= self.untreated_cluster_sums(alpha, theta, [u1])[0]
        Wg /= sw
        return beta, Wg, sw

    def untreated_cluster_sums(self, alpha: np.ndarray, theta: np.ndarray, values: list[np.ndarray],
                               periods: bool = False) -> list[np.ndarray]:
        """Per cluster, the sums over its untreated rows of ``z * w0 * v`` for each
        row vector ``v`` in ``values`` (``G x k`` each; ``z`` the loadings of
        :meth:`loadings`), and with ``periods`` also of ``z * w0`` by period
        (``G x T x k``, last). One chunked pass over the rows.
        """
        G, T, k = self.G, self.T, theta.shape[1]
        out = [np.zeros((G, k)) for _ in values]
        cells = np.zeros(G * T * k) if periods else None
        for r in self._chunks(untreated=True):
            z = alpha[self.ucode[r]] + self._fit_F(theta, r)
            w0 = self.w0[r]
            cl = self.cl[r]
            for S, v in zip(out, values):
                cluster_score_sums_into(S, z, w0 * v[r], cl)
            if cells is not None:
                idx = ((cl * T + self.tcode[r]) * k)[:, None] + np.arange(k)
                cells += np.bincount(idx.ravel(), weights=(z * w0[:, None]).ravel(), minlength=G * T * k)
        if cells is not None:
            out.append(cells.reshape(G, T, k))
        return out

    def grouping(self, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The treated rows' groups of the aggregate ``kind`` (``"simple"``,
        ``"group"``, ``"calendar"``): ``(codes, group levels, weights of the
        group means in the aggregate)``. ``"group"`` weighs each cohort by
        its number of units, ``"calendar"`` each period equally."""
        if kind == "simple":
            return np.where(self.D, 0, -1), np.zeros(1, dtype=np.int64), np.ones(1)
        col = COHORT if kind == "group" else self.time
        codes, levels = self._codes_of(col, self.D)
        if kind == "group":
            units = self.frame.filter(pl.col(COHORT) > 0).group_by(COHORT).agg(pl.col(self.unit).n_unique())
            nu = dict(units.iter_rows())
            pi = np.array([nu[int(g)] for g in levels], float)
        else:
            pi = np.ones(levels.size)
        return codes, levels, pi / pi.sum()

    def _codes_of(self, col: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = self.frame[col].to_numpy()
        levels = np.unique(v[mask])
        codes = np.full(v.size, -1, dtype=np.int64)
        codes[mask] = np.searchsorted(levels, v[mask])
        return codes, levels


def imputation(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
               tuning: EventStudyTuning) -> EventStudyResult:
    n_rows = sd.frame.height
    imp = _Imputation(sd, tuning.chunk_rows)
    frame = add_binned_rel(imp.frame, window, bin_endpoints)
    imp.frame = frame
    lo, hi = window
    relb = frame[RELB].fill_null(ref).to_numpy()
    in_es = (frame[COHORT].to_numpy() > 0) & (relb != ref) & (relb >= lo) & (relb <= hi)
    codes, rel = imp._codes_of(RELB, in_es)
    if rel.size == 0:
        raise EventStudyError("no relative period other than the reference is observed in the window")
    beta, V, sw = imp.second_stage(codes, rel.size)
    df = imp.G - 1

    @_cache
    def aggregator(kind: str) -> Aggregate:
        if kind == "simple":
            b, Vs, _ = imp.second_stage(imp.grouping("simple")[0], 1)
            return Aggregate("simple", b[0], np.sqrt(Vs[0, 0]), df)
        if kind in ("group", "calendar"):
            c, levels, pi = imp.grouping(kind)
            b, Vg, _ = imp.second_stage(c, levels.size)
            comp = pl.DataFrame({"level": levels, "estimate": b, "se": np.sqrt(np.diag(Vg))})
            return Aggregate(kind, pi @ b, np.sqrt(pi @ Vg @ pi), df, comp)
        return res.default_aggregate(kind)

    res = EventStudyResult(rel, beta, V, ref, "imputation", frame.height, df,
                           {"n_rel": sw, "aggregator": aggregator, "first_stage_resid": imp.u1,
                            "imputation": imp, "codes": codes,
                            # what randomization inference re-assigns (resampling/es_placebo_imputation)
                            "placebo": {"window": window, "bin_endpoints": bin_endpoints, "unit": sd.unit,
                                        "time": sd.time, "y": sd.y, "dropped": imp.frame.height != n_rows}})
    return res


def _cache(f: Callable[[str], Aggregate]) -> Callable[[str], Aggregate]:
    memo: dict[str, Aggregate] = {}

    def g(kind: str) -> Aggregate:
        if kind not in memo:
            memo[kind] = f(kind)
        return memo[kind]

    return g
