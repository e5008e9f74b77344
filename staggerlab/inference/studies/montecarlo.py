"""Monte Carlo studies of DID estimators on DGPs with known truth.

``montecarlo(dgp, estimators, reps=...)`` draws ``reps`` panels from each DGP,
runs every estimator on each, and compares estimates with the truth of the
draw. Replication ``r`` of every DGP uses the seed ``block_seed(seed, r)``
(common random numbers across DGPs) and its estimators the children
``block_seed(block_seed(seed, r), j + 1)``; replications are grouped in
fixed-size blocks run by :func:`staggerlab._parallel.run_blocks`, so results
are bit-identical for any ``n_jobs``, backend and block size.

Checkpointing: with ``checkpoint="study.parquet"`` the path is a directory
(a parquet dataset) holding ``meta.json`` (the study's fingerprint) and one
parquet file per finished block, written atomically by the worker that ran
it. An interrupted study rerun with the same arguments only computes the
missing blocks; a finished one is read back without recomputation.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl
import scipy.linalg as sla
import scipy.sparse as sp
from joblib import parallel_config
from scipy import stats

from ..._parallel import run_blocks
from ..._seed import SeedLike, block_seed, resolve_entropy
from ..._validate import alpha_of
from ...errors import MonteCarloError
from ...panels.dgp import DGP, Truth
from ..regression.absorb import Absorber, drop_singletons
from ..regression.rank import independent_columns
from ..regression.vcov import ssc_df_k, ssc_factor
from ..results import Result
from .plim import twfe_plim

__all__ = ["montecarlo", "MonteCarloResult", "Estimator", "MonteCarloError", "BUILTIN_ESTIMATORS", "fast_twfe"]


# ------------------------------------------------------------------ estimators
@dataclass(frozen=True)
class Estimator:
    """An estimator in a Monte Carlo study.

    Parameters
    ----------
    name : str
        Label in the results.
    func : callable
        ``func(frame, **ctx) -> dict`` with keys ``estimate``, ``se``,
        ``pvalue`` (of H0: effect = 0) and optionally ``ci_low``/``ci_high``
        or ``covers`` (whether the ``level`` interval contains the truth).
        Keyword arguments among ``seed`` (a SeedSequence for this estimator
        and replication), ``level``, ``truth`` (the :class:`Truth`), ``dgp``
        and ``target`` (the true value) are passed if ``func`` names them.
        Without a CI, ``estimate +- z_{(1+level)/2} se`` is used.
    target : str or float
        What the estimator estimates: an estimand of :class:`Truth`
        (``"simple"``, ``"dynamic"``, ``"group"``, ``"twfe_plim"``) or a number.
    options : dict
        Extra keyword arguments for ``func`` (e.g. ``draws`` of a bootstrap).
    """

    name: str
    func: Callable[..., Mapping[str, Any]]
    target: str | float = "simple"
    options: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """Identity of the estimator in a checkpoint fingerprint."""
        f = self.func
        qual = getattr(f, "__qualname__", type(f).__qualname__)  # instances: their class
        mod = getattr(f, "__module__", type(f).__module__)
        return f"{self.name}|{mod}.{qual}|{self.target}|{sorted(self.options.items())}"


def _agg_result(est: float, se: float, df: int | None, alpha: float) -> dict[str, float]:
    """p-value and (1 - alpha) CI from a t (``df``) or normal reference."""
    dist = stats.norm if df is None else stats.t(df)
    q = float(dist.ppf(1 - alpha / 2))
    p = float(2 * dist.sf(abs(est / se))) if se > 0 else float("nan")
    return {"estimate": est, "se": se, "pvalue": p, "ci_low": est - q * se, "ci_high": est + q * se}


def _twfe_fit(frame: pl.DataFrame, dgp: DGP, truth: Truth | None):
    """Static TWFE ``y ~ treat + covariates | unit + time`` through :func:`feols`.

    CRV1 by the DGP's ``inference_cluster``. ``tau`` is fitted as a second
    outcome on the same design: its ``treat`` coefficient is the exact
    conditional plim, cached in ``truth``.
    """
    from ..regression.feols import feols

    rhs = " + ".join(["treat", *dgp.covariates])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = feols(f"y + tau ~ {rhs} | unit + time", frame, vcov={"CRV1": dgp.inference_cluster})
    fit, tau_fit = fits["y"], fits["tau"]
    if truth is not None and truth.known_twfe_plim is None:
        truth.record_twfe_plim(float(tau_fit.beta[tau_fit.coefnames.index("treat")]))
    return fit


def _dense(codes: np.ndarray) -> np.ndarray:
    """Dense 0..G-1 codes; O(N) without a sort for integer ids of a modest range."""
    if codes.dtype.kind not in "iu" or codes.size == 0 or int(codes.max()) - int(codes.min()) > 4 * codes.size:
        return np.unique(codes, return_inverse=True)[1].astype(np.int64)
    c = codes - codes.min()
    present = np.bincount(c) > 0
    return (np.cumsum(present) - 1)[c]


def _incidence(codes: np.ndarray, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, n))


def fast_twfe(
    frame: pl.DataFrame, covariates: Sequence[str] = (), cluster: str = "unit"
) -> tuple[float, float, int, float] | None:
    """Static TWFE of ``y`` (and ``tau``) on ``treat + covariates`` with unit and time FE.

    The same numbers as ``feols("y ~ treat + covariates | unit + time",
    vcov={"CRV1": cluster})`` (singletons dropped, pyfixest's small-sample
    factor) with the exact two-way demeaning of
    :class:`~staggerlab.inference.regression.absorb.Absorber`. Returns ``(beta, se, df_t, plim)``
    for ``treat`` (``plim``: the same regression with ``tau`` as outcome), or
    None when the design needs the general path (collinearity, a singular
    time block), which the caller then takes.
    """
    unit = frame["unit"].to_numpy()
    time = frame["time"].to_numpy()
    cl = frame[cluster].to_numpy()
    names = ["treat", *covariates]
    V = np.column_stack([frame[c].cast(pl.Float64).to_numpy() for c in (*names, "y", "tau")])
    uc, tc = _dense(unit), _dense(time)
    keep = drop_singletons([uc, tc])
    if not keep.all():
        uc, tc = _dense(uc[keep]), _dense(tc[keep])
        V, cl = V[keep], cl[keep]
    cc = _dense(cl)
    N, k = V.shape[0], len(names)
    n_u, T, G = int(uc.max()) + 1, int(tc.max()) + 1, int(cc.max()) + 1
    if G < 2 or T < 2:
        return None
    # the package's exact within solver (what feols demeans with)
    absorber = Absorber([uc, tc], method="exact")
    if absorber.rank_small < min(n_u, T) - 1:  # disconnected panel: the general path
        return None
    W = absorber.demean(V)
    X = W[:, :k]
    XtX = X.T @ X
    # feols drops a regressor by the package's rank rule; leave those designs to it
    ss = ((V[:, :k] - V[:, :k].mean(0)) ** 2).sum(0)
    if len(independent_columns(XtX, ss)) < k:
        return None
    try:
        cho = sla.cho_factor(XtX)
    except np.linalg.LinAlgError:
        return None
    coefs = sla.cho_solve(cho, X.T @ W[:, k:])
    u = W[:, k] - X @ coefs[:, 0]
    bread = sla.cho_solve(cho, np.eye(k))
    S = np.asarray(_incidence(cc, G).T @ (X * u[:, None]))
    df_k = ssc_df_k(k, [uc, tc], [n_u, T], [cc], [cluster == "unit", False])
    Vb = ssc_factor("CRV1", N, df_k, G) * (bread @ (S.T @ S) @ bread)
    return float(coefs[0, 0]), float(np.sqrt(Vb[0, 0])), G - 1, float(coefs[0, 1])


def _twfe(frame: pl.DataFrame, *, dgp: DGP, truth: Truth, level: float) -> dict[str, Any]:
    alpha = alpha_of(level)
    fast = fast_twfe(frame, dgp.covariates, dgp.inference_cluster)
    if fast is None:
        fit = _twfe_fit(frame, dgp, truth)
        j = fit.coefnames.index("treat")
        b, se, df_t = float(fit.beta[j]), float(np.sqrt(fit.vcov()[j, j])), fit.df_t
    else:
        b, se, df_t, plim = fast
        if truth.known_twfe_plim is None:
            truth.record_twfe_plim(plim)
    q = stats.t.ppf(1 - alpha / 2, df_t)
    p = 2 * stats.t.sf(abs(b / se), df_t)
    return {"estimate": b, "se": se, "pvalue": float(p), "ci_low": b - q * se, "ci_high": b + q * se}


def _twfe_wildboot(
    frame: pl.DataFrame, *, dgp: DGP, truth: Truth, seed: np.random.SeedSequence, level: float,
    target: float, draws: int = 399, weights: str = "rademacher",
) -> dict[str, Any]:
    alpha = alpha_of(level)
    from ..resampling.wildboot import wildboot

    fit = _twfe_fit(frame, dgp, truth)
    j = fit.coefnames.index("treat")
    wb = wildboot(fit, param="treat", draws=draws, weights=weights, seed=seed, confint=False)
    # the test-inversion CI covers the truth iff the bootstrap test of
    # h0 = truth does not reject, which costs one test instead of a root search
    wb0 = wildboot(fit, param="treat", draws=draws, weights=weights, h0=target, seed=seed, confint=False)
    return {
        "estimate": float(fit.beta[j]),
        "se": float(np.sqrt(fit.vcov()[j, j])),
        "pvalue": float(wb.pvalue),
        "covers": bool(wb0.pvalue >= alpha),
    }


def _twfe_placebo(
    frame: pl.DataFrame, *, dgp: DGP, truth: Truth, seed: np.random.SeedSequence,
    draws: int = 199, scheme: str = "units+timing",
) -> dict[str, Any]:
    from ..resampling.placebo import placebo

    fit = _twfe_fit(frame, dgp, truth)
    j = fit.coefnames.index("treat")
    ri = placebo(fit, param="treat", draws=draws, scheme=scheme, seed=seed)
    # randomization inference tests the sharp null of no effect: no interval
    return {"estimate": float(fit.beta[j]), "se": float(np.sqrt(fit.vcov()[j, j])), "pvalue": float(ri.pvalue)}


def _staggered_estimator(method: str) -> Callable[..., dict[str, Any]]:
    """A built-in heterogeneity-robust estimator reporting its overall ``simple`` aggregate."""

    def run(frame: pl.DataFrame, *, dgp: DGP, level: float, **options: Any) -> dict[str, Any]:
        alpha = alpha_of(level)
        kw: dict[str, Any] = dict(y="y", unit="unit", time="time", cohort="cohort")
        if dgp.inference_cluster != "unit":
            kw["cluster"] = dgp.inference_cluster
        if method == "cs":
            from ..did.cs import cs as fn
        else:
            from ..did.event_study import event_study as fn

            kw["method"] = method
            # CS is unconditional here (its covariates are base-period
            # values); the regression-based estimators take the covariates
            if dgp.covariates:
                kw["controls"] = dgp.covariates
        kw.update(options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agg = fn(frame, **kw).aggregate("simple")
        return _agg_result(float(agg.estimate), float(agg.se), getattr(agg, "df", None), alpha)

    run.__name__ = run.__qualname__ = f"_{method}"
    return run


_event_study = _staggered_estimator("twfe")
_sunab = _staggered_estimator("sunab")
_imputation = _staggered_estimator("imputation")
_cs = _staggered_estimator("cs")

#: name -> (function, default target)
BUILTIN_ESTIMATORS: dict[str, tuple[Callable[..., Mapping[str, Any]], str]] = {
    "twfe": (_twfe, "simple"),
    "twfe+wildboot": (_twfe_wildboot, "simple"),
    "twfe+placebo": (_twfe_placebo, "simple"),
    "event_study": (_event_study, "simple"),
    "sunab": (_sunab, "simple"),
    "imputation": (_imputation, "simple"),
    "cs": (_cs, "simple"),
}


def _as_estimator(spec: Any) -> Estimator:
    if isinstance(spec, Estimator):
        return spec
    if isinstance(spec, str):
        if spec not in BUILTIN_ESTIMATORS:
            raise MonteCarloError(f"unknown estimator {spec!r}; built-ins: {sorted(BUILTIN_ESTIMATORS)}")
        func, target = BUILTIN_ESTIMATORS[spec]
        return Estimator(spec, func, target)
    if callable(spec):
        return Estimator(getattr(spec, "__name__", "custom"), spec)
    raise MonteCarloError(f"an estimator must be a name, a callable or an Estimator, got {type(spec).__name__}")


def _estimators(estimators: Any) -> list[Estimator]:
    if isinstance(estimators, (str, Estimator)) or callable(estimators):
        estimators = [estimators]
    if isinstance(estimators, Mapping):
        out = []
        for name, spec in estimators.items():
            e = _as_estimator(spec)
            out.append(Estimator(name, e.func, e.target, e.options))
    else:
        out = [_as_estimator(e) for e in estimators]
    names = [e.name for e in out]
    if len(set(names)) != len(names) or not names:
        raise MonteCarloError(f"estimator names must be unique and non-empty, got {names}")
    return out


def _dgps(dgp: Any) -> list[tuple[str, DGP]]:
    if isinstance(dgp, DGP):
        return [(dgp.name, dgp)]
    items = list(dgp.items()) if isinstance(dgp, Mapping) else [(d.name, d) for d in dgp]
    names = [n for n, _ in items]
    if not items or len(set(names)) != len(names):
        raise MonteCarloError(f"DGP names must be unique and non-empty (pass a dict to name them), got {names}")
    for n, d in items:
        if not isinstance(d, DGP):
            raise MonteCarloError(f"DGP {n!r} is a {type(d).__name__}, not a staggerlab DGP")
    return items


# ------------------------------------------------------------------ execution
_SCHEMA = {
    "dgp": pl.String,
    "estimator": pl.String,
    "rep": pl.Int64,
    "estimate": pl.Float64,
    "se": pl.Float64,
    "pvalue": pl.Float64,
    "covers": pl.Boolean,
    "truth": pl.Float64,
    "att": pl.Float64,
    "plim": pl.Float64,
    "error": pl.String,
}


def _call(est: Estimator, frame: pl.DataFrame, ctx: dict[str, Any]) -> Mapping[str, Any]:
    params = inspect.signature(est.func).parameters
    kw = {k: v for k, v in ctx.items() if k in params}
    return est.func(frame, **kw, **est.options)


@dataclass(frozen=True)
class _Block:
    dgp_index: int
    dgp_name: str
    dgp: DGP
    estimators: tuple[Estimator, ...]
    seed: np.random.SeedSequence
    reps: tuple[int, int]
    alpha: float
    level: float
    on_error: str
    path: str | None

    @property
    def filename(self) -> str:
        return f"block-d{self.dgp_index:03d}-r{self.reps[0]:07d}-{self.reps[1]:07d}.parquet"


def _run_block(block: _Block) -> pl.DataFrame:
    rows: dict[str, list[Any]] = {k: [] for k in _SCHEMA}
    for r in range(*block.reps):
        ss = block_seed(block.seed, r)
        frame, truth = block.dgp.draw(ss)
        for j, est in enumerate(block.estimators):
            target = float(est.target) if not isinstance(est.target, str) else None
            # the plim costs a fit unless a TWFE estimator caches it first: resolve it late
            # unless the estimator itself asks for its target
            wants = "target" in inspect.signature(est.func).parameters
            if target is None and (est.target != "twfe_plim" or wants):
                target = twfe_plim(truth) if est.target == "twfe_plim" else truth.target(est.target)
            ctx = {"seed": block_seed(ss, j + 1), "level": block.level, "truth": truth,
                   "dgp": block.dgp, "target": target}
            error = None
            try:
                out = _call(est, frame, ctx)
            except Exception as exc:  # noqa: BLE001 - recorded or re-raised below
                if block.on_error == "raise":
                    raise
                out, error = {}, f"{type(exc).__name__}: {exc}"
            if target is None:
                target = twfe_plim(truth)
            b = float(out.get("estimate", np.nan))
            se = float(out.get("se", np.nan))
            covers = out.get("covers")
            if covers is None:
                lo, hi = out.get("ci_low"), out.get("ci_high")
                if lo is None and np.isfinite(se):
                    z = stats.norm.ppf(1 - block.alpha / 2)
                    lo, hi = b - z * se, b + z * se
                covers = None if lo is None or not np.isfinite(b) else bool(lo <= target <= hi)
            rows["dgp"].append(block.dgp_name)
            rows["estimator"].append(est.name)
            rows["rep"].append(r)
            rows["estimate"].append(b)
            rows["se"].append(se)
            rows["pvalue"].append(float(out.get("pvalue", np.nan)))
            rows["covers"].append(covers)
            rows["truth"].append(target)
            rows["att"].append(truth.att)
            rows["error"].append(error)
        # the plim is known once any TWFE fit of this draw has run (never forced: it costs a fit)
        rows["plim"].extend([truth.known_twfe_plim] * len(block.estimators))
    df = pl.DataFrame(rows, schema=_SCHEMA)
    if block.path is not None:
        _atomic_write(df, Path(block.path) / block.filename)
    return df


def _atomic_write(df: pl.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        df.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fingerprint(dgps: list[tuple[str, DGP]], ests: list[Estimator], ss: np.random.SeedSequence,
                 reps: int, alpha: float) -> dict[str, Any]:
    return {
        "dgps": [[n, repr(sorted(d.describe().items()))] for n, d in dgps],
        "estimators": [e.key() for e in ests],
        "seed": [str(ss.entropy), list(map(int, ss.spawn_key))],
        "alpha": alpha,
        "reps": reps,
    }


def _open_checkpoint(path: Path, meta: dict[str, Any]) -> set[str]:
    """Create or validate the checkpoint directory; names of finished block files."""
    path.mkdir(parents=True, exist_ok=True)
    mfile = path / "meta.json"
    text = json.dumps(meta, sort_keys=True)
    if mfile.exists():
        old = json.loads(mfile.read_text())
        same = {k: v for k, v in old.items() if k != "reps"} == {k: v for k, v in meta.items() if k != "reps"}
        if not same:
            raise MonteCarloError(
                f"checkpoint {str(path)!r} belongs to another study (different DGPs, estimators, seed "
                "or level); use a new checkpoint path or delete this one"
            )
    tmp = path / ".meta.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, mfile)
    return {p.name for p in path.glob("block-*.parquet")}


# --------------------------------------------------------------------- results
class MonteCarloResult(Result):
    """Replications of a Monte Carlo study and their summaries.

    Attributes
    ----------
    level : float
        Nominal confidence level of the intervals.
    alpha : float
        ``1 - level``, the nominal size of the tests.
    dgps, estimators : list of str
        Names, in the order given.
    """

    def __init__(self, reps: pl.DataFrame, *, level: float, dgps: list[str], estimators: list[str],
                 targets: dict[str, str]):
        self._reps = reps
        self.level = level
        self.alpha = alpha_of(level)
        self.dgps = dgps
        self.estimators = estimators
        self.targets = targets

    def replications(self) -> pl.DataFrame:
        """Every replication: ``dgp, estimator, rep, estimate, se, pvalue, covers, truth, att, plim, error``.

        ``truth`` is the true value of what the estimator reports in that draw,
        ``att`` the draw's simple ATT and ``plim`` the static TWFE plim (when
        computed). ``error`` is the message of a failed replication (with
        ``on_error="record"``).
        """
        return self._reps.clone()

    def summary(self) -> pl.DataFrame:
        """One row per DGP x estimator.

        Columns ``dgp, estimator, reps, mean, truth, bias, sd, rmse, se_ratio,
        coverage, rejection, mean_mcse, bias_mcse, coverage_mcse,
        rejection_mcse`` and then ``target, plim, failed``. ``bias`` is the mean
        of ``estimate - truth`` over replications (each against its own draw's
        truth), ``se_ratio`` the mean reported se over the sd of the
        estimates, ``coverage`` the share of (1 - alpha) intervals containing
        the truth, ``rejection`` the share of p-values below alpha (size when
        the effect is 0, power otherwise). ``*_mcse`` are Monte Carlo
        standard errors: ``sd / sqrt(R)`` for mean and bias and
        ``sqrt(p (1 - p) / R)`` for rates.
        """
        recs = []
        for d in self.dgps:
            for e in self.estimators:
                sub = self._reps.filter((pl.col("dgp") == d) & (pl.col("estimator") == e)).sort("rep")
                recs.append(self._row(d, e, sub))
        return pl.DataFrame(recs, schema={
            "dgp": pl.String, "estimator": pl.String, "reps": pl.Int64, "mean": pl.Float64,
            "truth": pl.Float64, "bias": pl.Float64, "sd": pl.Float64, "rmse": pl.Float64,
            "se_ratio": pl.Float64, "coverage": pl.Float64, "rejection": pl.Float64,
            "mean_mcse": pl.Float64, "bias_mcse": pl.Float64, "coverage_mcse": pl.Float64,
            "rejection_mcse": pl.Float64, "target": pl.String, "plim": pl.Float64, "failed": pl.Int64,
        }, orient="row")

    def _row(self, d: str, e: str, sub: pl.DataFrame) -> tuple:
        est = sub["estimate"].to_numpy()
        ok = np.isfinite(est)
        failed = int((~ok).sum())
        est = est[ok]
        R = est.size
        nan = float("nan")
        if R == 0:
            return (d, e, 0, *([nan] * 12), self.targets.get(e, ""), nan, failed)
        truth = sub["truth"].to_numpy()[ok]
        se = sub["se"].to_numpy()[ok]
        pv = sub["pvalue"].to_numpy()[ok]
        cov = sub["covers"].to_numpy()[ok]
        plim = sub["plim"].to_numpy()[ok].astype(float)
        err = est - truth
        mean = float(np.mean(est))
        sd = float(np.std(est, ddof=1)) if R > 1 else nan
        bias = float(np.mean(err))
        rmse = float(np.sqrt(np.mean(err**2)))
        se_ok = se[np.isfinite(se)]
        se_ratio = float(np.mean(se_ok) / sd) if se_ok.size and R > 1 and sd > 0 else nan
        cov_ok = np.array([c for c in cov if c is not None], dtype=float)
        coverage = float(cov_ok.mean()) if cov_ok.size else nan
        pv_ok = pv[np.isfinite(pv)]
        rejection = float(np.mean(pv_ok < self.alpha)) if pv_ok.size else nan

        def rate_mcse(p: float, n: int) -> float:
            return float(np.sqrt(p * (1 - p) / n)) if n else nan

        bias_mcse = float(np.std(err, ddof=1) / np.sqrt(R)) if R > 1 else nan
        plim_ok = plim[np.isfinite(plim)]
        return (
            d, e, R, mean, float(np.mean(truth)), bias, sd, rmse, se_ratio, coverage, rejection,
            sd / np.sqrt(R) if R > 1 else nan, bias_mcse, rate_mcse(coverage, cov_ok.size),
            rate_mcse(rejection, pv_ok.size), self.targets.get(e, ""),
            float(np.mean(plim_ok)) if plim_ok.size else nan, failed,
        )

    def tidy(self) -> pl.DataFrame:
        """Same as :meth:`summary`."""
        return self.summary()

    def plot(self, path: str | os.PathLike[str] | None = None):
        """Bias and coverage by estimator (with 2 MC-se bars) and sampling distributions.

        Returns the matplotlib Figure; saved to ``path`` if given.
        """
        from ...plots.montecarlo import plot_montecarlo

        return plot_montecarlo(self, path=path)

    def __repr__(self) -> str:
        with pl.Config(tbl_rows=50, tbl_cols=12):
            return f"MonteCarloResult (level={self.level})\n" + repr(
                self.summary().select("dgp", "estimator", "reps", "mean", "truth", "bias", "sd", "rmse",
                                      "se_ratio", "coverage", "rejection")
            )


def montecarlo(
    dgp: DGP | Mapping[str, DGP] | Sequence[DGP],
    estimators: Any = ("twfe",),
    *,
    reps: int = 1000,
    seed: SeedLike = 0,
    n_jobs: int | None = -1,
    backend: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    level: float = 0.95,
    block_size: int = 25,
    on_error: str = "raise",
    show_progress: bool | None = None,
) -> MonteCarloResult:
    """Run a Monte Carlo study of estimators on DGPs with known truth.

    Parameters
    ----------
    dgp : DGP, dict of name -> DGP, or list of DGPs
        One DGP or a grid (a list uses each DGP's ``name``; they must differ).
    estimators : str, callable, Estimator, or a list/dict of them
        Built-in names: ``"twfe"`` (static TWFE with covariates, CRV1 by the
        DGP's ``inference_cluster``), ``"event_study"``, ``"sunab"``,
        ``"imputation"``, ``"cs"`` (overall simple ATT of
        ``staggerlab.inference.did.event_study``), ``"twfe+wildboot"``,
        ``"twfe+placebo"``; or callables ``f(frame) -> dict(estimate=, se=,
        pvalue=)`` (see :class:`Estimator`). A dict names them.
    reps : int
        Replications per DGP.
    seed : int, Generator or SeedSequence
        Fixed once; replication ``r`` uses ``block_seed(seed, r)``. Use an int
        with ``checkpoint`` (a None seed cannot be resumed).
    n_jobs, backend : int, str
        joblib workers and backend (``"loky"``, ``"threading"``, ``"dask"``
        with a ``dask.distributed.Client`` open, ...). Results do not depend on them.
    checkpoint : path, optional
        Directory (e.g. ``"study.parquet"``) where finished blocks are stored;
        rerunning resumes or returns the stored results.
    level : float
        Confidence level of the intervals; the tests have size ``1 - level``.
    block_size : int
        Replications per block (unit of parallel work and of checkpointing).
    on_error : {"raise", "record"}
        Whether an estimator's exception aborts the study (finished blocks stay
        in the checkpoint) or is recorded as a failed replication.
    show_progress : bool, optional
        Progress bar (default: on an interactive terminal).

    Returns
    -------
    MonteCarloResult

    Examples
    --------
    >>> import staggerlab as sl
    >>> from staggerlab.inference.studies.montecarlo import montecarlo
    >>> d = sl.simulate.dgp("homogeneous", n_units=100)
    >>> mc = montecarlo(d, ["twfe"], reps=20, n_jobs=1)
    >>> mc.summary()["reps"][0]
    20
    """
    if reps < 1 or block_size < 1:
        raise MonteCarloError(f"reps and block_size must be positive, got {reps} and {block_size}")
    alpha = alpha_of(level)
    if on_error not in ("raise", "record"):
        raise MonteCarloError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    dgps = _dgps(dgp)
    ests = _estimators(estimators)
    ss = resolve_entropy(seed)
    path = Path(checkpoint) if checkpoint is not None else None
    done: set[str] = set()
    if path is not None:
        if seed is None or isinstance(seed, np.random.Generator):
            raise MonteCarloError("a checkpointed study needs a reproducible seed (an int or SeedSequence)")
        done = _open_checkpoint(path, _fingerprint(dgps, ests, ss, reps, alpha))
    blocks = [
        _Block(k, name, d, tuple(ests), ss, (lo, min(lo + block_size, reps)), alpha, level, on_error,
               None if path is None else str(path))
        for k, (name, d) in enumerate(dgps)
        for lo in range(0, reps, block_size)
    ]
    todo = [b for b in blocks if b.filename not in done]
    # A named backend goes through parallel_config, which registers joblib's
    # lazily loaded backends (dask): joblib 1.6 cannot build its dask backend
    # from Parallel(backend="dask") directly.
    with parallel_config(backend=backend, n_jobs=n_jobs) if backend is not None else nullcontext():
        results = run_blocks(_run_block, todo, n_jobs=n_jobs, desc="montecarlo",
                             show_progress=show_progress) if todo else []
    fresh = dict(zip((b.filename for b in todo), results))
    parts = [fresh[b.filename] if b.filename in fresh else pl.read_parquet(path / b.filename) for b in blocks]
    reps_df = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=_SCHEMA)
    targets = {e.name: str(e.target) for e in ests}
    return MonteCarloResult(reps_df, level=level, dgps=[n for n, _ in dgps],
                            estimators=[e.name for e in ests], targets=targets)
