"""Imputation (Borusyak-Jaravel-Spiess / Gardner two-stage) event study of a
partitioned panel, with Gardner's GMM standard errors.

Every quantity of the in-memory estimator (:mod:`staggerlab.inference.did.imputation`)
is a sum over units of per-unit pieces plus small global solves, and a unit's
rows are all in one partition:

0. one pass reads each partition's adoption periods (as the TWFE event study
   does) and returns the periods with an untreated row, the relative periods,
   cohorts and calendar periods of its treated rows, and its units per cohort;
1. a second pass drops the treated rows that cannot be imputed (a unit or
   period without untreated rows, as in memory) and sums the first stage's
   normal equations (``S``, period effects and controls after the unit means
   of the untreated rows) and, for each grouping of the rows (event times;
   all treated rows; cohorts; periods), the right-hand sides of the loadings
   ``theta_j``; the client solves them;
2. a third pass forms the first-stage residuals and, per cluster level, the
   group sums ``sum w u1``, ``sum w`` and ``sum z w0 u1`` the GMM scores are
   made of; the client adds them by cluster level and forms the estimates and
   ``W'W``.

Equal to ``event_study(method="imputation")`` in memory at 1e-10 (tests).
Unweighted. ``wildboot(es)`` and ``placebo(es)`` gather the rows to the
client below its budget (``event_study.gathered_event_study``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from ...errors import EventStudyError, TreatmentError
from ..did.event_study import EventStudyResult
from ..regression.rank import psd_pinv
from ..results import Aggregate
from .event_study import binned_rel, complete_rows, gather_spec, inputs
from .exact import CLIENT_BUDGET
from .partitions import check_units, run_partitions

__all__ = ["imputation_partitioned"]

_KINDS = ("simple", "group", "calendar")


@dataclass
class _Spec:
    """What every pass needs (picklable, small)."""

    y: str
    unit: str
    time: str
    source: str
    is_cohort: bool
    controls: list[str]
    cluster: str
    window: tuple[int, int]
    ref: int
    bin_endpoints: bool
    periods: np.ndarray | None = None  # periods with an untreated row (the first is the reference)
    levels: dict[str, np.ndarray] | None = None  # group levels of each grouping


def _rows(pdf: Any, s: _Spec) -> dict[str, Any]:
    """The partition's complete rows (as in memory: adoption dated from every row
    with a unit, period and treatment; then rows missing a used value dropped)."""
    frame, t, t_valid, g, rel = binned_rel(pdf, s.unit, s.time, s.source, s.is_cohort, s.window, s.bin_endpoints)
    keep = complete_rows(frame, t_valid, s.y, s.controls, s.unit, s.cluster, s.source, s.is_cohort)
    r = {"y": frame[s.y].cast(pl.Float64).to_numpy()[keep], "t": t[keep], "g": g[keep], "rel": rel[keep],
         "unit": frame[s.unit].to_numpy()[keep], "cl": frame[s.cluster].to_numpy()[keep],
         "X": np.column_stack([frame[c].cast(pl.Float64).to_numpy()[keep] for c in s.controls])
         if s.controls else np.zeros((int(keep.sum()), 0)), "n_missing": int((~keep).sum())}
    r["D"] = (r["g"] > 0) & (r["t"] >= r["g"])
    return r


def _in_es(r: dict[str, Any], s: _Spec) -> np.ndarray:
    """Rows of the event study's groups: treated units' relative periods in the window but the reference."""
    rel = np.where(np.isfinite(r["rel"]), r["rel"], s.ref)
    return (r["g"] > 0) & (rel != s.ref) & (rel >= s.window[0]) & (rel <= s.window[1])


def _pass0(pdf: Any, s: _Spec) -> dict[str, Any]:
    r = _rows(pdf, s)
    D = r["D"]
    rel = r["rel"][_in_es(r, s)]
    return {"untreated": np.unique(r["t"][~D]), "rel": np.unique(rel.astype(np.int64)),
            "cohorts": np.unique(r["g"][D]), "calendar": np.unique(r["t"][D]), "n_missing": r["n_missing"],
            "units": np.unique(r["unit"])}


def _local(r: dict[str, Any], s: _Spec) -> dict[str, Any]:
    """The rows that can be imputed and their unit-level tables."""
    periods = s.periods
    pos = np.searchsorted(periods, r["t"])
    t_ok = (pos < periods.size) & (periods[np.minimum(pos, periods.size - 1)] == r["t"])
    D = r["D"]
    uid, ucode = np.unique(r["unit"], return_inverse=True)
    n_u = np.bincount(ucode, weights=~D, minlength=uid.size)
    ok = ~D | ((n_u[ucode] > 0) & t_ok)
    dropped = int((~ok).sum())
    keep = {k: (v[ok] if isinstance(v, np.ndarray) else v) for k, v in r.items()}
    uid, ucode = np.unique(keep["unit"], return_inverse=True)
    D = keep["D"]
    T, U = periods.size, uid.size
    tcode = np.searchsorted(periods, keep["t"])
    w0 = (~D).astype(np.float64)
    CT = np.bincount(ucode * T + tcode, weights=w0, minlength=U * T).reshape(U, T)
    n_u = CT.sum(axis=1)
    X = keep["X"]
    CX = np.column_stack([np.bincount(ucode, weights=w0 * X[:, j], minlength=U) for j in range(X.shape[1])]) \
        if X.shape[1] else np.zeros((U, 0))
    return {**keep, "ucode": ucode, "tcode": tcode, "w0": w0, "CT": CT, "n_u": n_u, "CX": CX, "dropped": dropped,
            "U": U}


def _codes(L: dict[str, Any], s: _Spec, kind: str) -> np.ndarray:
    """Group codes of the rows for grouping ``kind`` (-1: not in a group)."""
    D = L["D"]
    if kind == "es":
        lv = s.levels["es"]
        rel = np.where(np.isfinite(L["rel"]), L["rel"], s.ref).astype(np.int64)
        c = np.searchsorted(lv, rel)
        hit = _in_es(L, s) & (c < lv.size) & (lv[np.minimum(c, lv.size - 1)] == rel)
        return np.where(hit, c, -1)
    if kind == "simple":
        return np.where(D, 0, -1)
    lv = s.levels[kind]
    key = L["g"] if kind == "group" else L["t"]
    return np.where(D, np.searchsorted(lv, key), -1)


def _groupings(s: _Spec) -> list[tuple[str, int]]:
    return [("es", s.levels["es"].size), ("simple", 1), ("group", s.levels["group"].size),
            ("calendar", s.levels["calendar"].size)]


def _pass1(pdf: Any, s: _Spec) -> dict[str, Any]:
    L = _local(_rows(pdf, s), s)
    T, K, U = s.periods.size, L["X"].shape[1], L["U"]
    u, t, w0, X, y = L["ucode"], L["tcode"], L["w0"], L["X"], L["y"]
    CT, n_u, CX = L["CT"], L["n_u"], L["CX"]
    un = np.flatnonzero(w0 > 0)
    safe = np.where(n_u > 0, n_u, 1.0)
    xbar = CX / safe[:, None]
    ybar = np.bincount(u, weights=w0 * y, minlength=U) / safe
    Xd = X[un] - xbar[u[un]]
    yd = y[un] - ybar[u[un]]
    out = {"colCT": CT.sum(axis=0), "CTCT": (CT / safe[:, None]).T @ CT, "Sxx": Xd.T @ Xd,
           "Stx": np.column_stack([np.bincount(t[un], weights=Xd[:, j], minlength=T) for j in range(K)])
           if K else np.zeros((T, 0)),
           "rhs_t": np.bincount(t[un], weights=yd, minlength=T), "rhs_x": Xd.T @ yd, "dropped": L["dropped"],
           "n": y.size, "D": int(L["D"].sum())}
    # units per cohort among the rows kept (the group aggregate's weights, as in memory; a unit
    # is in one partition, so the partitions' counts add up)
    coh = pl.DataFrame({"g": L["g"], "u": L["unit"]}).filter(pl.col("g") > 0).group_by("g").agg(pl.col("u").n_unique())
    out["units_by_cohort"] = {int(g): int(n) for g, n in coh.iter_rows()}
    for kind, k in _groupings(s):
        c = _codes(L, s, kind)
        m = np.flatnonzero(c >= 0)
        cm = c[m]
        bUn = np.bincount(u[m] * k + cm, minlength=U * k).reshape(U, k) / safe[:, None]
        bT = np.bincount(t[m] * k + cm, minlength=T * k).reshape(T, k)
        bX = np.vstack([np.bincount(cm, weights=X[m, j], minlength=k) for j in range(K)]) if K else np.zeros((0, k))
        out[kind] = {"sw": np.bincount(cm, minlength=k).astype(float),
                     "B": np.vstack([(bT - CT.T @ bUn)[1:], bX - CX.T @ bUn])}
    return out


def _pass2(pdf: Any, s: _Spec, theta: np.ndarray, thetas: dict[str, np.ndarray]) -> dict[str, Any]:
    L = _local(_rows(pdf, s), s)
    T = s.periods.size
    u, t, w0, X, y = L["ucode"], L["tcode"], L["w0"], L["X"], L["y"]
    CT, n_u, CX = L["CT"], L["n_u"], L["CX"]
    safe = np.where(n_u > 0, n_u, 1.0)

    def fit_F(th: np.ndarray, rows: np.ndarray) -> np.ndarray:  # F @ theta for a (T-1+K) x k theta
        tt = np.vstack([np.zeros((1, th.shape[1])), th[: T - 1]])
        return tt[t[rows]] + X[rows] @ th[T - 1:]

    allrows = np.arange(y.size)
    e = y - fit_F(theta[:, None], allrows)[:, 0]
    alpha = np.bincount(u, weights=w0 * e, minlength=L["U"]) / safe
    u1 = e - alpha[u]
    lab, lc = np.unique(L["cl"], return_inverse=True)
    Gp = lab.size
    un = np.flatnonzero(w0 > 0)
    out = {}
    for kind, k in _groupings(s):
        c = _codes(L, s, kind)
        m = np.flatnonzero(c >= 0)
        cm = c[m]
        th = thetas[kind]
        bUn = np.bincount(u[m] * k + cm, minlength=L["U"] * k).reshape(L["U"], k) / safe[:, None]
        al = bUn - (CT[:, 1:] @ th[: T - 1] + CX @ th[T - 1:]) / safe[:, None]
        zu = (al[u[un]] + fit_F(th, un)) * u1[un][:, None]  # untreated rows' z * w0 * u1
        A = np.bincount(lc[m] * k + cm, weights=u1[m], minlength=Gp * k)
        N = np.bincount(lc[m] * k + cm, minlength=Gp * k).astype(float)
        S0 = np.column_stack([np.bincount(lc[un], weights=zu[:, j], minlength=Gp) for j in range(k)]).ravel()
        out[kind] = pl.DataFrame({"cl": np.repeat(lab, k), "j": np.tile(np.arange(k), Gp), "A": A, "N": N, "S0": S0})
    return out


def imputation_partitioned(data: Any, *, y: str, unit: str, time: str, cohort: str | None, treat: str | None,
                           controls: Sequence[str], cluster: str | None, window: tuple[int, int], ref: int,
                           bin_endpoints: bool) -> EventStudyResult:
    """The imputation event study of a partitioned panel (see the module docstring)."""
    inp = inputs(data, y, unit, time, cohort, treat, controls, cluster, window, bin_endpoints)
    ddf, used, cluster = inp.ddf, inp.used, inp.cluster
    s = _Spec(y, unit, time, cohort or treat, cohort is not None, list(controls), cluster, window, ref, bin_endpoints)
    r0 = run_partitions(ddf, _pass0, s)
    check_units([r["units"] for r in r0], unit)  # the per-unit algebra needs every unit in one partition
    n_missing = sum(r["n_missing"] for r in r0)
    if n_missing:
        from ...errors import MissingValueWarning

        warnings.warn(f"dropped {n_missing} row(s) with missing values in the outcome, controls, ids or treatment",
                      MissingValueWarning, stacklevel=4)
    s.periods = np.unique(np.concatenate([r["untreated"] for r in r0]))
    rel = np.unique(np.concatenate([r["rel"] for r in r0]))
    if rel.size == 0:
        raise EventStudyError("no relative period other than the reference is observed in the window")
    s.levels = {"es": rel, "group": np.unique(np.concatenate([r["cohorts"] for r in r0])),
                "calendar": np.unique(np.concatenate([r["calendar"] for r in r0]))}
    r1 = run_partitions(ddf, _pass1, s)
    dropped = sum(r["dropped"] for r in r1)
    if dropped:
        warnings.warn(f"dropped {dropped} treated row(s) whose unit or period has no untreated observation "
                      "(their untreated outcome cannot be imputed)", stacklevel=4)
    units_by: dict[int, int] = {}
    for r in r1:
        for g, n in r["units_by_cohort"].items():
            units_by[g] = units_by.get(g, 0) + n
    nD, N = sum(r["D"] for r in r1), sum(r["n"] for r in r1)
    if nD == 0 or nD == N:
        raise TreatmentError("imputation needs both treated and untreated observations")
    Stt = np.diag(sum(r["colCT"] for r in r1)[1:]) - sum(r["CTCT"] for r in r1)[1:, 1:]
    Stx = sum(r["Stx"] for r in r1)[1:]
    Sxx = sum(r["Sxx"] for r in r1)
    Spinv = psd_pinv(np.block([[Stt, Stx], [Stx.T, Sxx]]))
    theta = Spinv @ np.concatenate([sum(r["rhs_t"] for r in r1)[1:], sum(r["rhs_x"] for r in r1)])
    thetas = {kind: Spinv @ sum(r[kind]["B"] for r in r1) for kind, _ in _groupings(s)}
    r2 = run_partitions(ddf, _pass2, s, theta, thetas)
    est: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    G = None
    for kind, k in _groupings(s):
        sw = sum(r[kind]["sw"] for r in r1)
        tab = pl.concat([r[kind] for r in r2]).group_by("cl", "j").agg(pl.col("A", "N", "S0").sum())
        cls = tab["cl"].unique().sort()
        G = cls.len()
        gi = np.searchsorted(cls.to_numpy(), tab["cl"].to_numpy())
        j = tab["j"].to_numpy()
        A, Nn, S0 = (np.zeros((G, k)) for _ in range(3))
        for arr, col in ((A, "A"), (Nn, "N"), (S0, "S0")):
            np.add.at(arr, (gi, j), tab[col].to_numpy())
        # groups whose rows were all dropped (not imputable) are left out, as in memory
        keep = sw > 0
        beta = A[:, keep].sum(axis=0) / sw[keep]
        W = (A[:, keep] - Nn[:, keep] * beta - S0[:, keep]) / sw[keep]
        est[kind] = (beta, W.T @ W, sw[keep], keep)
    df = G - 1
    beta, V, sw, kept = est["es"]
    rel = rel[kept]
    aggs: dict[str, Aggregate] = {}
    b, Vs, _, _ = est["simple"]
    aggs["simple"] = Aggregate("simple", b[0], np.sqrt(Vs[0, 0]), df)
    for kind in ("group", "calendar"):
        b, Vg, _, kept = est[kind]
        lv = s.levels[kind][kept]
        pi = np.array([units_by[int(g)] for g in lv], float) if kind == "group" else np.ones(lv.size)
        pi /= pi.sum()
        comp = pl.DataFrame({"level": lv, "estimate": b, "se": np.sqrt(np.diag(Vg))})
        aggs[kind] = Aggregate(kind, pi @ b, np.sqrt(pi @ Vg @ pi), df, comp)

    def aggregator(kind: str) -> Aggregate:
        return aggs[kind] if kind in aggs else res.default_aggregate(kind)

    call = dict(y=y, unit=unit, time=time, cohort=cohort, treat=treat, controls=list(controls), cluster=cluster,
                window=window, ref=ref, bin_endpoints=bin_endpoints)
    res = EventStudyResult(rel, beta, V, ref, "imputation", N, df,
                           {"n_rel": sw, "aggregator": aggregator, "window": window, "bin_endpoints": bin_endpoints,
                            "partitioned": gather_spec(ddf, used, call, "imputation", CLIENT_BUDGET)})
    return res
