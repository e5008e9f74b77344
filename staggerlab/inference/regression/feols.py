"""``feols``: OLS with absorbed fixed effects, several outcomes on one design."""

from __future__ import annotations

import warnings
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np
import polars as pl
import scipy.linalg as sla

from ..._parallel import SERIAL_BLAS
from ...errors import SingleClusterWarning, StaggerlabWarning, VcovError
from ...kernels._jit import readonly
from ...kernels.cluster import lone_cluster
from ...panels.panel import Panel, check_columns, finite_mask, to_polars
from ..distributed.partitions import is_partitioned
from ..results import Result
from .design import Design, build_design
from .formula import Formula, parse_formulas
from .results import DesignFit
from .terms import resolve
from .vcov import VcovSpec, parse_vcov, sandwich, vcov_crv3

if TYPE_CHECKING:
    from ..distributed.feols import PartitionedFeols

__all__ = ["feols", "Feols", "FeolsMulti"]


class Feols(DesignFit):
    """A fitted TWFE regression (one outcome).

    Created by :func:`feols`. Numbers follow pyfixest's conventions so the two
    can be compared directly.
    """

    def __init__(self, design: Design, depvar: str, yw: np.ndarray, y_raw: np.ndarray,
                 spec: VcovSpec, formula: str):
        self.design = design
        self.depvar = depvar
        self.formula = formula
        self.vcov_spec = spec
        self._yw = yw
        self._y_raw = y_raw
        self._beta = sla.cho_solve(design.XtX_cho, design.Xw.T @ yw)
        self._uw = yw - design.Xw @ self._beta
        self._V, self._df_t, self._G = self._compute_vcov(spec, stacklevel=6)  # the caller of feols()

    # ----------------------------------------------------------------- vcov
    def _compute_vcov(self, spec: VcovSpec, stacklevel: int) -> tuple[np.ndarray, int, int | None]:
        d = self.design
        N = d.nobs
        missing = [c for c in spec.clusters if c not in d.clusters]
        if missing:
            raise VcovError(
                f"cluster column(s) {missing} were not prepared for this fit; pass them in "
                "vcov= when calling feols"
            )
        df_k = d.df_k(spec)
        if N - df_k <= 0:
            raise VcovError(
                f"no residual degrees of freedom: {N} observations for {df_k} parameters "
                "(coefficients and fixed effects); the model is saturated"
            )
        if spec.kind != "CRV3":
            out = sandwich(d.bread, (d.Xw, self._uw), spec, [d.clusters[c] for c in spec.clusters], N, df_k)
        else:
            # raw regressors and outcome side by side once; each leave-one-cluster-out
            # refit demeans its subset of them on a subset absorber
            Z = np.column_stack(
                [np.ones(N) if r == "Intercept" else d.column(r) for r in d.regressors] + [self._y_raw]
            )
            V, G = vcov_crv3(self._beta, lambda mask: self._loo_beta(Z, mask), d.clusters[spec.clusters[0]], N,
                             df_k)
            out = V, G - 1, G
        if spec.kind in ("CRV1", "CRV3"):
            self._warn_single_cluster(spec, stacklevel)
        neg = [r for r, v in zip(d.regressors, np.diag(out[0])) if v < 0]
        if neg:
            warnings.warn(
                f"the two-way cluster variance of {neg} is negative (V1 + V2 - V12 with few clusters in a "
                "dimension), so their standard errors are undefined (NaN, as in pyfixest; fixest's default sets "
                "the matrix's negative eigenvalues to zero, which can give standard errors near zero); cluster "
                "one-way on the coarser dimension or use a wild cluster bootstrap", StaggerlabWarning,
                stacklevel=stacklevel)
        return out

    def _warn_single_cluster(self, spec: VcovSpec, stacklevel: int) -> None:
        """Warn about regressors whose nonzero values all lie in one cluster (one treated
        cluster): the coefficient is that cluster's own contrast, whose noise a
        cluster-robust variance cannot see (its residuals there are fitted away).
        A regressor constant over all of its cluster's rows is that cluster's
        indicator, a fixed effect written as a dummy, and is not reported."""
        d = self.design
        lone = []
        for r in d.regressors:
            if r == "Intercept" or r not in d.columns:
                continue
            x = readonly(d.columns[r])
            for c in spec.clusters:
                g = lone_cluster(x, d.clusters[c])
                if g < 0:
                    continue
                xg = x[d.clusters[c] == g]
                if not (xg == xg[0]).all():  # not a cluster indicator (a fixed effect written as a dummy)
                    lone.append((r, c))
                    break
        if lone:
            warnings.warn(
                f"coefficient(s) {[r for r, _ in lone]} rest on one cluster (every nonzero value of "
                f"{lone[0][0]!r} lies in one {lone[0][1]!r} cluster): a cluster-robust standard error cannot see "
                "that cluster's own noise and understates the uncertainty; use a wild cluster bootstrap "
                "(sl.wildboot) or randomization inference (sl.placebo)", SingleClusterWarning, stacklevel=stacklevel)

    def _loo_beta(self, Z: np.ndarray, mask: np.ndarray) -> np.ndarray:
        d = self.design
        Zd = d.absorber.subset(mask).demean(Z[mask]) * d.sw[mask][:, None]
        Xd, yd = Zd[:, :-1], Zd[:, -1]
        return np.linalg.lstsq(Xd, yd, rcond=None)[0]

    # ------------------------------------------------------------- accessors
    @property
    def yw(self) -> np.ndarray:
        """Demeaned outcome times sqrt(weights) (what the slopes are fitted on)."""
        return self._yw

    @property
    def uw(self) -> np.ndarray:
        """Residuals of the demeaned model times sqrt(weights)."""
        return self._uw

    @property
    def y_raw(self) -> np.ndarray:
        """The outcome on the estimation sample, before demeaning."""
        return self._y_raw

    @cached_property
    def r2_within(self) -> float:
        """Within R-squared (after absorbing the FEs)."""
        return 1.0 - float(self._uw @ self._uw) / float(self._yw @ self._yw)

    @cached_property
    def r2(self) -> float:
        """R-squared against the (weighted) mean of the outcome."""
        w = self.design.sw**2
        ybar = (w @ self._y_raw) / w.sum()
        tss = float(w @ (self._y_raw - ybar) ** 2)
        return 1.0 - float(self._uw @ self._uw) / tss

    def summary(self) -> str:
        """A printable regression table."""
        d = self.design
        lines = self.table_lines(f"feols: {self.formula}", stars=True)
        lines.append("")
        lines.append(f"R2: {self.r2:.4f}   Within R2: {self.r2_within:.4f}")
        if d.n_missing or d.n_singletons:
            lines.append(f"Dropped: {d.n_missing} row(s) with missing values, {d.n_singletons} singleton(s)")
        return "\n".join(lines)

    def with_vcov(self, vcov: Any) -> "Feols":
        """The same fit with another variance estimator (clusters must be in the design)."""
        spec = parse_vcov(vcov, list(self.design.clusters))
        new = object.__new__(Feols)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("r2", "r2_within")})
        new.vcov_spec = spec
        new._V, new._df_t, new._G = new._compute_vcov(spec, stacklevel=4)
        return new


class FeolsMulti(Result):
    """Several fits: outcomes sharing one design (``y1 + y2 ~ x | fe``) or
    fixest's multiple estimation (``sw``, ``csw``, ``sw0``, ``csw0``).

    Iterable and indexable by position or key; each fit is a normal :class:`Feols`.
    Keys are the outcomes when only the outcome varies, the fits' formulas otherwise.
    """

    def __init__(self, fits: dict[str, Feols]):
        self.fits = fits

    def __getitem__(self, key: str | int) -> Feols:
        if isinstance(key, int):
            return list(self.fits.values())[key]
        return self.fits[key]

    def __iter__(self) -> Iterator[Feols]:
        return iter(self.fits.values())

    def __len__(self) -> int:
        return len(self.fits)

    def keys(self) -> list[str]:
        """The fits' keys, in estimation order."""
        return list(self.fits)

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """Stacked ``tidy()`` of every fit, with its ``model`` (formula) and ``depvar``."""
        return pl.concat(
            [f.tidy(level).with_columns(pl.lit(f.formula).alias("model"), pl.lit(f.depvar).alias("depvar"))
             .select("model", "depvar", pl.all().exclude("model", "depvar"))
             for f in self.fits.values()]
        )

    def summary(self) -> str:
        """Every fit's summary."""
        return "\n\n".join(f.summary() for f in self.fits.values())


def feols(
    fml: str | Formula,
    data: Any,
    vcov: Any = None,
    weights: str | None = None,
    *,
    fixef_rm: Literal["singleton", "none"] = "singleton",
    na: Literal["drop", "raise"] = "drop",
    collin_tol: float = 1e-9,
    fixef_tol: float = 1e-12,
    fixef_maxiter: int = 100_000,
    demean_method: Literal["auto", "exact", "iterative"] = "auto",
) -> Feols | FeolsMulti | PartitionedFeols:
    """Estimate a linear model with absorbed fixed effects.

    Parameters
    ----------
    fml : str or Formula
        fixest syntax: ``"y ~ x1 + x2 | fe1 + fe2"``; several outcomes as
        ``"y1 + y2 ~ ..."`` share one demeaning of the regressors. Without FEs
        an intercept is added (``- 1`` or ``0`` removes it). Names with spaces
        or symbols are quoted with backticks (`` `q score` ~ `policy on` ``).
        Terms may be ``C(x)``, ``i(x, ref=)``, ``i(x, z, ref=)``, ``x1:x2``,
        ``x1*x2``, ``log(y)``, ``I(x**2)`` or string columns (expanded and named
        as pyfixest does); fixed effects may be interacted (``fe1^fe2``);
        ``sw()``, ``csw()``, ``sw0()``, ``csw0()`` estimate
        several models. A :class:`Formula` (``Formula.of(y, x, fe)``) names its
        columns verbatim, without parsing.
    data : polars.DataFrame, pandas.DataFrame, Panel, dask DataFrame or str
        A dask DataFrame or a directory of parquet files is a partitioned
        panel (every unit's rows in one partition): unit + period FEs,
        unweighted, plain column terms, fitted exactly without collecting the
        rows (:func:`staggerlab.inference.distributed.feols.feols_partitioned`,
        which returns a ``PartitionedFeols``).
    vcov : str or dict, optional
        ``"iid"`` (default, as pyfixest), ``"hetero"``/``"HC1"``,
        ``{"CRV1": "c"}``, ``{"CRV1": "c1+c2"}``, ``{"CRV3": "c"}``.
    weights : str, optional
        Column of positive analytic weights.
    fixef_rm : {"singleton", "none"}
        Drop singleton observations iteratively (default, like pyfixest 0.60).
    na : {"drop", "raise"}
        Rows with missing/non-finite values in used columns are dropped with a
        ``MissingValueWarning`` (per outcome), or raise ``MissingValueError``.
    collin_tol : float
        Relative tolerance below which a regressor counts as collinear (dropped
        with a ``CollinearityWarning`` naming it).
    fixef_tol, fixef_maxiter : float, int
        Tolerance and iteration cap of iterative demeaning (only used when no
        exact path applies; failure raises ``ConvergenceError``).
    demean_method : {"auto", "exact", "iterative"}

    Returns
    -------
    Feols, FeolsMulti or PartitionedFeols
        One fit, or a collection when several outcomes or models are given; a
        ``PartitionedFeols`` for a partitioned panel.

    Examples
    --------
    >>> import staggerlab as sl
    >>> df = sl.simulate.staggered(200, 8, seed=1)
    >>> fit = sl.feols("y ~ treat | unit + time", df, vcov={"CRV1": "unit"})
    >>> round(fit.coef()["treat"], 2)
    1.03
    """
    if is_partitioned(data):
        from ..distributed.feols import feols_partitioned

        return feols_partitioned(fml, data, vcov, weights, fixef_rm=fixef_rm, na=na, collin_tol=collin_tol,
                                 demean_method=demean_method)
    specs = [fml] if isinstance(fml, Formula) else parse_formulas(fml)
    frame = to_polars(data)
    spec = parse_vcov(vcov, frame.columns)
    text = str(fml)
    fits: list[Feols] = []
    # every product here is skinny (k columns); see SERIAL_BLAS for why one thread
    with SERIAL_BLAS:
        for f in specs:
            fits.extend(_fit_formula(f, data, frame, text, spec, weights, dict(
                fixef_rm=fixef_rm, na=na, collin_tol=collin_tol, fixef_tol=fixef_tol,
                fixef_maxiter=fixef_maxiter, demean_method=demean_method)))
    if len(fits) == 1:
        return fits[0]
    by_depvar = len({f.depvar for f in fits}) == len(fits) and len(specs) == 1
    return FeolsMulti({(f.depvar if by_depvar else f.formula): f for f in fits})


def _fit_formula(f: Formula, data: Any, frame: pl.DataFrame, text: str, spec: VcovSpec,
                 weights: str | None, options: dict[str, Any]) -> list[Feols]:
    """The fits of one formula's outcomes (outcomes with the same missing rows share a design)."""
    r = resolve(f, frame, text)
    work = r.frame
    check_columns(work, r.depvars, "outcome")
    groups: dict[bytes, list[int]] = {}
    for j, y in enumerate(r.depvars):
        # one outcome is one group: its missing rows need not be read here
        many = len(r.depvars) > 1 and work.schema[y].is_numeric()
        key = finite_mask(work, [y]).tobytes() if many else b"x"
        groups.setdefault(key, []).append(j)
    fits: dict[int, Feols] = {}
    for js in groups.values():
        ys = [r.depvars[j] for j in js]
        design, Y = build_design(
            # a Panel lends its id codes (no second factorization)
            data if isinstance(data, Panel) and work is frame else work,
            r.regressors,
            r.fixef,
            extra=ys,
            clusters=spec.clusters,
            weights=weights,
            intercept=f.intercept,
            stacklevel=4,
            **options,
        )
        # the outcomes were demeaned in the regressors' passes
        Yw = design.extra_demeaned if design.extra_demeaned is not None else design.demean(Y)
        for i, j in enumerate(js):
            fits[j] = Feols(design, ys[i], np.ascontiguousarray(Yw[:, i]), Y[:, i], spec,
                            f.with_depvar(f.depvars[j]))
    return [fits[j] for j in range(len(r.depvars))]
