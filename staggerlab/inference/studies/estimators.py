"""Estimators of a Monte Carlo study: the :class:`Estimator` spec, the built-in
wrappers (static TWFE with its :func:`fast_twfe` path, TWFE with wild bootstrap
or placebo inference, the staggered-DID estimators) and ``BUILTIN_ESTIMATORS``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import stats

from ..._validate import alpha_of
from ...errors import MonteCarloError
from ...panels.dgp import DGP, Truth
from ..regression.absorb import Absorber, drop_singletons
from ..regression.rank import independent_columns
from ..regression.vcov import ssc_df_k, ssc_factor

__all__ = ["Estimator", "BUILTIN_ESTIMATORS", "fast_twfe", "twfe", "twfe_fit", "as_estimators"]


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


def twfe_fit(frame: pl.DataFrame, dgp: DGP, truth: Truth | None):
    """Static TWFE ``y ~ treat + covariates | unit + time`` through :func:`feols`.

    CRV1 by the DGP's ``inference_cluster``. ``tau`` is fitted as a second
    outcome on the same design: its ``treat`` coefficient is the exact
    conditional plim, cached in ``truth``.
    """
    from ..regression.feols import feols
    from ..regression.formula import Formula, quote

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = feols(Formula.of(["y", "tau"], ["treat", *dgp.covariates], ["unit", "time"]), frame,
                     vcov={"CRV1": quote(dgp.inference_cluster)})
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


def twfe(frame: pl.DataFrame, *, dgp: DGP, truth: Truth, level: float) -> dict[str, Any]:
    alpha = alpha_of(level)
    fast = fast_twfe(frame, dgp.covariates, dgp.inference_cluster)
    if fast is None:
        fit = twfe_fit(frame, dgp, truth)
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

    fit = twfe_fit(frame, dgp, truth)
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

    fit = twfe_fit(frame, dgp, truth)
    j = fit.coefnames.index("treat")
    ri = placebo(fit, param="treat", draws=draws, scheme=scheme, seed=seed)
    # randomization inference tests the sharp null of no effect: no interval
    return {"estimate": float(fit.beta[j]), "se": float(np.sqrt(fit.vcov()[j, j])), "pvalue": float(ri.pvalue)}


def _staggered_estimator(method: str, name: str | None = None, **fixed: Any) -> Callable[..., dict[str, Any]]:
    """A built-in heterogeneity-robust estimator reporting its overall ``simple``
    aggregate (``fixed``: options of the method, e.g. LP-DiD's ``reweight``)."""

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
        kw.update(fixed)
        kw.update(options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agg = fn(frame, **kw).aggregate("simple")
        return _agg_result(float(agg.estimate), float(agg.se), getattr(agg, "df", None), alpha)

    run.__name__ = run.__qualname__ = f"_{name or method}"
    return run


_event_study = _staggered_estimator("twfe")
_sunab = _staggered_estimator("sunab")
_imputation = _staggered_estimator("imputation")
_cs = _staggered_estimator("cs")
_lpdid = _staggered_estimator("lpdid")
_lpdid_rw = _staggered_estimator("lpdid", "lpdid_rw", reweight=True)
# a short event window: the stack keeps only cohorts whose whole window is observed
_stacked = _staggered_estimator("stacked", window=(-2, 3))
_etwfe = _staggered_estimator("etwfe")

#: name -> (function, default target)
BUILTIN_ESTIMATORS: dict[str, tuple[Callable[..., Mapping[str, Any]], str]] = {
    "twfe": (twfe, "simple"),
    "twfe+wildboot": (_twfe_wildboot, "simple"),
    "twfe+placebo": (_twfe_placebo, "simple"),
    "event_study": (_event_study, "simple"),
    "sunab": (_sunab, "simple"),
    "imputation": (_imputation, "simple"),
    "cs": (_cs, "simple"),
    "lpdid": (_lpdid, "simple"),
    "lpdid_rw": (_lpdid_rw, "simple"),
    "stacked": (_stacked, "simple"),
    "etwfe": (_etwfe, "simple"),
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


def as_estimators(estimators: Any) -> list[Estimator]:
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
