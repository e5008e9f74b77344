"""The fitted design: everything about a TWFE regression that does not depend
on the outcome, computed once and reused by every refit (other outcomes,
placebo treatments, bootstrap draws, Monte Carlo replications).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl
import scipy.linalg as sla

from ...errors import (
    CollinearityError,
    CollinearityWarning,
    EmptyPanelError,
    MissingValueError,
    MissingValueWarning,
    SingletonWarning,
    WeightsError,
)
from ...kernels.demean import centred_ss
from ...panels.panel import (
    Panel,
    check_columns,
    check_not_all_missing,
    check_numeric,
    column_list,
    factorize_with_ids,
    missing_columns,
    to_polars,
)
from .absorb import Absorber, drop_singletons
from .rank import independent_columns
from .vcov import VcovSpec, fe_df, fe_nesting

__all__ = ["Design", "build_design"]


@dataclass(eq=False)
class Design:
    """The regressor side of a fitted TWFE model.

    Attributes
    ----------
    frame : polars.DataFrame
        The estimation sample (rows kept after missing values and singletons).
    rows : ndarray
        Positions of those rows in the caller's frame (built on first use
        when no row was dropped).
    regressors : list of str
        Names of the estimated coefficients (collinear ones removed).
    fixef : list of str
        FE column names.
    absorber : Absorber
        The demeaner of this sample (FE codes, weights, precomputed algebra).
    Xw : ndarray (N x k)
        Demeaned regressors times the square root of the weights.
    sw : ndarray (N,)
        Square root of the weights (ones if unweighted).
    XtX_cho : tuple
        Cholesky factor of ``Xw' Xw`` (scipy ``cho_factor``).
    bread : ndarray (k x k)
        ``(Xw' Xw)^-1``.
    clusters : dict
        Cluster column name -> dense int codes on the sample.
    columns : dict
        The validated raw float64 columns on the sample (outcomes, every
        requested regressor, the weights), read by refits and resampling
        procedures instead of re-extracting them from ``frame``. Shared, not
        copied: do not modify them.
    fe_ids, cluster_ids : list / dict of ndarray
        The level values (ids) of each FE and cluster, in code order.
    requested : list of str
        The regressors asked for, before collinear ones were dropped.
    settings : dict
        The fitting options (singletons, tolerances, demeaning method), reused
        by :meth:`restrict`.
    """

    frame: pl.DataFrame
    rows_: np.ndarray | None
    regressors: list[str]
    fixef: list[str]
    absorber: Absorber
    Xw: np.ndarray
    sw: np.ndarray
    weights_name: str | None
    intercept: bool
    XtX_cho: Any = field(repr=False)
    bread: np.ndarray = field(repr=False)
    clusters: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    n_singletons: int = 0
    n_missing: int = 0
    columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    fe_ids: list[np.ndarray] = field(default_factory=list, repr=False)
    cluster_ids: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    requested: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)
    _nesting: dict[tuple[str, ...], list[bool]] = field(default_factory=dict, repr=False)
    #: the outcomes of ``build_design(extra=...)``, demeaned with the regressors and scaled
    #: by sqrt(weights): ``demean`` of those columns, computed in the same passes
    extra_demeaned: np.ndarray | None = field(default=None, repr=False)

    @property
    def nobs(self) -> int:
        """Number of observations used."""
        return self.frame.height

    @property
    def rows(self) -> np.ndarray:
        """Positions of the sample's rows in the caller's frame."""
        return np.arange(self.frame.height) if self.rows_ is None else self.rows_

    @property
    def fe_levels(self) -> list[int]:
        """Number of levels of each FE in the sample."""
        return list(self.absorber.n_levels)

    def fe_codes(self, name: str) -> np.ndarray:
        """Dense codes of FE ``name`` on the sample."""
        return self.absorber.codes[self.fixef.index(name)]

    def demean(self, values: np.ndarray) -> np.ndarray:
        """Demean columns measured on the sample rows and scale by sqrt(weights)."""
        out = self.absorber.demean(values)
        if self.weights_name is None:
            return out
        return out * (self.sw if out.ndim == 1 else self.sw[:, None])

    def ids(self, name: str) -> np.ndarray:
        """Level values of FE or cluster ``name``, in code order."""
        if name in self.fixef:
            return self.fe_ids[self.fixef.index(name)]
        return self.cluster_ids[name]

    def codes(self, name: str) -> np.ndarray:
        """Dense codes of FE or cluster ``name`` on the sample."""
        if name in self.fixef:
            return self.fe_codes(name)
        return self.clusters[name]

    def nesting(self, names: Sequence[str], codes: Sequence[np.ndarray] | None = None) -> list[bool]:
        """Whether each FE is nested in the clustering by ``names`` (one or
        two columns; ``codes`` their codes when they are not the design's
        clusters). Computed once per clustering."""
        key = tuple(names)
        if key not in self._nesting:
            cls = list(codes) if codes is not None else [self.clusters[c] for c in names]
            self._nesting[key] = fe_nesting(self.absorber.codes, cls, [name in names for name in self.fixef])
        return self._nesting[key]

    def df_k(self, spec: VcovSpec) -> int:
        """Degrees of freedom used by the small-sample correction of ``spec``."""
        nested: list[bool] = []
        if spec.kind in ("CRV1", "CRV3") and self.fixef:
            nested = self.nesting(spec.clusters)
        return fe_df(len(self.regressors), self.fe_levels if self.fixef else [], nested)

    def df_k_clusters(self, names: Sequence[str], codes: Sequence[np.ndarray]) -> int:
        """:meth:`df_k` of a CRV clustering by ``names`` (codes ``codes``)."""
        if not self.fixef:
            return fe_df(len(self.regressors), [])
        return fe_df(len(self.regressors), self.fe_levels, self.nesting(names, codes))

    def column(self, name: str) -> np.ndarray:
        """A float64 column of the estimation sample (the validated one when
        the design holds it; do not modify it)."""
        if name in self.columns:
            return self.columns[name]
        return self.frame[name].cast(pl.Float64).to_numpy()

    def restrict(self, keep: np.ndarray, replace: dict[str, np.ndarray] | None = None,
                 *, stacklevel: int = 3) -> "Design":
        """The design of a subset of the sample, with some raw columns replaced.

        Equal to building the design from scratch on those rows (singletons
        dropped and collinearity judged again), without validating or
        factorizing anything again: the subset's codes come from this design's.

        Parameters
        ----------
        keep : ndarray of bool
            Rows of this design's sample to keep.
        replace : dict, optional
            Numeric column name -> new raw values on this design's sample
            (e.g. a placebo treatment); FE and cluster columns keep their codes.
        stacklevel : int
            Of the singleton / collinearity warnings.

        Returns
        -------
        Design
            Its ``rows`` are positions in the restricted sample.
        """
        columns = {c: v[keep] for c, v in self.columns.items()}
        for c, v in (replace or {}).items():
            columns[c] = np.asarray(v, dtype=np.float64)[keep]
        frame = self.frame.filter(pl.Series(keep))
        if replace:
            frame = frame.with_columns([pl.Series(c, columns[c]) for c in replace])
        if frame.height == 0:
            raise EmptyPanelError("no rows left in the restricted sample")
        fe_codes = [c[keep] for c in self.absorber.codes]
        clusters = {c: v[keep] for c, v in self.clusters.items() if c not in self.fixef}
        return _assemble(
            frame, None, columns, fe_codes, list(self.fe_ids), clusters, dict(self.cluster_ids),
            self.requested, self.fixef, list(self.clusters), self.weights_name, self.intercept,
            self.settings, 0, stacklevel + 1,
        )


def _dense(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order-preserving dense recoding of a subset's codes and their ids."""
    used = np.bincount(codes, minlength=len(ids)) > 0
    if used.all():
        return codes, ids
    return (np.cumsum(used) - 1)[codes], ids[used]


def build_design(
    data: Any,
    regressors: Sequence[str],
    fixef: Sequence[str],
    *,
    extra: Sequence[str] = (),
    clusters: Sequence[str] = (),
    weights: str | None = None,
    intercept: bool = False,
    fixef_rm: str = "singleton",
    na: str = "drop",
    collin_tol: float = 1e-9,
    fixef_tol: float = 1e-12,
    fixef_maxiter: int = 100_000,
    demean_method: str = "auto",
    stacklevel: int = 3,
) -> tuple[Design, np.ndarray]:
    """Validate, drop missing values and singletons, demean the regressors.

    ``extra`` are further numeric columns (the outcomes) whose missing values
    also remove rows. Returns the design and the raw ``extra`` columns on the
    sample (N x len(extra), not yet demeaned).
    """
    frame = to_polars(data)
    if frame.height == 0:
        raise EmptyPanelError("the data frame has no rows")
    numeric = [*extra, *regressors]
    check_columns(frame, numeric, "variable")
    check_columns(frame, fixef, "fixed-effect column")
    check_columns(frame, clusters, "cluster column")
    if weights is not None:
        check_columns(frame, [weights], "weights column")
    check_numeric(frame, numeric, "outcome/regressor")
    if weights is not None:
        check_numeric(frame, [weights], "weights")
    used = list(dict.fromkeys([*numeric, *fixef, *clusters, *([weights] if weights else [])]))
    # pull each numeric column once; null counts are metadata, so the common
    # clean case costs one isfinite pass per float column
    values = {c: frame[c].cast(pl.Float64).to_numpy() for c in dict.fromkeys([*numeric, *([weights] if weights else [])])}
    keep = np.ones(frame.height, dtype=bool)
    for c in used:
        if c in values:
            v = values[c]
            if not np.isfinite(v).all():
                keep &= np.isfinite(v)
        elif frame[c].null_count():
            keep &= frame[c].is_not_null().to_numpy()
    n_missing = int((~keep).sum())
    if n_missing == frame.height:
        check_not_all_missing(frame, used)
    if n_missing:
        if na == "raise":
            raise MissingValueError(
                f"{n_missing} row(s) have a missing or non-finite value in {column_list(missing_columns(frame, used))}; "
                "clean them or use na='drop'"
            )
        warnings.warn(
            f"dropped {n_missing} of {frame.height} row(s) with missing or non-finite values in "
            f"{column_list(missing_columns(frame, used))}",
            MissingValueWarning,
            stacklevel=stacklevel,
        )
    rows = np.flatnonzero(keep) if n_missing else None  # None: every row (no N-sized index kept)
    sub = frame.filter(pl.Series(keep)) if n_missing else frame
    if n_missing:
        values = {c: v[keep] for c, v in values.items()}
    if sub.height == 0:
        raise EmptyPanelError("no rows left after dropping missing values")
    if weights is not None:
        wv = values[weights]
        if (wv <= 0).any():
            raise WeightsError(f"weights column {weights!r} has {int((wv <= 0).sum())} zero or negative value(s); "
                               "weights must be positive: drop those rows or fix the column")
    # a Panel's id codes are reused (no second factorization of 10M ids)
    known = {}
    if isinstance(data, Panel):
        known = {data.unit: (data.unit_codes, data.units), data.time: (data.time_codes, data.times)}
    fe_codes, fe_ids = [], []
    for f in fixef:
        if f in known:
            codes, ids = known[f][0] if not n_missing else known[f][0][keep], known[f][1].to_numpy()
        else:
            codes, ids = factorize_with_ids(sub[f])
        fe_codes.append(codes)
        fe_ids.append(ids)
    settings = dict(fixef_rm=fixef_rm, collin_tol=collin_tol, fixef_tol=fixef_tol, fixef_maxiter=fixef_maxiter,
                    demean_method=demean_method)
    design = _assemble(sub, rows, values, fe_codes, fe_ids, {}, {}, list(regressors), list(fixef), list(clusters),
                       weights, intercept, settings, n_missing, stacklevel + 1, extra=list(extra))
    if len(extra) == 1:  # the usual single outcome: a view of its column, not a copy
        Y = design.columns[extra[0]].reshape(-1, 1)
    else:
        Y = np.empty((design.nobs, len(extra)))
        for j, e in enumerate(extra):
            Y[:, j] = design.columns[e]
    return design, Y


def _assemble(
    sub: pl.DataFrame,
    rows: np.ndarray | None,
    values: dict[str, np.ndarray],
    fe_codes: list[np.ndarray],
    fe_ids: list[np.ndarray],
    cl_codes: dict[str, np.ndarray],
    cl_ids: dict[str, np.ndarray],
    regressors: list[str],
    fixef: list[str],
    clusters: list[str],
    weights: str | None,
    intercept: bool,
    settings: dict[str, Any],
    n_missing: int,
    stacklevel: int,
    extra: Sequence[str] = (),
) -> Design:
    """Drop singletons, demean the regressors, drop collinear ones: the design
    of validated columns. ``fe_codes`` / ``cl_codes`` (clusters that are not
    FEs; the others are factorized here) may be sparse codes into their ids.
    ``extra`` (outcome columns) are demeaned in the same passes as the
    regressors (``Design.extra_demeaned``)."""
    n_single = 0
    if fixef and settings["fixef_rm"] == "singleton":
        ks = drop_singletons(fe_codes)
        n_single = int((~ks).sum())
        if n_single:
            warnings.warn(
                f"dropped {n_single} singleton observation(s) (a fixed-effect level with one row)",
                SingletonWarning,
                stacklevel=stacklevel,
            )
            rows = np.flatnonzero(ks) if rows is None else rows[ks]
            sub = sub.filter(pl.Series(ks))
            fe_codes = [c[ks] for c in fe_codes]
            values = {c: v[ks] for c, v in values.items()}
            cl_codes = {c: v[ks] for c, v in cl_codes.items()}
            if sub.height == 0:
                raise EmptyPanelError("no rows left after dropping singletons")
    w = values[weights] if weights is not None else None
    absorber = Absorber(
        fe_codes, w, method=settings["demean_method"], tol=settings["fixef_tol"],
        maxiter=settings["fixef_maxiter"], nobs=sub.height
    )
    # the absorber recodes densely in id order: the ids of the levels left
    # (a FE whose levels are all still used keeps its ids: no N-sized count)
    fe_ids = [ids if g == len(ids) else _dense(c, ids)[1] for c, ids, g in zip(fe_codes, fe_ids, absorber.n_levels)]
    sw = np.sqrt(w) if w is not None else absorber._w  # unweighted: share the absorber's ones

    names = (["Intercept"] if intercept else []) + list(regressors)
    # demean straight from the extracted columns into one N x k array: no
    # raw-X copy and no N x k temporaries
    Xd = np.empty((sub.height, len(names)))
    for j, r in enumerate(names):
        Xd[:, j] = 1.0 if r == "Intercept" else values[r]
    ss = centred_ss(Xd, absorber._w)  # collinearity is judged relative to these
    if intercept:
        ss[0] = float(absorber._w.sum())
    Yd = None
    if extra:
        Yraw = values[extra[0]].reshape(-1, 1) if len(extra) == 1 else np.column_stack([values[e] for e in extra])
        Xd, Yd = absorber.demean_pair(Xd, Yraw, out=Xd)
    else:
        absorber.demean(Xd, out=Xd)
    if weights is not None:
        Xd *= sw[:, None]
        if Yd is not None:
            Yd *= sw[:, None]
    XtX = Xd.T @ Xd
    kept = independent_columns(XtX, ss, settings["collin_tol"])
    drop = [j for j in range(len(names)) if j not in kept]
    if drop:
        dropped = [names[j] for j in drop]
        if len(drop) == len(names):
            raise CollinearityError(
                f"every regressor {dropped} is collinear with the fixed effects; nothing to estimate"
            )
        warnings.warn(
            f"dropped collinear regressor(s) {dropped}", CollinearityWarning, stacklevel=stacklevel
        )
        names = [names[j] for j in kept]
        Xd = np.ascontiguousarray(Xd[:, kept])
        XtX = XtX[np.ix_(kept, kept)]
    cho = sla.cho_factor(XtX)
    bread = sla.cho_solve(cho, np.eye(XtX.shape[0]))
    # a cluster that is also a FE reuses its codes
    cl_out: dict[str, np.ndarray] = {}
    ids_out: dict[str, np.ndarray] = {}
    for c in clusters:
        if c in fixef:
            cl_out[c] = absorber.codes[fixef.index(c)]
        elif c in cl_codes:
            cl_out[c], ids_out[c] = _dense(cl_codes[c], cl_ids[c])
        else:
            cl_out[c], ids_out[c] = factorize_with_ids(sub[c])
    return Design(
        frame=sub,
        rows_=rows,
        regressors=names,
        fixef=list(fixef),
        absorber=absorber,
        Xw=np.ascontiguousarray(Xd),
        sw=sw,
        weights_name=weights,
        intercept=intercept,
        XtX_cho=cho,
        bread=bread,
        clusters=cl_out,
        n_singletons=n_single,
        n_missing=n_missing,
        columns=values,
        fe_ids=fe_ids,
        cluster_ids=ids_out,
        requested=list(regressors),
        settings=settings,
        extra_demeaned=Yd,
    )
