"""Execution of a Monte Carlo study: a block of replications of one DGP
(:class:`Block`), run by :func:`run_block` into rows of ``SCHEMA``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl
from scipy import stats

from ..._seed import block_seed
from ...panels.dgp import DGP
from .checkpoint import atomic_write
from .estimators import Estimator
from .plim import twfe_plim

__all__ = ["SCHEMA", "Block", "run_block"]


SCHEMA = {
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
class Block:
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


def run_block(block: Block) -> pl.DataFrame:
    rows: dict[str, list[Any]] = {k: [] for k in SCHEMA}
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
    df = pl.DataFrame(rows, schema=SCHEMA)
    if block.path is not None:
        atomic_write(df, Path(block.path) / block.filename)
    return df
