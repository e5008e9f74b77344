"""Double/debiased machine learning for the partially linear model.

Model (Chernozhukov et al. 2018): ``y = theta d + g(X) + e``,
``d = m(X) + v``. With the "partialling out" score, ``l(X) = E[y|X]`` and
``m(X) = E[d|X]`` are learned by K-fold cross-fitting: for each fold the
learners are fitted on the other folds and predict the held-out rows, and

    theta = sum_i v_i u_i / sum_i v_i^2,   v = d - m_hat,  u = y - l_hat,
    se    = sqrt(mean(psi^2) / (n J^2)),  psi = (u - theta v) v,  J = -mean(v^2),

pooled over all folds (DML2). With ``n_rep`` repeated splits the estimate is
the median of the per-split estimates and the standard error is backed out of
the median of the per-split upper 95% bounds (``theta_r + 1.96 se_r``), as in
the ``doubleml`` package (0.10+).

Fixed effects: when ``unit``/``time`` are given, ``y``, ``d`` and every
covariate are first within-transformed (demeaned by unit and time with the
same exact demeaner as ``feols``, after dropping singletons) and DML is run
on the transformed data. This is the usual way to combine DML with two-way
FE; it is not a nonparametric treatment of the FE. The standard error is the
i.i.d. one of the DML score (as ``doubleml`` without cluster data).

The folds are drawn here (a seeded permutation of the rows, or of the units
with ``fold_by="unit"``), kept in ``result.splits`` and can be handed to
``doubleml``'s ``set_sample_splitting`` for an exact comparison.

Agreement with ``doubleml`` (``DoubleMLPLR``, same learner objects, same
folds through ``set_sample_splitting``), tested to 1e-6 relative on the
per-split and aggregated estimates and SEs: lasso, ridge, random forest (exact,
because the forest's ``random_state`` is fixed from ``seed`` and both sides fit
clones of the same estimator), RBF SVR (exact once its solver tolerance is
tight, ``learner_params={"tol": 1e-10}``; at libsvm's default 1e-3 the fitted
values move with round-off-level changes of the inputs, so two independent
within transformations differ by ~3e-4 relative) and the Nystroem SVM.

scikit-learn is an optional dependency (``pip install "staggerlab[ml]"``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl
from scipy import special

from ..._parallel import run_blocks
from ..._seed import SeedLike, block_generator
from ..._validate import check_level
from ...errors import (
    ArgumentError,
    ArgumentTypeError,
    MissingValueWarning,
    PanelError,
    ResidualVarianceWarning,
    SingletonWarning,
    TreatmentError,
)
from ...panels.panel import (
    check_columns,
    check_numeric,
    column_list,
    factorize,
    finite_mask,
    missing_columns,
    to_polars,
)
from ..regression.absorb import Absorber, drop_singletons
from ..results import Result

__all__ = ["dml", "DmlResult", "make_learner", "LEARNERS"]

LEARNERS = ("lasso", "ridge", "rf", "svm", "svm-nystroem")
#: learners whose fits give the same numbers when several run at once on threads (no process-wide
#: random state: the SVMs' liblinear / libsvm seed the C library's generator, shared by all threads)
THREAD_SAFE_LEARNERS = ("lasso", "ridge", "rf")
#: the normal quantile doubleml uses to aggregate repeated splits
_AGG_Z = 1.96
#: out-of-fold residual variance of the treatment, as a share of its variance,
#: below which the covariates are said to predict it (almost) perfectly
RESIDUAL_VARIANCE_SHARE = 1e-4

Learner = Literal["lasso", "ridge", "rf", "svm", "svm-nystroem"]


def _require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(
            "staggerlab.dml needs scikit-learn, an optional dependency: "
            "install the ml extra with  pip install \"staggerlab[ml]\"  (or pip install scikit-learn)"
        ) from None


def make_learner(name: str, *, random_state: int = 0, **params: Any) -> Any:
    """The scikit-learn estimator behind a learner name.

    * ``"lasso"``: standardise, then ``LassoCV`` (5-fold, unshuffled, so deterministic);
    * ``"ridge"``: standardise, then ``RidgeCV`` (25 penalties from 1e-4 to 1e4);
    * ``"rf"``: ``RandomForestRegressor(n_estimators=100, min_samples_leaf=5,
      random_state=random_state, n_jobs=1)``;
    * ``"svm"``: standardise X and the target, RBF ``SVR`` (C=1, epsilon=0.1 in
      target-sd units); exact, but its cost grows with the square of the rows
      (about 5 s per fit at 12,000 rows);
    * ``"svm-nystroem"``: the same support-vector regression on a Nystroem
      approximation of the RBF kernel (100 components, ``random_state``) with
      ``LinearSVR``: linear cost in the rows, for large panels.

    ``params`` override the final estimator's parameters (e.g.
    ``n_estimators=50, max_depth=6`` for ``"rf"``, ``C=10`` for ``"svm"``).
    """
    _require_sklearn()
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LassoCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if name == "lasso":
        return make_pipeline(StandardScaler(), LassoCV(**{"cv": 5, "max_iter": 10_000, **params}))
    if name == "ridge":
        return make_pipeline(StandardScaler(), RidgeCV(**{"alphas": np.logspace(-4, 4, 25), **params}))
    if name == "rf":
        base = {"n_estimators": 100, "min_samples_leaf": 5, "random_state": random_state, "n_jobs": 1}
        return RandomForestRegressor(**{**base, **params})
    if name == "svm":
        return TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), SVR(**{"kernel": "rbf", "C": 1.0, "epsilon": 0.1, **params})),
            transformer=StandardScaler(),
        )
    if name == "svm-nystroem":
        from sklearn.kernel_approximation import Nystroem
        from sklearn.svm import LinearSVR

        ny = {k: params.pop(k) for k in ("n_components", "gamma") if k in params}
        return TransformedTargetRegressor(
            regressor=make_pipeline(
                StandardScaler(),
                Nystroem(**{"kernel": "rbf", "n_components": 100, "random_state": random_state, **ny}),
                LinearSVR(**{"C": 1.0, "epsilon": 0.1, "max_iter": 10_000, "random_state": random_state, **params}),
            ),
            transformer=StandardScaler(),
        )
    raise ArgumentError(f"learner must be one of {LEARNERS} or a scikit-learn regressor, got {name!r}")


def _splits(n: int, n_folds: int, groups: np.ndarray | None, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """One K-fold partition: rows (or whole groups) permuted, then cut into near-equal folds."""
    if groups is None:
        perm = rng.permutation(n)
        fold = np.empty(n, dtype=np.int64)
        fold[perm] = np.arange(n) % n_folds
    else:
        G = int(groups.max()) + 1
        gperm = rng.permutation(G)
        gfold = np.empty(G, dtype=np.int64)
        gfold[gperm] = np.arange(G) % n_folds
        fold = gfold[groups]
    idx = np.arange(n)
    return [(idx[fold != f], idx[fold == f]) for f in range(n_folds)]


def _crossfit(rep: int, *, X, y, d, splits, ml_l, ml_m, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import config_context
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    l_hat = np.empty_like(y)
    m_hat = np.empty_like(d)
    # each fit is independent, on a clone with a fixed random_state, and writes its own
    # held-out rows: the same numbers in any order or on any thread
    fits = [(ml, target, out, train, test) for train, test in splits[rep]
            for ml, target, out in ((ml_l, y, l_hat), (ml_m, d, m_hat))]

    def one(fit: tuple) -> None:
        ml, target, out, train, test = fit
        # the rows were checked finite before any fit: scikit-learn's per-call finiteness and
        # parameter checks (thousands in LassoCV's path) change no number, only the time; the
        # configuration is per thread, so it is set here, in the thread that fits
        with config_context(assume_finite=True, skip_parameter_validation=True):
            out[test] = clone(ml).fit(X[train], target[train]).predict(X[test])

    # One BLAS thread: the nuisance fits are small, multi-threaded BLAS only
    # thrashes on a busy machine, and a fixed thread count keeps the sums (and
    # so the results) identical for any n_jobs / threads. Parallelism is across
    # splits (processes) and across the fits of a split (threads: scikit-learn's
    # tree, liblinear and coordinate-descent solvers release the GIL).
    with threadpool_limits(limits=1, user_api="blas"):
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(fits))) as pool:
                list(pool.map(one, fits))  # list(): re-raises a fit's exception here
        else:
            for fit in fits:
                one(fit)
    return l_hat, m_hat


@dataclass(eq=False, repr=False)
class DmlResult(Result):
    """Partially linear DML estimate.

    Attributes
    ----------
    coef, se : float
        Aggregated estimate and standard error.
    all_coef, all_se : ndarray
        Per-split (repetition) estimates and standard errors.
    splits : list
        ``splits[r]`` is the list of ``(train, test)`` row-index pairs of
        repetition ``r`` (positions in the estimation sample), the format of
        ``doubleml``'s ``set_sample_splitting``.
    rmse_l, rmse_m : ndarray
        Out-of-fold RMSE of the outcome and treatment learners, per split.
    rows : ndarray
        Positions of the estimation sample's rows in the input frame.
    estimator : scikit-learn regressor
        The (unfitted) learner used for both nuisance functions.
    """

    coef: float
    se: float
    all_coef: np.ndarray
    all_se: np.ndarray
    splits: list[list[tuple[np.ndarray, np.ndarray]]]
    rmse_l: np.ndarray
    rmse_m: np.ndarray
    rows: np.ndarray
    estimator: Any
    treat: str
    learner: str
    n_folds: int
    n_rep: int
    nobs: int
    within: bool

    @property
    def tstat(self) -> float:
        """coef / se."""
        return self.coef / self.se

    @property
    def pvalue(self) -> float:
        """Two-sided normal p-value."""
        return float(2 * special.ndtr(-abs(self.tstat)))  # = scipy.stats' 2 norm.sf(|t|)

    def confint(self, level: float = 0.95) -> tuple[float, float]:
        """Normal confidence interval."""
        q = special.ndtri(0.5 + check_level(level) / 2)  # = scipy.stats' norm.ppf
        return self.coef - q * self.se, self.coef + q * self.se

    def tidy(self, level: float = 0.95) -> pl.DataFrame:
        """One row: ``term, estimate, se, tstat, pvalue, ci_low, ci_high, learner, nobs``."""
        lo, hi = self.confint(level)
        return pl.DataFrame(
            {
                "term": [self.treat], "estimate": [self.coef], "se": [self.se], "tstat": [self.tstat],
                "pvalue": [self.pvalue], "ci_low": [lo], "ci_high": [hi], "learner": [self.learner],
                "nobs": [self.nobs],
            }
        )

    def summary(self) -> str:
        """A printable report."""
        lo, hi = self.confint()
        return "\n".join(
            [
                f"DML partially linear model, learner {self.learner}, {self.n_folds}-fold cross-fitting, "
                f"{self.n_rep} split(s){' (median aggregation)' if self.n_rep > 1 else ''}",
                f"Observations: {self.nobs:,}"
                + ("   y, d, X within-transformed (unit + time FE)" if self.within else ""),
                f"{'term':<12}{'estimate':>12}{'se':>12}{'z':>9}{'p':>9}{'95% CI':>24}",
                f"{self.treat[:12]:<12}{self.coef:>12.5f}{self.se:>12.5f}{self.tstat:>9.2f}{self.pvalue:>9.4f}"
                f"   [{lo:.5f}, {hi:.5f}]",
                f"out-of-fold RMSE: l(X) {np.mean(self.rmse_l):.4g}, m(X) {np.mean(self.rmse_m):.4g}",
            ]
        )


def check_residual_variance(v_var: float, d_var: float, treat: str, rep: int) -> None:
    """Refuse a treatment residual of zero variance, warn when it is a tiny share of the treatment's.

    ``v_var`` is the mean square of the out-of-fold treatment residual of split
    ``rep``, ``d_var`` the treatment's variance on the same rows. The estimate
    divides by ``v_var``: at zero it is undefined, near zero it is noise.
    """
    if not v_var > 0:
        raise TreatmentError(
            f"the covariates predict the treatment {treat!r} exactly (its out-of-fold residual variance is 0 in "
            f"split {rep}): the effect is not identified; drop covariates that determine the treatment"
        )
    if v_var < RESIDUAL_VARIANCE_SHARE * d_var:
        warnings.warn(
            f"near-zero residual variance of the treatment {treat!r}: the covariates predict it almost perfectly "
            f"(out-of-fold residual variance {v_var:.3g} is {v_var / d_var:.2g} of its variance {d_var:.3g} in "
            f"split {rep}), so the estimate rests on a tiny residual and is unreliable",
            ResidualVarianceWarning, stacklevel=3,
        )


def dml(
    data: Any,
    *,
    y: str,
    treat: str,
    covariates: Sequence[str],
    unit: str | None = None,
    time: str | None = None,
    learner: Learner | Any = "lasso",
    learner_params: dict[str, Any] | None = None,
    n_folds: int = 5,
    n_rep: int = 1,
    fold_by: Literal["row", "unit"] = "row",
    seed: SeedLike = 0,
    n_jobs: int | None = 1,
    threads: int = 1,
) -> DmlResult:
    """Partially linear double/debiased machine learning (DML2, partialling out).

    Parameters
    ----------
    data : polars or pandas DataFrame
    y, treat : str
        Outcome and treatment (any numeric treatment).
    covariates : sequence of str
        The X of the nuisance functions.
    unit, time : str, optional
        Within-transform y, d and X by these FEs first (one or both).
    learner : {"lasso", "ridge", "rf", "svm"} or scikit-learn regressor
        Used for both nuisance functions (see :func:`make_learner`).
    learner_params : dict, optional
        Overrides of a named learner's parameters.
    n_folds, n_rep : int
        Cross-fitting folds and repeated sample splits.
    fold_by : {"row", "unit"}
        Assign rows, or whole units (``unit`` required), to folds; with
        ``"unit"`` there must be at least ``n_folds`` units.
    seed : int, Generator, SeedSequence or None
        Split ``r`` is drawn from ``block_generator(seed, r + 1)``; the random
        forest's ``random_state`` from block 0.
    n_jobs : int
        Repetitions run in parallel (results identical for any value).
    threads : int
        The ``2 * n_folds`` nuisance fits of a repetition run on up to this
        many threads for the learners ``"lasso"``, ``"ridge"`` and ``"rf"``
        (results identical for any value; pass the cores that are free: on a
        busy machine more threads only wait). The SVM learners run one fit at a
        time whatever the value: liblinear and libsvm draw from the C library's
        process-wide random generator, so concurrent fits would change each
        other's numbers; so does a scikit-learn object passed as ``learner``
        (its thread safety is unknown).

    Returns
    -------
    DmlResult

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install "staggerlab[ml]"``).
    ArgumentError
        ``fold_by="unit"`` with fewer units than ``n_folds``.
    TreatmentError
        The covariates predict the treatment exactly (zero residual variance).

    Warns
    -----
    ResidualVarianceWarning
        The treatment's out-of-fold residual variance is below
        ``RESIDUAL_VARIANCE_SHARE`` (1e-4) times its variance in some split.
    """
    _require_sklearn()
    covariates = list(covariates)
    if not covariates:
        raise ArgumentTypeError("give at least one covariate")
    if not (isinstance(n_folds, (int, np.integer)) and n_folds >= 2):
        raise ArgumentError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if not (isinstance(n_rep, (int, np.integer)) and n_rep >= 1):
        raise ArgumentError(f"n_rep must be a positive integer, got {n_rep!r}")
    if not (isinstance(threads, (int, np.integer)) and threads >= 1):
        raise ArgumentError(f"threads must be a positive integer, got {threads!r}")
    if fold_by not in ("row", "unit"):
        raise ArgumentError(f"fold_by must be 'row' or 'unit', got {fold_by!r}")
    if fold_by == "unit" and unit is None:
        raise ArgumentTypeError("fold_by='unit' needs unit=")
    frame = to_polars(data)
    fes = [c for c in (unit, time) if c is not None]
    check_columns(frame, [y, treat, *covariates, *fes])
    check_numeric(frame, [y, treat, *covariates], "outcome/treatment/covariate")
    used = [y, treat, *covariates, *fes]
    ok = finite_mask(frame, used)
    rows = np.flatnonzero(ok)
    if rows.size < frame.height:
        warnings.warn(
            f"dropped {frame.height - rows.size} of {frame.height} row(s) with a missing or non-finite value in "
            f"{column_list(missing_columns(frame, used, ~ok))}",
            MissingValueWarning, stacklevel=2,
        )
    sub = frame[rows]
    Y = sub[y].cast(pl.Float64).to_numpy()
    D = sub[treat].cast(pl.Float64).to_numpy()
    X = sub.select(pl.col(c).cast(pl.Float64) for c in covariates).to_numpy()
    d_scale = max(1.0, float(np.max(np.abs(D), initial=0.0)))
    codes = [factorize(sub[c])[0] for c in fes]
    if codes:
        keep = drop_singletons(codes)
        if not keep.all():
            warnings.warn(
                f"dropped {int((~keep).sum())} singleton observation(s) before the within transformation",
                SingletonWarning, stacklevel=2,
            )
            rows, Y, D, X = rows[keep], Y[keep], D[keep], X[keep]
            codes = [c[keep] for c in codes]
        M = Absorber(codes).demean(np.column_stack([Y, D, X]))
        Y, D, X = M[:, 0].copy(), M[:, 1].copy(), np.ascontiguousarray(M[:, 2:])
    n = Y.size
    if n < 2 * n_folds:
        raise PanelError(f"{n} usable row(s) are too few for {n_folds}-fold cross-fitting")
    groups = None
    if fold_by == "unit":
        # units left after dropping rows, coded 0..G-1 so that no fold is empty
        _, groups = np.unique(codes[0], return_inverse=True)
        n_units = int(groups.max()) + 1
        if n_units < n_folds:
            raise ArgumentError(
                f"fold_by='unit' puts whole units of {unit!r} in folds, and the estimation sample has "
                f"{n_units} unit(s) for n_folds={n_folds}; use n_folds <= {n_units} (or fold_by='row')"
            )
    if not np.max(np.abs(D - D.mean())) > 1e-10 * d_scale:
        raise PanelError(f"the treatment {treat!r} has no variation left after the within transformation")
    rs = int(block_generator(seed, 0).integers(0, 2**31 - 1))
    if isinstance(learner, str):
        ml = make_learner(learner, random_state=rs, **(learner_params or {}))
        label = learner
    else:
        from sklearn.base import clone

        ml = clone(learner).set_params(**(learner_params or {}))
        label = type(learner).__name__
    splits = [_splits(n, int(n_folds), groups, block_generator(seed, r + 1)) for r in range(int(n_rep))]
    preds = run_blocks(
        partial(_crossfit, X=X, y=Y, d=D, splits=splits, ml_l=ml, ml_m=ml,
                threads=int(threads) if label in THREAD_SAFE_LEARNERS else 1),
        list(range(int(n_rep))), n_jobs=n_jobs, desc="DML splits",
    )
    all_coef = np.empty(n_rep)
    all_se = np.empty(n_rep)
    rmse_l = np.empty(n_rep)
    rmse_m = np.empty(n_rep)
    v_var = [float(np.mean((D - m_hat) ** 2)) for _, m_hat in preds]
    worst = int(np.argmin(v_var))  # one message for the split closest to a perfect prediction
    check_residual_variance(v_var[worst], float(np.mean((D - D.mean()) ** 2)), treat, worst)
    for r, (l_hat, m_hat) in enumerate(preds):
        u = Y - l_hat
        v = D - m_hat
        psi_a = -v * v
        psi_b = v * u
        theta = -np.mean(psi_b) / np.mean(psi_a)
        psi = psi_a * theta + psi_b
        all_coef[r] = theta
        all_se[r] = np.sqrt(np.mean(psi**2) / (n * np.mean(psi_a) ** 2))
        rmse_l[r] = np.sqrt(np.mean(u**2))
        rmse_m[r] = np.sqrt(np.mean(v**2))
    coef = float(np.median(all_coef))
    se = float((np.median(all_coef + _AGG_Z * all_se) - coef) / _AGG_Z)
    return DmlResult(
        coef=coef, se=se, all_coef=all_coef, all_se=all_se, splits=splits, rmse_l=rmse_l, rmse_m=rmse_m,
        rows=rows, estimator=ml, treat=treat, learner=label, n_folds=int(n_folds), n_rep=int(n_rep), nobs=n, within=bool(codes),
    )
