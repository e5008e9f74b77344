"""Event studies for staggered adoption: dynamic TWFE, Sun-Abraham, imputation.

All methods return an :class:`EventStudyResult` (coefficients by relative
period, their covariance, aggregations, a pre-trend test and Figure 1).
``method="cs"`` is delegated to :mod:`staggerlab.inference.did.cs`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import polars as pl

from ...errors import ArgumentTypeError, EventStudyError, TreatmentError
from ...kernels.cluster import cluster_score_sums_into
from ...panels.panel import factorize_column
from ..regression.feols import feols
from ..regression.rank import psd_pinv
from ..results import Aggregate, PretrendTest, Result, interval
from . import lean_dummies as lean
from .lean_dummies import dense_bytes
from .staggered_data import COHORT, REL, StaggeredData, prepare

__all__ = ["event_study", "EventStudyResult", "EventStudyTuning", "Aggregate", "PretrendTest", "WaldTest", "EventStudyError"]

Method = Literal["twfe", "sunab", "imputation", "cs"]
_RELB = "_relb"  # relative period after binning the endpoints


@dataclass(frozen=True)
class EventStudyTuning:
    """Memory bounds and path switch of the event studies (same estimates whatever the setting).

    Parameters
    ----------
    chunk_rows : int
        Rows per chunk of the imputation estimator's per-row passes (bounds
        their temporaries).
    lean_bytes : int
        Size of the dense design (bytes) above which TWFE and Sun-Abraham take
        the lean path (:mod:`staggerlab.inference.did.lean_dummies`).
    """

    chunk_rows: int = 1 << 17
    lean_bytes: int = 1 << 29


# ----------------------------------------------------------------- helpers


def _rel_label(r: int) -> str:
    return f"m{-r}" if r < 0 else f"p{r}"


#: the pre-trend test's name before every event-study method shared it
WaldTest = PretrendTest


class EventStudyResult(Result):
    """Event-study estimates by relative period.

    Parameters
    ----------
    rel_time : array of int
        Estimated relative periods (reference excluded).
    coef : array
        Estimates, same order.
    vcov : 2-D array
        Their covariance.
    ref : int
        The reference (omitted) period.
    method : str
    nobs : int
        Observations used.
    df : int, optional
        Degrees of freedom of t-based inference (None: normal).
    extra : dict, optional
        Method-specific material. ``extra["aggregator"]``, a callable
        ``kind -> Aggregate``, overrides the default aggregations;
        ``extra["n_rel"]`` (treated observations per relative period) weights
        the default ``"simple"`` aggregation.
    """

    def __init__(self, rel_time: Sequence[int], coef: Sequence[float], vcov: np.ndarray, ref: int,
                 method: str, nobs: int, df: int | None = None, extra: dict | None = None):
        self.rel_time = np.asarray(rel_time, dtype=np.int64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.vcov = np.asarray(vcov, dtype=np.float64).reshape(self.coef.size, self.coef.size)
        self.ref = int(ref)
        self.method = method
        self.nobs = int(nobs)
        self.df = None if df is None else int(df)
        self.extra = dict(extra or {})

    @property
    def se(self) -> np.ndarray:
        """Standard errors of :attr:`coef`."""
        return np.sqrt(np.diag(self.vcov))

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """``rel_time, estimate, se, ci_low, ci_high`` (one row per estimated period)."""
        lo, hi = interval(self.coef, self.se, self.df, level)
        return pl.DataFrame({"rel_time": self.rel_time, "estimate": self.coef, "se": self.se,
                             "ci_low": lo, "ci_high": hi})

    def pretrend_test(self) -> PretrendTest:
        """Joint Wald test that every estimated lead (relative period < 0) is zero."""
        lead = np.flatnonzero(self.rel_time < 0)
        b = self.coef[lead]
        V = self.vcov[np.ix_(lead, lead)]
        wald = float(b @ np.linalg.lstsq(V, b, rcond=None)[0]) if lead.size else float("nan")
        q = int(np.linalg.matrix_rank(V)) if lead.size else 0
        return PretrendTest(wald, q, self.df, self.rel_time[lead].tolist())

    def _lincomb(self, R: np.ndarray) -> tuple[float, float]:
        return float(R @ self.coef), float(np.sqrt(max(R @ self.vcov @ R, 0.0)))

    def aggregate(self, kind: str = "simple") -> Aggregate:
        """Aggregate the event study.

        ``"simple"``: average effect over post periods weighted by the number
        of treated observations; ``"dynamic"``: equal-weight average of the
        post-period estimates (components: every relative period). Methods may
        add ``"group"`` (by cohort) and ``"calendar"`` (by period).
        """
        agg: Callable[[str], Aggregate] | None = self.extra.get("aggregator")
        if agg is not None:
            return agg(kind)
        return self._default_aggregate(kind)

    def _default_aggregate(self, kind: str) -> Aggregate:
        post = self.rel_time >= 0
        if not post.any():
            raise EventStudyError("no post-treatment period (rel_time >= 0) was estimated")
        if kind == "simple":
            n = np.asarray(self.extra.get("n_rel", np.ones(self.coef.size)), float)
            R = np.where(post, n, 0.0)
            R = R / R.sum()
            est, se = self._lincomb(R)
            return Aggregate("simple", est, se, self.df)
        if kind == "dynamic":
            R = post / post.sum()
            est, se = self._lincomb(R)
            comp = pl.DataFrame({"level": self.rel_time, "estimate": self.coef, "se": self.se})
            return Aggregate("dynamic", est, se, self.df, comp)
        raise EventStudyError(f"aggregation {kind!r} is not defined for method={self.method!r}; "
                              "use 'simple' or 'dynamic'")

    def summary(self) -> str:
        """Printable table of the estimates and the pre-trend test."""
        lines = [f"Event study ({self.method}), reference period {self.ref}, {self.nobs:,} observations",
                 f"{'rel_time':>8}{'estimate':>12}{'se':>11}{'ci_low':>11}{'ci_high':>11}"]
        for r in self.tidy().iter_rows(named=True):
            lines.append(f"{r['rel_time']:>8}{r['estimate']:>12.5f}{r['se']:>11.5f}"
                         f"{r['ci_low']:>11.5f}{r['ci_high']:>11.5f}")
        if (self.rel_time < 0).any():
            lines.append(self.pretrend_test().summary())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def plot(self, path: str | None = None, *, level: float = 0.95, ax: Any = None,
             title: str | None = None) -> Any:
        """Figure 1: estimates with confidence intervals against relative time."""
        from ...plots.event_study import plot_event_study

        return plot_event_study(self, path=path, level=level, ax=ax, title=title)


# ------------------------------------------------------------ dummy setup
def _add_binned_rel(frame: pl.DataFrame, window: tuple[int, int], bin_endpoints: bool) -> pl.DataFrame:
    lo, hi = window
    r = pl.col(REL).clip(lo, hi) if bin_endpoints else pl.col(REL)
    return frame.with_columns(r.alias(_RELB))


def _weighted_counts(frame: pl.DataFrame, by: list[str], weights: str | None) -> pl.DataFrame:
    n = pl.col(weights).cast(pl.Float64).sum() if weights else pl.len().cast(pl.Float64)
    return frame.group_by(by).agg(n.alias("_n"))


def _twfe(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
          tuning: EventStudyTuning) -> EventStudyResult:
    frame = _add_binned_rel(sd.frame, window, bin_endpoints)
    levels = sorted(x for x in frame[_RELB].drop_nulls().unique().to_list() if x != ref)
    if not levels:
        raise EventStudyError("no relative period other than the reference is observed")
    names = {f"_es_{_rel_label(r)}": r for r in levels}
    if dense_bytes(sd, len(levels)) > tuning.lean_bytes:
        res = _twfe_lean(sd, frame, levels, window, ref)
        if res is not None:
            return res
    frame = frame.with_columns(
        [(pl.col(_RELB) == r).fill_null(False).cast(pl.Float64).alias(n) for n, r in names.items()]
    )
    fml = f"{sd.y} ~ {' + '.join([*names, *sd.controls])} | {sd.unit} + {sd.time}"
    fit = feols(fml, sd.panel(frame), vcov={"CRV1": sd.cluster}, weights=sd.weights)
    lo, hi = window
    pos = [j for j, n in enumerate(fit.coefnames) if n in names and lo <= names[n] <= hi]
    rel = np.array([names[fit.coefnames[j]] for j in pos], dtype=np.int64)
    cnt = _weighted_counts(fit.design.frame.filter(pl.col(_RELB).is_not_null()), [_RELB], sd.weights)
    nmap = dict(zip(cnt[_RELB].to_list(), cnt["_n"].to_list()))
    V = fit.vcov()
    return EventStudyResult(rel, fit.beta[pos], V[np.ix_(pos, pos)], ref, "twfe", fit.nobs, fit.df_t,
                            {"fit": fit, "n_rel": np.array([nmap.get(int(r), 0.0) for r in rel])})


def _dummy_codes(keys: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """int32 index of each row's key among ``cells`` (sorted, distinct), -1 if absent."""
    if keys.size == 0:
        return np.empty(0, dtype=np.int32)
    lo, hi = int(min(keys.min(), cells.min())), int(max(keys.max(), cells.max()))
    lut = np.full(hi - lo + 1, -1, dtype=np.int32)
    lut[cells - lo] = np.arange(cells.size, dtype=np.int32)
    return lut[keys - lo]


def _twfe_lean(sd: StaggeredData, frame: pl.DataFrame, levels: list[int], window: tuple[int, int],
               ref: int) -> EventStudyResult | None:
    """Dynamic TWFE without the N x k design (big panels; see ``lean_dummies``)."""
    cells = np.array(levels, dtype=np.int64)
    j_N = _dummy_codes(frame[_RELB].fill_null(ref).to_numpy(), cells)
    fit = lean.lean_dummy_fit(sd, j_N, cells.size)
    if fit is None:
        return None
    lo, hi = window
    pos = np.flatnonzero((cells >= lo) & (cells <= hi))
    n_rel = np.bincount(j_N[j_N >= 0], minlength=cells.size).astype(float)
    return EventStudyResult(cells[pos], fit.beta[pos], fit.V[np.ix_(pos, pos)], ref, "twfe", fit.nobs, fit.df_t,
                            {"n_rel": n_rel[pos], "lean": True})


def _sunab(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
           tuning: EventStudyTuning) -> EventStudyResult:
    frame = _add_binned_rel(sd.frame, window, bin_endpoints)
    cohorts = [int(g) for g in sd.cohorts]
    if frame.filter(pl.col(COHORT) == 0).height == 0:
        # no never-treated units: the last cohort is the control, and only the
        # periods before it adopts can be used
        g_last = cohorts.pop()
        frame = frame.filter(pl.col(sd.time) < g_last)
        warnings.warn(f"no never-treated units: cohort {g_last} (last treated) is the control group",
                      stacklevel=3)
        frame = frame.with_columns(
            pl.when(pl.col(COHORT) == g_last).then(None).otherwise(pl.col(_RELB)).alias(_RELB)
        )
    has_ref = set(frame.filter(pl.col(_RELB) == ref)[COHORT].unique().to_list())
    lost = [g for g in cohorts if g not in has_ref]
    if lost:
        warnings.warn(f"cohort(s) {lost} have no observation at the reference period {ref} and are dropped",
                      stacklevel=3)
        frame = frame.filter(~pl.col(COHORT).is_in(lost))
        cohorts = [g for g in cohorts if g in has_ref]
    if not cohorts:
        raise EventStudyError("no treated cohort is observed at the reference period")
    cells = (frame.filter(pl.col(COHORT).is_in(cohorts) & (pl.col(_RELB) != ref))
             .select(COHORT, _RELB).unique().sort(COHORT, _RELB))
    names = {f"_sa_{g}_{_rel_label(r)}": (g, r) for g, r in cells.iter_rows()}
    lean_fit = None
    if frame.height == sd.frame.height and dense_bytes(sd, len(names)) > tuning.lean_bytes:
        # cells keyed by cohort x binned relative period (no rows were filtered)
        span = int(cells[_RELB].max() - cells[_RELB].min()) + 1
        rlo = int(cells[_RELB].min())
        key_c = cells[COHORT].to_numpy().astype(np.int64) * span + (cells[_RELB].to_numpy() - rlo)
        rel_N = frame[_RELB].fill_null(rlo - 1).to_numpy()
        key_N = np.where((rel_N < rlo) | (rel_N > rlo + span - 1), -1,
                         frame[COHORT].to_numpy().astype(np.int64) * span + (rel_N - rlo))
        j_N = np.where(key_N >= 0, _dummy_codes(np.maximum(key_N, 0), key_c), -1).astype(np.int32)
        lean_fit = lean.lean_dummy_fit(sd, j_N, len(names))
        n_c = np.bincount(j_N[j_N >= 0], minlength=len(names)).astype(float)
        del j_N, key_N, rel_N  # N-sized: not kept while feols runs if the lean path declined
    if lean_fit is not None:
        g_c, l_c = cells[COHORT].to_numpy().astype(np.int64), cells[_RELB].to_numpy().astype(np.int64)
        b_c, V_c, nobs, df_t = lean_fit.beta, lean_fit.V, lean_fit.nobs, lean_fit.df_t
        coh_U = frame[COHORT].to_numpy()[lean_fit.first_rows]
        n_units = {int(g): int(n) for g, n in zip(*np.unique(coh_U, return_counts=True))}
        extras: dict[str, Any] = {"lean": True}
        del frame
    else:
        frame = frame.with_columns(
            [((pl.col(COHORT) == g) & (pl.col(_RELB) == r)).fill_null(False).cast(pl.Float64).alias(n)
             for n, (g, r) in names.items()]
        )
        fml = f"{sd.y} ~ {' + '.join([*names, *sd.controls])} | {sd.unit} + {sd.time}"
        data = sd.panel(frame) if frame.height == sd.frame.height else frame  # rows kept: the codes apply
        fit = feols(fml, data, vcov={"CRV1": sd.cluster}, weights=sd.weights)
        pos = [j for j, n in enumerate(fit.coefnames) if n in names]
        g_c = np.array([names[fit.coefnames[j]][0] for j in pos], dtype=np.int64)
        l_c = np.array([names[fit.coefnames[j]][1] for j in pos], dtype=np.int64)
        b_c = fit.beta[pos]
        V_c = fit.vcov()[np.ix_(pos, pos)]
        nobs, df_t = fit.nobs, fit.df_t
        est = fit.design.frame
        cnt = _weighted_counts(est.filter(pl.col(_RELB).is_not_null()), [COHORT, _RELB], sd.weights)
        nmap = {(g, r): n for g, r, n in cnt.iter_rows()}
        n_c = np.array([nmap.get((int(g), int(r)), 0.0) for g, r in zip(g_c, l_c)])
        units = est.group_by(COHORT).agg(pl.col(sd.unit).n_unique())
        n_units = dict(units.iter_rows())
        extras = {"fit": fit}
    lo, hi = window
    rel = np.array(sorted({int(r) for r in l_c if lo <= r <= hi}), dtype=np.int64)
    R = np.zeros((rel.size, b_c.size))
    for i, r in enumerate(rel):
        m = l_c == r
        R[i, m] = n_c[m] / n_c[m].sum()
    n_rel = np.array([n_c[l_c == r].sum() for r in rel])

    def aggregator(kind: str) -> Aggregate:
        post = l_c >= 0
        if kind == "simple":
            w = np.where(post, n_c, 0.0)
            w = w / w.sum()
            return Aggregate("simple", w @ b_c, np.sqrt(w @ V_c @ w), df_t)
        if kind == "group":
            gs = sorted({int(g) for g in g_c[post]})
            Rg = np.zeros((len(gs), b_c.size))
            for i, g in enumerate(gs):
                m = post & (g_c == g)
                Rg[i, m] = n_c[m] / n_c[m].sum()
            pi = np.array([n_units[g] for g in gs], float)
            pi /= pi.sum()
            Vg = Rg @ V_c @ Rg.T
            comp = pl.DataFrame({"level": gs, "estimate": Rg @ b_c, "se": np.sqrt(np.diag(Vg))})
            return Aggregate("group", pi @ Rg @ b_c, np.sqrt(pi @ Vg @ pi), df_t, comp)
        return res._default_aggregate(kind)

    res = EventStudyResult(rel, R @ b_c, R @ V_c @ R.T, ref, "sunab", nobs, df_t,
                           {**extras, "n_rel": n_rel, "aggregator": aggregator,
                            "cells": pl.DataFrame({"cohort": g_c, "rel_time": l_c, "estimate": b_c,
                                                   "se": np.sqrt(np.diag(V_c)), "n": n_c})})
    return res


# -------------------------------------------------------------- imputation
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
        Stx, Sxx, rhs_t, rhs_x = self._within_moments(y)
        self.Spinv = psd_pinv(np.block([[Stt, Stx], [Stx.T, Sxx]]))
        theta = self.Spinv @ np.concatenate([rhs_t, rhs_x])
        e = np.empty(frame.height)
        for r in self._chunks():
            e[r] = y[r] - self._fit_F(theta[:, None], r)[:, 0]
        alpha = np.bincount(ucode, weights=w0 * e, minlength=U) / self.n_u
        for r in self._chunks():
            e[r] -= alpha[ucode[r]]
        self.u1 = e
        self.cl = ucode if sd.cluster == sd.unit else factorize_column(frame[sd.cluster])
        self.G = int(self.cl.max()) + 1

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
        u1, T = self.u1, self.T
        m = np.flatnonzero(codes >= 0)
        c = codes[m]
        wm = self._weights(m)
        sw = np.bincount(c, weights=wm, minlength=k)
        beta = np.bincount(c, weights=u1[m] * wm, minlength=k) / sw
        u2 = u1[m] - beta[c]
        # gamma_j = (X10'W X10)^-1 X1'W x2_j in (unit FE | F) blocks; z_j = X10 gamma_j
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
        del bUn
        # the cluster sums of z * (w0 u1) over the untreated rows, chunk by chunk
        # (z = alpha[u] + F theta is untreated rows x k)
        S0 = np.zeros((self.G, k))
        for r in self._chunks(untreated=True):
            z = alpha[self.ucode[r]] + self._fit_F(theta, r)
            cluster_score_sums_into(S0, z, self.w0[r] * u1[r], self.cl[r])
        Wg = np.bincount(self.cl[m] * k + c, weights=u2 * wm, minlength=self.G * k).reshape(self.G, k)
        Wg -= S0
        Wg /= sw
        return beta, Wg.T @ Wg, sw

    def _codes_of(self, col: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = self.frame[col].to_numpy()
        levels = np.unique(v[mask])
        codes = np.full(v.size, -1, dtype=np.int64)
        codes[mask] = np.searchsorted(levels, v[mask])
        return codes, levels


def _imputation(sd: StaggeredData, window: tuple[int, int], ref: int, bin_endpoints: bool,
                tuning: EventStudyTuning) -> EventStudyResult:
    imp = _Imputation(sd, tuning.chunk_rows)
    frame = _add_binned_rel(imp.frame, window, bin_endpoints)
    imp.frame = frame
    lo, hi = window
    relb = frame[_RELB].fill_null(ref).to_numpy()
    in_es = (frame[COHORT].to_numpy() > 0) & (relb != ref) & (relb >= lo) & (relb <= hi)
    codes, rel = imp._codes_of(_RELB, in_es)
    if rel.size == 0:
        raise EventStudyError("no relative period other than the reference is observed in the window")
    beta, V, sw = imp.second_stage(codes, rel.size)
    df = imp.G - 1

    @_cache
    def aggregator(kind: str) -> Aggregate:
        D = imp.D
        if kind == "simple":
            b, Vs, _ = imp.second_stage(np.where(D, 0, -1), 1)
            return Aggregate("simple", b[0], np.sqrt(Vs[0, 0]), df)
        if kind in ("group", "calendar"):
            col = COHORT if kind == "group" else sd.time
            c, levels = imp._codes_of(col, D)
            b, Vg, swg = imp.second_stage(c, levels.size)
            if kind == "group":
                units = frame.filter(pl.col(COHORT) > 0).group_by(COHORT).agg(pl.col(sd.unit).n_unique())
                nu = dict(units.iter_rows())
                pi = np.array([nu[int(g)] for g in levels], float)
            else:
                pi = np.ones(levels.size)
            pi /= pi.sum()
            comp = pl.DataFrame({"level": levels, "estimate": b, "se": np.sqrt(np.diag(Vg))})
            return Aggregate(kind, pi @ b, np.sqrt(pi @ Vg @ pi), df, comp)
        return res._default_aggregate(kind)

    res = EventStudyResult(rel, beta, V, ref, "imputation", frame.height, df,
                           {"n_rel": sw, "aggregator": aggregator, "first_stage_resid": imp.u1})
    return res


def _cache(f: Callable[[str], Aggregate]) -> Callable[[str], Aggregate]:
    memo: dict[str, Aggregate] = {}

    def g(kind: str) -> Aggregate:
        if kind not in memo:
            memo[kind] = f(kind)
        return memo[kind]

    return g


# -------------------------------------------------------------- dispatcher
def event_study(
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
    window: tuple[int, int] = (-5, 5),
    ref: int = -1,
    bin_endpoints: bool = True,
    method: Method = "twfe",
    tuning: Any = None,
    **kwargs: Any,
) -> EventStudyResult:
    """Event study of a staggered adoption design.

    Parameters
    ----------
    data : polars/pandas DataFrame or Panel
    y, unit, time : str
        Outcome, unit id and (numeric) period columns.
    cohort, treat : str
        Exactly one: the adoption-period column (0/null = never treated) or
        an absorbing 0/1 treatment.
    controls : list of str, optional
        Time-varying covariates (regressors in TWFE/Sun-Abraham, first stage
        of the imputation estimator).
    cluster : str, optional
        Cluster column of the standard errors (default: ``unit``).
    weights : str, optional
        Analytic weights.
    window : (int, int)
        Relative periods reported, ``(lo, hi)``.
    ref : int
        Reference (omitted) period; excluded from the reported periods.
    bin_endpoints : bool
        Pool periods before ``lo`` into ``lo`` and after ``hi`` into ``hi``.
        If False, every observed relative period gets its own coefficient
        (TWFE/Sun-Abraham) and only those in the window are reported.
    method : {"twfe", "sunab", "imputation", "cs"}
        Dynamic TWFE; Sun-Abraham interaction-weighted (never-treated or, if
        none, last-treated control; cohort weights by share of observations);
        Borusyak-Jaravel-Spiess imputation (= Gardner two-stage DID, with
        Gardner's GMM standard errors); Callaway-Sant'Anna (``**kwargs``
        such as ``control=`` are passed on). TWFE and Sun-Abraham fits whose
        dense design would exceed ``tuning.lean_bytes`` (512 MB) run as
        a lean regression from per-unit sums (same estimates; no N x k
        matrix), unless weights, singletons or collinearity need ``feols``.
    tuning : EventStudyTuning, optional
        Memory bounds (default ``EventStudyTuning()``); with ``method="cs"``, a
        :class:`~staggerlab.inference.did.cs.CSTuning` passed on.

    Returns
    -------
    EventStudyResult

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.did.event_study import event_study
    >>> df = sl.simulate.staggered(300, 10, seed=1)
    >>> es = event_study(df, y="y", unit="unit", time="time", cohort="cohort", method="sunab")
    >>> es.tidy().columns
    ['rel_time', 'estimate', 'se', 'ci_low', 'ci_high']
    """
    if method not in ("twfe", "sunab", "imputation", "cs"):
        raise EventStudyError(f"unknown method {method!r}; use 'twfe', 'sunab', 'imputation' or 'cs'")
    try:
        lo, hi = (int(window[0]), int(window[1]))
    except (TypeError, ValueError, IndexError):
        raise EventStudyError(f"window must be a pair of integers (lo, hi), got {window!r}") from None
    if lo > hi:
        raise EventStudyError(f"window {window!r}: lo must not exceed hi")
    if not isinstance(ref, (int, np.integer)):
        raise EventStudyError(f"ref must be an integer relative period, got {ref!r}")
    if method != "cs" and not lo <= ref <= hi:
        raise EventStudyError(f"reference period {ref} lies outside the window {window!r}")
    sd = prepare(data, y=y, unit=unit, time=time, cohort=cohort, treat=treat, controls=controls,
                 cluster=cluster, weights=weights, rows=method != "cs")  # CS works on units
    if method == "cs":
        from .cs import callaway_santanna

        if tuning is not None:
            kwargs["tuning"] = tuning
        return callaway_santanna(sd, window=(lo, hi), **kwargs)
    if kwargs:
        raise ArgumentTypeError(f"unexpected keyword argument(s) for method={method!r}: {sorted(kwargs)}")
    run = {"twfe": _twfe, "sunab": _sunab, "imputation": _imputation}[method]
    if tuning is None:
        tuning = EventStudyTuning()
    if not isinstance(tuning, EventStudyTuning):
        raise ArgumentTypeError(f"tuning must be an EventStudyTuning for method={method!r}, got {type(tuning).__name__}")
    sd.codes()  # every method needs the (unit, time) codes: computed once, here
    return run(sd, (lo, hi), int(ref), bool(bin_endpoints), tuning)
