"""``feols`` on a partitioned panel: unit + period fixed effects, exact, in
three passes over the partitions.

With ``F = M_u [period dummies 2..T, X]`` (``M_u``: unit demeaning) the fit is
a sum over units of small blocks (:class:`~staggerlab.inference.regression.within.UnitPeriodWithin`),
and a unit's rows are all in one partition, so

1. pass 0 validates every partition (complete cases, unit singletons), checks
   that no unit is in two partitions and collects the period levels;
2. pass 1 sums each partition's ``C = F'F``, ``F'yu`` and the outcome's sums
   of squares; the client applies the rank rule to the two-way demeaned
   regressors ``X~ = M_D X_u`` (``X~'X~ = C_XX - C_XD C_DD^+ C_DX``, the same
   Gram matrix as in memory) and solves;
3. pass 2 broadcasts ``theta`` and returns what the variance needs: the sum of
   squared residuals (iid), ``sum u^2 F F'`` (HC1), the cluster score sums or
   their Gram matrices (CRV1, one- or two-way), the leave-one-cluster-out
   coefficients (CRV3), and the nesting facts of the small-sample ``df_k``.

A score ``F_it u_it`` maps to the in-memory score ``X~_it u_it`` by
``[-A', I]`` with ``A = C_DD^+ C_DX`` (Frisch-Waugh-Lovell), so every variance
is the in-memory formula of :mod:`~staggerlab.inference.regression.vcov`.
Clusters holding the unit column are summed within partitions; any other
clustering (a column grouping units, the period) returns its per-level score
sums, which the client adds by level.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl
import scipy.linalg as sla

from ...errors import (
    ArgumentError,
    CollinearityError,
    CollinearityWarning,
    EmptyPanelError,
    MissingValueWarning,
    PartitionedDesignError,
    SingletonWarning,
    VcovError,
)
from ...kernels.cluster import cluster_score_sums
from ..regression.formula import Formula, parse_formula
from ..regression.rank import independent_columns, psd_pinv
from ..regression.results import CoefTable
from ..regression.vcov import VcovSpec, fe_df, parse_vcov, residual_variance, ssc_factor
from ..regression.within import UnitPeriodWithin, normal_equations
from .exact import CLIENT_BUDGET, EXACT_MODES
from .partitions import as_dask, check_units, load_rows, run_partitions

__all__ = ["feols_partitioned", "PartitionedFeols", "PartitionedDesign"]


@dataclass
class PartitionedDesign:
    """What every pass needs to rebuild a partition's rows (picklable, small)."""

    y: str
    xs: list[str]
    unit: str
    period: str
    clusters: tuple[str, ...]
    drop_singletons: bool
    na: str
    periods: np.ndarray | None = None
    extra: tuple[str, ...] = ()

    @property
    def ids(self) -> list[str]:
        return list(dict.fromkeys([self.period, *self.clusters, *self.extra]))

    def rows(self, pdf: Any):
        return load_rows(pdf, self.y, self.xs, self.unit, self.ids, self.drop_singletons, self.na)

    def within(self, r: Any, xc: Sequence[int] | None = None) -> UnitPeriodWithin:
        """The partition's unit + period algebra (global period codes)."""
        per = np.searchsorted(self.periods, r.labels[self.period]).astype(np.int16)
        return UnitPeriodWithin(r.unit, r.unit_ids.size, per, self.periods.size, r.X, r.y, x_cols=xc)

    def dense(self, r: Any, xc: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The partition's rows of ``F`` (n x M) and ``yu``, materialised."""
        T = self.periods.size
        per = np.searchsorted(self.periods, r.labels[self.period])
        F = np.zeros((r.n, T - 1 + len(xc)))
        rows = np.flatnonzero(per > 0)
        F[rows, per[rows] - 1] = 1.0
        F[:, T - 1:] = r.X[:, list(xc)]
        n_u = np.bincount(r.unit, minlength=r.unit_ids.size).astype(np.float64)
        ym = np.bincount(r.unit, weights=r.y, minlength=n_u.size) / n_u
        for m in range(F.shape[1]):
            F[:, m] -= (np.bincount(r.unit, weights=F[:, m], minlength=n_u.size) / n_u)[r.unit]
        return F, r.y - ym[r.unit]


# ------------------------------------------------------------------ passes
def _pass0(pdf: Any, pd_: PartitionedDesign) -> dict[str, Any]:
    r = pd_.rows(pdf)
    per, cnt = np.unique(r.labels[pd_.period], return_counts=True)
    return dict(units=r.unit_ids, periods=per, period_n=cnt, n=r.n, n_raw=r.n_raw, n_missing=r.n_missing,
                n_single=r.n_single, missing=r.missing, xsum=r.X.sum(axis=0), ysum=float(r.y.sum()))


def _pass1(pdf: Any, pd_: PartitionedDesign, xmean: np.ndarray, ymean: float) -> dict[str, Any]:
    r = pd_.rows(pdf)
    if r.n == 0:
        return dict(W=None)
    wi = pd_.within(r)
    n_u = np.bincount(r.unit, minlength=r.unit_ids.size)
    yu = r.y - (np.bincount(r.unit, weights=r.y, minlength=n_u.size) / n_u)[r.unit]
    return dict(W=wi.unit_sums(), yuyu=float(yu @ yu), tss=float(((r.y - ymean) ** 2).sum()),
                ssx=((r.X - xmean) ** 2).sum(axis=0))


def _nest_facts(r: Any, pd_: PartitionedDesign, part: tuple[str, ...]) -> dict[str, Any]:
    """Whether units / periods lie within one level of the clustering ``part`` here."""
    out: dict[str, Any] = {}
    frame = pl.DataFrame({c: r.labels[c] for c in dict.fromkeys([pd_.period, *part])}).with_columns(
        pl.Series("_unit", r.unit))
    keys = [c for c in part if c != pd_.unit]
    if pd_.unit not in part:
        nu = frame.group_by("_unit").agg([pl.col(c).n_unique() for c in keys])
        out["unit"] = bool(all((nu[c] <= 1).all() for c in keys))
    if pd_.period not in part:
        src = keys + (["_unit"] if pd_.unit in part else [])
        agg = frame.group_by(pd_.period).agg([pl.col(c).n_unique().alias(f"n_{c}") for c in src]
                                             + [pl.col(c).first() for c in src])
        out["period_ok"] = bool(all((agg[f"n_{c}"] <= 1).all() for c in src))
        out["period_map"] = agg.select([pd_.period, *src]) if out["period_ok"] else None
    return out


def _cluster_part(F: np.ndarray, u: np.ndarray, r: Any, pd_: PartitionedDesign, part: tuple[str, ...]):
    """One clustering's score sums: a Gram matrix and count when its clusters
    are within units (local), per-level sums otherwise."""
    if pd_.unit in part:
        others = [r.labels[c] for c in part if c != pd_.unit]
        if others:
            key = pl.DataFrame({"_u": r.unit, **{f"c{j}": v for j, v in enumerate(others)}})
            codes = key.select(pl.struct(pl.all()).rank("dense") - 1).to_series().to_numpy().astype(np.int64)
        else:
            codes = r.unit
        n = int(codes.max()) + 1 if codes.size else 0
        S = cluster_score_sums(F, u, codes, n)
        return ("local", S.T @ S, n)
    sc = F * u[:, None]
    frame = pl.DataFrame({**{c: r.labels[c] for c in part}, **{f"s{m}": sc[:, m] for m in range(F.shape[1])}})
    return ("keyed", frame.group_by(list(part)).sum())


def _crv3_part(r: Any, pd_: PartitionedDesign, xc: list[int], C: np.ndarray, Fy: np.ndarray, beta: np.ndarray,
               k_off: int):
    wi = pd_.within(r, xc)
    W = wi.unit_rows()
    c = pd_.clusters[0]
    if c == pd_.unit:
        return ("local", _loo_sum(W, C, Fy, beta, k_off), W.shape[0])
    lab = r.labels[c]
    first = np.empty(r.unit_ids.size, dtype=lab.dtype)
    first[r.unit] = lab
    if (first[r.unit] != lab).any():
        raise PartitionedDesignError(
            f"CRV3 on a partitioned panel needs clusters {c!r} that contain whole units; some unit has rows in "
            "two clusters (the leave-one-cluster-out refit would change the unit demeaning)")
    frame = pl.DataFrame({c: first, **{f"w{j}": W[:, j] for j in range(W.shape[1])}})
    return ("keyed", frame.group_by(c).sum())


def _loo_sum(W: np.ndarray, C: np.ndarray, Fy: np.ndarray, beta: np.ndarray, k_off: int) -> np.ndarray:
    """``sum_g (b_-g - b)(b_-g - b)'`` from per-cluster ``[P_g, packed G_g]`` rows.

    Removing whole units leaves every other unit's demeaned rows unchanged, so
    the refit without cluster g solves ``(C - G_g) theta = F'yu - P_g``.
    """
    M = C.shape[0]
    iu = np.triu_indices(M)
    V = np.zeros((beta.size, beta.size))
    for w in W:
        Cg = np.zeros((M, M))
        Cg[iu] = w[M:]
        Cg = Cg + np.triu(Cg, 1).T
        A, b = C - Cg, Fy - w[:M]
        try:
            th = np.linalg.solve(A, b)
        except np.linalg.LinAlgError:
            th = np.linalg.lstsq(A, b, rcond=None)[0]
        d = th[k_off:] - beta
        V += np.outer(d, d)
    return V


def _pass2(pdf: Any, pd_: PartitionedDesign, xc: list[int], theta: np.ndarray, spec: VcovSpec,
           parts: list[tuple[str, ...]], crv3: tuple | None) -> dict[str, Any]:
    r = pd_.rows(pdf)
    out: dict[str, Any] = dict(ssr=0.0, meat=None, parts=[], nest=[])
    if r.n == 0:
        return out
    F, yu = pd_.dense(r, xc)
    u = yu - F @ theta
    out["ssr"] = float(u @ u)
    if spec.kind == "hetero":
        sc = F * u[:, None]
        out["meat"] = sc.T @ sc
    elif spec.kind == "CRV1":
        out["parts"] = [_cluster_part(F, u, r, pd_, p) for p in parts]
    elif spec.kind == "CRV3":
        out["parts"] = [_crv3_part(r, pd_, xc, *crv3)]
    if spec.kind in ("CRV1", "CRV3"):
        out["nest"] = [_nest_facts(r, pd_, p) for p in parts]
    return out


# ------------------------------------------------------------------ result
@dataclass(eq=False)
class PartitionedFeols(CoefTable):
    """A ``feols`` fit of a partitioned panel (unit + period FEs).

    The coefficient table (``coef``, ``se``, ``tstat``, ``pvalue``,
    ``confint``, ``tidy``, ``summary``) of the in-memory ``Feols``; the data
    stay in their partitions (:attr:`ddf`), which :func:`staggerlab.placebo`
    reads again.
    """

    formula: str
    depvar: str
    coefnames: list[str]
    vcov_spec: VcovSpec
    nobs: int
    n_units: int
    unit_ids: np.ndarray = field(repr=False)
    design: PartitionedDesign = field(repr=False)
    ddf: Any = field(repr=False)
    kept: list[int] = field(repr=False)
    C: np.ndarray = field(repr=False)
    Fy: np.ndarray = field(repr=False)
    _beta: np.ndarray = field(repr=False)
    bread: np.ndarray = field(repr=False)
    theta: np.ndarray = field(repr=False)
    A: np.ndarray = field(repr=False)
    tss: float = float("nan")
    tss_within: float = float("nan")
    n_missing: int = 0
    n_singletons: int = 0
    _V: np.ndarray | None = field(default=None, repr=False)
    _df_t: int | None = None
    _G: int | None = None
    ssr: float = float("nan")
    df_k: int = 0
    collin_tol: float = 1e-9
    #: ``placebo`` / ``wildboot``: bit-identical to the in-memory fit (rows
    #: gathered to the client, see :mod:`.exact`) when ``client_bytes`` is
    #: within ``client_budget`` ("auto"), always or refuse ("require"), never
    exact: str = "auto"
    client_budget: int = CLIENT_BUDGET

    @property
    def n_clusters(self) -> int | None:
        """Smallest number of clusters (None if not clustered)."""
        return self._G

    @property
    def fixef(self) -> list[str]:
        """The unit and period FE columns."""
        return [self.design.unit, self.design.period]

    @property
    def r2(self) -> float:
        """R-squared against the mean of the outcome."""
        return 1.0 - self.ssr / self.tss

    @property
    def r2_within(self) -> float:
        """Within R-squared (after absorbing the FEs)."""
        return 1.0 - self.ssr / self.tss_within

    def summary(self) -> str:
        """A printable regression table."""
        lines = [f"feols (partitioned, {self.ddf.npartitions} partitions): {self.formula}",
                 f"Observations: {self.nobs:,}   Fixed effects: {' + '.join(self.fixef)}   Vcov: {self.vcov_spec.label}",
                 "", f"{'term':<16}{'estimate':>12}{'se':>12}{'t':>9}{'p':>9}"]
        for r in self.tidy().iter_rows(named=True):
            lines.append(f"{r['term'][:16]:<16}{r['estimate']:>12.5f}{r['se']:>12.5f}{r['tstat']:>9.2f}{r['pvalue']:>9.4f}")
        lines += ["", f"R2: {self.r2:.4f}   Within R2: {self.r2_within:.4f}"]
        if self.n_missing or self.n_singletons:
            lines.append(f"Dropped: {self.n_missing} row(s) with missing values, {self.n_singletons} singleton(s)")
        return "\n".join(lines)

    def with_vcov(self, vcov: Any) -> "PartitionedFeols":
        """The same fit with another variance (one more pass; clusters must have been prepared)."""
        spec = parse_vcov(vcov)
        missing = [c for c in spec.clusters if c not in self.design.clusters]
        if missing:
            raise VcovError(f"cluster column(s) {missing} were not prepared for this fit; pass them in "
                            "vcov= when calling feols")
        new = PartitionedFeols(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        new.vcov_spec = spec
        _variance(new)
        return new


    def with_exact(self, exact: str | None = None, client_budget: int | None = None) -> "PartitionedFeols":
        """The same fit with another rule for the bit-identical ``placebo`` / ``wildboot`` route.

        Parameters
        ----------
        exact : {"auto", "require", "never"}, optional
            ``auto``: gather the rows to the client and run the in-memory
            procedure (bit-identical) when it needs at most ``client_budget``
            bytes, else the partitioned algebra (equal at about 1e-10,
            ``method="partitioned"``); ``require``: raise
            :class:`~staggerlab.errors.ClientMemoryError` instead; ``never``:
            always the partitioned algebra.
        client_budget : int, optional
            Bytes (see :func:`staggerlab.inference.distributed.exact.client_bytes`).
        """
        if exact is not None and exact not in EXACT_MODES:
            raise ArgumentError(f"exact must be one of {EXACT_MODES}, got {exact!r}")
        if client_budget is not None and not (isinstance(client_budget, (int, np.integer)) and client_budget >= 0):
            raise ArgumentError(f"client_budget must be a number of bytes >= 0, got {client_budget!r}")
        new = PartitionedFeols(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        new.exact = self.exact if exact is None else exact
        new.client_budget = self.client_budget if client_budget is None else int(client_budget)
        return new


def _variance(fit: PartitionedFeols) -> None:
    """Pass 2: the fit's variance by its ``vcov_spec``."""
    pd_, spec = fit.design, fit.vcov_spec
    T = pd_.periods.size
    k = len(fit.kept)
    parts: list[tuple[str, ...]] = []
    if spec.kind in ("CRV1", "CRV3"):
        cl = spec.clusters
        parts = [cl] if len(cl) == 1 else [(cl[0],), (cl[1],), cl]
    crv3 = None
    M = T - 1 + k
    if spec.kind == "CRV3":
        crv3 = (fit.C, fit.Fy, fit._beta, T - 1)
    res = run_partitions(fit.ddf, _pass2, pd_, fit.kept, fit.theta, spec, parts, crv3)
    N = fit.nobs
    fit.ssr = ssr = float(sum(r["ssr"] for r in res))
    # pyfixest's df_k: FE nested in the clustering do not count (CRV only)
    nested = [False, False]
    if parts:
        nested = [pd_.unit in spec.clusters, pd_.period in spec.clusters]
        for j, p in enumerate(parts):
            facts = [r["nest"][j] for r in res if r["nest"]]
            nested[0] = nested[0] or (pd_.unit not in p and all(f["unit"] for f in facts))
            if pd_.period not in p and all(f["period_ok"] for f in facts):
                maps = pl.concat([f["period_map"] for f in facts])
                src = [c for c in maps.columns if c != pd_.period]
                nested[1] = nested[1] or bool(
                    (maps.group_by(pd_.period).agg([pl.col(c).n_unique() for c in src])
                     .select(pl.max_horizontal(src)).to_series() <= 1).all())
            elif pd_.period in p:
                nested[1] = True
    df_k = fe_df(k, [fit.n_units, T], nested)
    if N - df_k <= 0:
        raise VcovError(f"no residual degrees of freedom: {N} observations for {df_k} parameters "
                        "(coefficients and fixed effects); the model is saturated")
    # scores of F map to the in-memory scores of the two-way demeaned X
    Tm = np.hstack([-fit.A.T, np.eye(k)])
    G = None
    if spec.kind == "iid":
        V, df_t = fit.bread * residual_variance(ssr, N, df_k), N - df_k
    elif spec.kind == "hetero":
        meat = Tm @ sum(r["meat"] for r in res) @ Tm.T
        V, df_t = ssc_factor("hetero", N, df_k) * (fit.bread @ meat @ fit.bread), N - df_k
    elif spec.kind == "CRV1":
        meat = np.zeros((M, M))
        Gs = []
        for j, p in enumerate(parts):
            sign = -1.0 if j == 2 else 1.0
            got = [r["parts"][j] for r in res if r["parts"]]
            if got[0][0] == "local":
                meat += sign * sum(g[1] for g in got)
                Gs.append(sum(g[2] for g in got))
            else:
                S = pl.concat([g[1] for g in got]).group_by(list(p)).sum().drop(list(p)).to_numpy()
                meat += sign * (S.T @ S)
                Gs.append(S.shape[0])
        G = min(Gs)
        if G < 2:
            raise VcovError(f"cluster-robust variance needs at least 2 clusters, found {G}")
        meat = Tm @ meat @ Tm.T
        V, df_t = ssc_factor("CRV1", N, df_k, G) * (fit.bread @ meat @ fit.bread), G - 1
    else:  # CRV3
        got = [r["parts"][0] for r in res if r["parts"]]
        if got[0][0] == "local":
            Vs, G = sum(g[1] for g in got), sum(g[2] for g in got)
        else:
            c = spec.clusters[0]
            W = pl.concat([g[1] for g in got]).group_by(c).sum().drop(c).to_numpy()
            Vs, G = _loo_sum(W, fit.C, fit.Fy, fit._beta, T - 1), W.shape[0]
        if G < 2:
            raise VcovError(f"CRV3 needs at least 2 clusters, found {G}")
        V, df_t = ssc_factor("CRV3", N, df_k, G) * Vs, G - 1
    fit._V, fit._df_t, fit._G, fit.df_k = V, df_t, G, df_k


# ------------------------------------------------------------- entry point
def feols_partitioned(fml: str, data: Any, vcov: Any = None, weights: str | None = None, *,
                      fixef_rm: str = "singleton", na: str = "drop", collin_tol: float = 1e-9,
                      demean_method: str = "auto", **_: Any) -> PartitionedFeols:
    """``feols`` of a dask DataFrame or a directory of parquet files (see :func:`staggerlab.feols`).

    Raises
    ------
    PartitionedDesignError
        For designs without an exact partitioned solve: fixed effects other
        than unit + period, weights, several outcomes, an intercept-only
        model, the iterative demeaning.
    PartitionError
        When a unit has rows in two partitions.
    """
    f = fml if isinstance(fml, Formula) else parse_formula(fml)
    spec = parse_vcov(vcov)
    terms = [*f.depvars, *f.regressors]
    if any(not t.column for t in terms) or any(not isinstance(fe, str) for fe in f.fixef):
        raise PartitionedDesignError(
            "partitioned feols takes plain column terms and fixed effects (no C(), i(), interactions, "
            f"functions or fe1^fe2); got {fml}")
    if len(f.fixef) != 2:
        raise PartitionedDesignError(
            f"partitioned feols fits unit + period fixed effects exactly (two FEs, the unit first); got "
            f"{list(f.fixef) or 'none'}: a third high-dimensional FE needs an iterative solve across partitions")
    if weights is not None:
        raise PartitionedDesignError("partitioned feols is unweighted; weights need the in-memory fit")
    if len(f.depvars) != 1:
        raise PartitionedDesignError("partitioned feols fits one outcome per call")
    if demean_method == "iterative":
        raise PartitionedDesignError("partitioned feols demeans exactly; demean_method='iterative' is in-memory only")
    if not f.regressors:
        raise PartitionedDesignError("partitioned feols needs at least one regressor")
    unit, period = f.fixef
    y, xs = f.depvars[0].text, [t.text for t in f.regressors]
    pd_ = PartitionedDesign(y, xs, unit, period, spec.clusters, fixef_rm == "singleton", na)
    ddf = as_dask(data, [y, *xs, unit, *pd_.ids])
    r0 = run_partitions(ddf, _pass0, pd_)
    unit_ids = check_units([r["units"] for r in r0], unit)
    N = sum(r["n"] for r in r0)
    n_missing, n_single = sum(r["n_missing"] for r in r0), sum(r["n_single"] for r in r0)
    if n_missing:
        cols = [c for c in dict.fromkeys(c for r in r0 for c in r["missing"])]
        warnings.warn(f"dropped {n_missing} of {sum(r['n_raw'] for r in r0)} row(s) with missing or non-finite "
                      f"values in {', '.join(map(repr, cols))}", MissingValueWarning, stacklevel=3)
    if n_single:
        warnings.warn(f"dropped {n_single} singleton observation(s) (a fixed-effect level with one row)",
                      SingletonWarning, stacklevel=3)
    if N == 0:
        raise EmptyPanelError("no rows left in the partitioned panel")
    per = pl.DataFrame({"p": np.concatenate([r["periods"] for r in r0]),
                        "n": np.concatenate([r["period_n"] for r in r0])}).group_by("p").sum().sort("p")
    if fixef_rm == "singleton" and (per["n"] == 1).any():
        raise PartitionedDesignError(
            f"period {per.filter(pl.col('n') == 1)['p'][0]!r} of {period!r} has a single row; dropping it may "
            "make new singleton units, which needs another pass: drop that row before fitting")
    pd_.periods = per["p"].to_numpy()
    T, K = pd_.periods.size, len(xs)
    xmean = sum(r["xsum"] for r in r0) / N
    r1 = [r for r in run_partitions(ddf, _pass1, pd_, xmean, sum(r["ysum"] for r in r0) / N) if r["W"] is not None]
    C, Fy = normal_equations(np.vstack([r["W"] for r in r1]), T - 1 + K)
    D, X = np.arange(T - 1), np.arange(T - 1, T - 1 + K)
    Cdd_inv = psd_pinv(C[np.ix_(D, D)])
    A = Cdd_inv @ C[np.ix_(D, X)]
    XtX = C[np.ix_(X, X)] - C[np.ix_(X, D)] @ A
    kept = independent_columns(XtX, sum(r["ssx"] for r in r1), collin_tol)
    if len(kept) < K:
        dropped = [xs[j] for j in range(K) if j not in kept]
        if not kept:
            raise CollinearityError(f"every regressor {dropped} is collinear with the fixed effects; nothing to estimate")
        warnings.warn(f"dropped collinear regressor(s) {dropped}", CollinearityWarning, stacklevel=3)
    A = A[:, kept]
    Xty = Fy[X] - C[np.ix_(X, D)] @ (Cdd_inv @ Fy[D])
    cho = sla.cho_factor(XtX[np.ix_(kept, kept)])
    beta = sla.cho_solve(cho, Xty[kept])
    bread = sla.cho_solve(cho, np.eye(len(kept)))
    theta = np.r_[Cdd_inv @ (Fy[D] - C[np.ix_(D, X[kept])] @ beta), beta]
    cols = np.r_[D, X[kept]]
    yty_within = sum(r["yuyu"] for r in r1) - Fy[D] @ Cdd_inv @ Fy[D]
    fit = PartitionedFeols(
        formula=f.with_depvar(y), depvar=y, coefnames=[xs[j] for j in kept], vcov_spec=spec, nobs=N,
        n_units=unit_ids.size, unit_ids=unit_ids, design=pd_, ddf=ddf, kept=list(kept),
        C=C[np.ix_(cols, cols)], Fy=Fy[cols], _beta=beta, bread=bread, theta=theta, A=A,
        tss=sum(r["tss"] for r in r1), tss_within=float(yty_within), n_missing=n_missing, n_singletons=n_single,
        collin_tol=collin_tol)
    _variance(fit)
    return fit
