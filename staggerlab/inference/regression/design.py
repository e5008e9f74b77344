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
)
from ...kernels.demean import centred_ss
from ...panels.panel import Panel, check_columns, check_numeric, factorize_column, to_polars
from .absorb import Absorber, drop_singletons
from .rank import independent_columns
from .vcov import VcovSpec, fe_df, nested_in

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

    def df_k(self, spec: VcovSpec) -> int:
        """Degrees of freedom used by the small-sample correction of ``spec``."""
        k = len(self.regressors)
        nested: list[bool] = []
        if spec.kind in ("CRV1", "CRV3") and self.fixef:
            cls = [self.clusters[c] for c in spec.clusters]
            if len(cls) == 2:
                from .vcov import combine_codes

                cls.append(combine_codes(*cls))
            nested = [
                (name in spec.clusters) or any(nested_in(codes, c) for c in cls)
                for name, codes in zip(self.fixef, self.absorber.codes)
            ]
        return fe_df(k, self.fe_levels if self.fixef else [], nested)

    def column(self, name: str) -> np.ndarray:
        """A float64 column of the estimation sample."""
        return self.frame[name].cast(pl.Float64).to_numpy()


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
    if n_missing:
        if na == "raise":
            raise MissingValueError(
                f"{n_missing} row(s) have a missing or non-finite value in {used}; "
                "clean them or use na='drop'"
            )
        warnings.warn(
            f"dropped {n_missing} of {frame.height} row(s) with missing or non-finite values in {used}",
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
            raise MissingValueError(f"weights column {weights!r} has {int((wv <= 0).sum())} non-positive value(s)")
    # a Panel's id codes are reused (no second factorization of 10M ids)
    known = {data.unit: data.unit_codes, data.time: data.time_codes} if isinstance(data, Panel) else {}
    fe_codes = [
        (known[f] if not n_missing else known[f][keep]) if f in known else factorize_column(sub[f]) for f in fixef
    ]
    n_single = 0
    if fixef and fixef_rm == "singleton":
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
            if sub.height == 0:
                raise EmptyPanelError("no rows left after dropping singletons")
    w = values[weights] if weights is not None else None
    absorber = Absorber(
        fe_codes, w, method=demean_method, tol=fixef_tol, maxiter=fixef_maxiter, nobs=sub.height
    )
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
    absorber.demean(Xd, out=Xd)
    if weights is not None:
        Xd *= sw[:, None]
    XtX = Xd.T @ Xd
    kept = independent_columns(XtX, ss, collin_tol)
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
    cl_codes = {c: absorber.codes[list(fixef).index(c)] if c in fixef else factorize_column(sub[c]) for c in clusters}
    if len(extra) == 1:  # the usual single outcome: a view of its column, not a copy
        Y = values[extra[0]].reshape(-1, 1)
    else:
        Y = np.empty((sub.height, len(extra)))
        for j, e in enumerate(extra):
            Y[:, j] = values[e]
    design = Design(
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
        clusters=cl_codes,
        n_singletons=n_single,
        n_missing=n_missing,
    )
    return design, Y
