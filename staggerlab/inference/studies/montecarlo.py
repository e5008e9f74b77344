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

import os
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl
from joblib import parallel_config

from ..._parallel import run_blocks
from ..._seed import SeedLike, resolve_entropy
from ..._validate import alpha_of
from ...errors import CheckpointResumedWarning, MonteCarloError
from ...panels.dgp import DGP
from ..results import Result
from .checkpoint import fingerprint, open_checkpoint
from .estimators import BUILTIN_ESTIMATORS, Estimator, as_estimators, fast_twfe
from .replications import SCHEMA, Block, run_block

__all__ = ["montecarlo", "MonteCarloResult", "Estimator", "MonteCarloError", "BUILTIN_ESTIMATORS", "fast_twfe"]


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
        ``"imputation"``, ``"cs"``, ``"lpdid"`` (variance-weighted),
        ``"lpdid_rw"`` (reweighted), ``"stacked"`` (corrective weights),
        ``"etwfe"`` (each the ``aggregate("simple")`` of
        ``staggerlab.inference.did.event_study`` with its default window
        (-5, 5), stacked DiD with the window (-2, 3): for LP-DiD the pooled
        estimate over horizons 0..5, for stacked DiD the mean effect over
        event times 0..3 of the trimmed stack, so
        their estimands differ from the simple ATT when effects are
        heterogeneous), ``"twfe+wildboot"``,
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
    ests = as_estimators(estimators)
    ss = resolve_entropy(seed)
    path = Path(checkpoint) if checkpoint is not None else None
    done: set[str] = set()
    if path is not None:
        if seed is None or isinstance(seed, np.random.Generator):
            raise MonteCarloError("a checkpointed study needs a reproducible seed (an int or SeedSequence)")
        done = open_checkpoint(path, fingerprint(dgps, ests, ss, reps, alpha))
    blocks = [
        Block(k, name, d, tuple(ests), ss, (lo, min(lo + block_size, reps)), alpha, level, on_error,
               None if path is None else str(path))
        for k, (name, d) in enumerate(dgps)
        for lo in range(0, reps, block_size)
    ]
    todo = [b for b in blocks if b.filename not in done]
    if path is not None and len(todo) < len(blocks):
        warnings.warn(f"resuming the Monte Carlo study in {str(path)!r}: found {len(blocks) - len(todo)} of "
                      f"{len(blocks)} finished block(s); running the other {len(todo)}", CheckpointResumedWarning,
                      stacklevel=2)
    # A named backend goes through parallel_config, which registers joblib's
    # lazily loaded backends (dask): joblib 1.6 cannot build its dask backend
    # from Parallel(backend="dask") directly.
    try:
        with parallel_config(backend=backend, n_jobs=n_jobs) if backend is not None else nullcontext():
            results = run_blocks(run_block, todo, n_jobs=n_jobs, desc="montecarlo",
                                 show_progress=show_progress) if todo else []
    except KeyboardInterrupt:
        if path is None:
            raise KeyboardInterrupt("Monte Carlo study interrupted; nothing was kept: pass checkpoint=PATH to make "
                                    "a study resumable") from None
        saved = len(list(path.glob("block-*.parquet")))
        raise KeyboardInterrupt(
            f"Monte Carlo study interrupted: {saved} of {len(blocks)} block(s) are saved in {str(path)!r}; call "
            "montecarlo() again with the same arguments to resume"
        ) from None
    fresh = dict(zip((b.filename for b in todo), results))
    parts = [fresh[b.filename] if b.filename in fresh else pl.read_parquet(path / b.filename) for b in blocks]
    reps_df = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=SCHEMA)
    targets = {e.name: str(e.target) for e in ests}
    return MonteCarloResult(reps_df, level=level, dgps=[n for n, _ in dgps],
                            estimators=[e.name for e in ests], targets=targets)
