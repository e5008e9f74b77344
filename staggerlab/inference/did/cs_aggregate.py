"""Callaway-Sant'Anna aggregations of the ATT(g,t) (simple, dynamic, group,
calendar) with the estimation effect of their weights, as ``did::aggte``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from ...errors import ArgumentError, TreatmentError
from ..results import Aggregate, critical_value
from .cs_cells import Cells, Wide
from .cs_influence import BootSpec, IFMap, multiplier_bootstrap, se_from_gram

__all__ = ["CSAggregate", "aggregate", "AggKind"]

AggKind = Literal["simple", "dynamic", "group", "calendar"]


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
    per-label effects; ``df`` is None: normal inference, or G - 1 with
    ``df="clusters"``) with the influence functions and the bootstrap
    critical value besides.

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
    _map: IFMap = field(repr=False)

    @property
    def inf(self) -> np.ndarray:
        """Influence functions of the per-label estimates (units x labels)."""
        return self._map.matrix()[:, :-1]

    @property
    def inf_overall(self) -> np.ndarray:
        """Influence function of the overall estimate (units)."""
        m = self._map
        return IFMap(m.cells, m.wd, m.W[:, -1:], m.A[-1:], m.chunk).matrix()[:, 0]

    def cluster_sums(self) -> np.ndarray:
        """Cluster sums of the influence functions of the labels' effects and
        the overall one (clusters x (labels + 1); the multiplier bootstrap's input)."""
        return self._map.cluster_sums()

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
        z = critical_value(self.alpha, self.df)
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


def aggregate(
    kind: AggKind,
    cells: Cells,
    wd: Wide,
    window: tuple[float, float],
    alpha: float,
    boot: BootSpec | None,
    if_chunk: int,
    min_e: float = -np.inf,
    max_e: float = np.inf,
    df: int | None = None,
) -> CSAggregate:
    """One aggregation of the ATT(g,t) with its influence-function inference.

    For ``kind="dynamic"`` the event times ``e`` with ``min_e <= e <= max_e``
    are aggregated (as ``did::aggte(type="dynamic", min_e=, max_e=)``); the
    overall ATT is the equal-weight mean of all of them with ``e >= 0``, and
    ``window`` only selects which event times are reported as labels.
    ``df``: degrees of freedom of the t reference of the analytic intervals
    (None: normal).
    """
    att, grp, tim, cohorts = cells.att, cells.group, cells.time, cells.cohorts
    k, n_coh = att.size, cohorts.size
    pg_cohort = {g: float(np.mean(wd.w * (wd.g == g))) for g in cohorts}
    pg = np.array([pg_cohort[g] for g in grp])
    post = grp <= tim
    z = critical_value(alpha, df)

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
            kept = np.unique(e_all)
            kept = kept[(kept >= min_e) & (kept <= max_e)]
            epos = kept >= 0
            if not epos.any():
                raise TreatmentError(f"no post-adoption event time lies in [min_e, max_e] = [{min_e}, {max_e}]")
            # did::aggte(type="dynamic"): the overall ATT averages every kept event time >= 0;
            # the window only selects the event times reported
            shown = (kept >= window[0]) & (kept <= window[1])
            if not shown.any():
                raise TreatmentError(f"no event time falls in window={window}")
            labels = kept
            parts = [column(np.flatnonzero(e_all == e), True) for e in kept]
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
            est = float(est_l[epos].mean())
            w_all, a_all = W[:, epos].mean(axis=1), A[epos].mean(axis=0)
        else:
            est = float(est_l.mean())
            w_all, a_all = W.mean(axis=1), A.mean(axis=0)
    # the labels' influence functions and the overall one, as one map: one pass over the units
    ifmap = IFMap(cells, wd, np.column_stack([W, w_all]), np.vstack([A, a_all]), if_chunk)
    m = labels.size
    n = wd.g.size
    if boot is None:
        gram = ifmap.gram()
        se_all = se_from_gram(np.diag(gram).copy(), n)
        crit = z
    else:
        sums = ifmap.cluster_sums()
        gram = sums.T @ sums
        se_all, crit = multiplier_bootstrap(sums, n, boot, band=np.arange(m + 1) < m)
        del sums
        crit = max(crit, z) if m else z  # did falls back to pointwise when the band is narrower
    if kind == "dynamic" and not shown.all():
        # the uniform band covers every kept event time (as did); only the window's are reported
        keep = np.append(np.flatnonzero(shown), m)
        labels, est_l, se_all, gram = labels[shown], est_l[shown], se_all[keep], gram[np.ix_(keep, keep)]
        ifmap = IFMap(cells, wd, ifmap.W[:, keep], ifmap.A[keep], if_chunk)
        m = labels.size
    out = CSAggregate(kind, est, float(se_all[m]), labels, np.asarray(est_l, dtype=float), se_all[:m], crit,
                      alpha, gram[:m, :m] / n**2, ifmap)
    out.df = df
    return out
