"""Parquet checkpointing of a Monte Carlo study: the study's fingerprint,
opening (or validating and resuming) a checkpoint directory, atomic writes
of finished blocks.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ...errors import MonteCarloError
from ...panels.dgp import DGP
from .estimators import Estimator

__all__ = ["atomic_write", "fingerprint", "open_checkpoint"]


def atomic_write(df: pl.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        df.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fingerprint(dgps: list[tuple[str, DGP]], ests: list[Estimator], ss: np.random.SeedSequence,
                 reps: int, alpha: float) -> dict[str, Any]:
    return {
        "dgps": [[n, repr(sorted(d.describe().items()))] for n, d in dgps],
        "estimators": [e.key() for e in ests],
        "seed": [str(ss.entropy), list(map(int, ss.spawn_key))],
        "alpha": alpha,
        "reps": reps,
    }


def open_checkpoint(path: Path, meta: dict[str, Any]) -> set[str]:
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
