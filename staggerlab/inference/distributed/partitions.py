"""Partitioned panels: recognising them, reading their partitions, running
one function per partition through dask, and repartitioning by unit.

A partitioned panel is a ``dask.dataframe.DataFrame`` or a directory of
parquet files (one partition per file). The exact unit + period algebra needs
every unit's rows in one partition: :func:`check_units` refuses a unit found
in two partitions, naming it, and :func:`repartition_by_unit` moves the rows
through dask's own shuffle. dask is imported only when a partitioned panel is
used (``import staggerlab`` does not import it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from ...errors import ArgumentTypeError, MissingValueError, PartitionError

__all__ = ["is_partitioned", "as_dask", "repartition_by_unit", "run_partitions", "assign_workers", "PartitionRows",
           "load_rows", "check_units"]


def is_partitioned(data: Any) -> bool:
    """True for a dask DataFrame or a path to a directory (of parquet files).

    Decided from the type's module, so that dask is not imported to ask.
    """
    if isinstance(data, (str, os.PathLike)):
        return os.path.isdir(data)
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(data, "to_delayed")


def _dd() -> Any:
    try:
        import dask.dataframe as dd
    except ImportError as err:  # pragma: no cover - dask is a dev dependency
        raise ArgumentTypeError(
            'partitioned panels need dask: pip install "staggerlab[dask]"'
        ) from err
    return dd


def as_dask(data: Any, columns: Sequence[str]) -> Any:
    """The dask DataFrame of ``columns`` of a partitioned panel.

    A directory is read with one partition per parquet file (a file is never
    split by row groups, so a file holding whole units stays whole).
    """
    cols = list(dict.fromkeys(columns))
    if isinstance(data, (str, os.PathLike)):
        return _dd().read_parquet(os.fspath(data), columns=cols, split_row_groups=False)
    missing = [c for c in cols if c not in data.columns]
    if missing:
        from ...errors import MissingColumnError

        raise MissingColumnError(f"column(s) {missing} not in the partitioned panel (columns: {list(data.columns)})")
    return data[cols]


def repartition_by_unit(data: Any, unit: str, npartitions: int | None = None) -> Any:
    """Move every unit's rows into one partition, by dask's hash shuffle.

    Parameters
    ----------
    data : dask.dataframe.DataFrame or str
        A dask DataFrame or a directory of parquet files.
    unit : str
        The unit column (the first fixed effect of the formula).
    npartitions : int, optional
        Number of output partitions (default: as many as the input).

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy; write it out with ``.to_parquet(dir)`` to shuffle only once.
    """
    ddf = _dd().read_parquet(os.fspath(data), split_row_groups=False) if isinstance(data, (str, os.PathLike)) else data
    return ddf.shuffle(on=unit, npartitions=npartitions)


def run_partitions(ddf: Any, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """``fn(partition, *args)`` on every partition, results in partition order.

    Runs on dask's current scheduler: a ``dask.distributed.Client`` if one is
    active, the local threaded scheduler otherwise.
    """
    import dask

    parts = ddf.to_delayed()
    call = dask.delayed(fn, pure=True)
    return list(dask.compute(*[call(p, *args) for p in parts]))


def assign_workers(weights: Sequence[int], workers: Sequence[str]) -> list[str]:
    """A worker for every partition: the heaviest partitions first, each onto
    the worker with the least weight so far (ties: the first worker).

    Every worker's total is then at most ``sum(weights) / len(workers) +
    max(weights)`` (a worker receives a partition only while it is the
    lightest, so below the mean).

    Parameters
    ----------
    weights : sequence of int
        A weight per partition (its units: what its placebo tables hold).
    workers : sequence of str
        Worker addresses (non-empty).

    Returns
    -------
    list of str
        The worker of each partition, in partition order.
    """
    load = {w: 0 for w in workers}
    where = [""] * len(weights)
    for p in sorted(range(len(weights)), key=lambda q: (-weights[q], q)):
        w = min(workers, key=lambda a: load[a])
        where[p] = w
        load[w] += weights[p]
    return where


@dataclass
class PartitionRows:
    """The validated rows of one partition: complete cases, singletons dropped.

    ``unit`` are local dense codes into ``unit_ids`` (sorted); ``labels``
    holds the other id columns (period, clusters) as numpy arrays.
    """

    y: np.ndarray
    X: np.ndarray
    unit: np.ndarray
    unit_ids: np.ndarray
    labels: dict[str, np.ndarray]
    n_raw: int
    n_missing: int
    n_single: int
    missing: list[str]

    @property
    def n(self) -> int:
        return self.y.size


def load_rows(pdf: Any, y: str, xs: Sequence[str], unit: str, ids: Sequence[str], drop_singletons: bool,
              na: str) -> PartitionRows:
    """Validate one partition (a pandas or polars frame) as the in-memory design does.

    Rows with a missing or non-finite value in any used column are dropped
    (or refused with ``na="raise"``); then units with a single row, which the
    unit fixed effect fits exactly (their rows carry no information once
    demeaned), when ``drop_singletons``.
    """
    frame = pdf if isinstance(pdf, pl.DataFrame) else pl.from_pandas(pdf)
    n_raw = frame.height
    numeric = [y, *xs]
    vals = {c: frame[c].cast(pl.Float64).to_numpy() for c in dict.fromkeys(numeric)}
    keep = np.ones(n_raw, dtype=bool)
    missing: list[str] = []
    for c in dict.fromkeys([*numeric, unit, *ids]):
        ok = np.isfinite(vals[c]) if c in vals else frame[c].is_not_null().to_numpy()
        if not ok.all():
            missing.append(c)
            keep &= ok
    n_missing = int(n_raw - keep.sum())
    if n_missing and na == "raise":
        raise MissingValueError(
            f"{n_missing} row(s) have a missing or non-finite value in {', '.join(map(repr, missing))}; "
            "clean them or use na='drop'"
        )
    labels = {c: frame[c].to_numpy()[keep] if n_missing else frame[c].to_numpy() for c in dict.fromkeys([unit, *ids])}
    yv = vals[y][keep]
    X = np.column_stack([vals[c][keep] for c in xs]) if xs else np.empty((yv.size, 0))
    unit_ids, ucode = np.unique(labels[unit], return_inverse=True)
    n_single = 0
    if drop_singletons and yv.size:
        cnt = np.bincount(ucode, minlength=unit_ids.size)
        if (cnt == 1).any():
            ok = cnt[ucode] > 1
            n_single = int((~ok).sum())
            yv, X = yv[ok], X[ok]
            labels = {c: v[ok] for c, v in labels.items()}
            unit_ids, ucode = np.unique(labels[unit], return_inverse=True)
    return PartitionRows(yv, np.ascontiguousarray(X), ucode.astype(np.int64).ravel(), unit_ids, labels, n_raw,
                         n_missing, n_single, missing)


def check_units(unit_ids: Sequence[np.ndarray], unit: str) -> np.ndarray:
    """The sorted global unit ids; raise if a unit lies in two partitions.

    Parameters
    ----------
    unit_ids : sequence of ndarray
        The distinct unit ids of every partition, in partition order.
    unit : str
        The unit column (for the message).

    Returns
    -------
    ndarray
        Every unit id once, sorted.
    """
    allu = np.concatenate(unit_ids) if unit_ids else np.empty(0)
    ids, counts = np.unique(allu, return_counts=True)
    if (counts > 1).any():
        bad = ids[np.flatnonzero(counts > 1)[0]]
        bad = bad.item() if isinstance(bad, np.generic) else bad  # the user's label, not numpy's repr
        where = [i for i, u in enumerate(unit_ids) if np.isin(bad, u)]
        raise PartitionError(
            f"unit {bad!r} (column {unit!r}) has rows in partitions {where}: the exact partitioned fit needs every "
            f"unit's rows in one partition; repartition first with staggerlab.repartition_by_unit(data, {unit!r})"
        )
    return ids
