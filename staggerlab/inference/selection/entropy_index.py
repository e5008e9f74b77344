"""Entropy-weight (entropy value) method for composite indices.

The study's main outcome is such an index: several indicators are min-max
normalised with their direction, each indicator's Shannon entropy across
observations measures how little it discriminates between them, and the
weights are the normalised redundancies ``1 - entropy``.

The variant computed here, step by step for indicator ``j`` over the ``n``
rows of a group:

1. ``z_ij = (x_ij - min_j) / (max_j - min_j)`` for a benefit indicator
   (direction ``+1``), ``z_ij = (max_j - x_ij) / (max_j - min_j)`` for a cost
   indicator (``-1``); ``z`` lies in [0, 1].
2. ``p_ij = (z_ij + shift) / sum_i (z_ij + shift)`` (``shift = 0`` by default;
   many applied papers use ``shift = 1e-4`` to avoid ``log 0``).
3. ``e_j = -k sum_i p_ij ln p_ij`` with ``k = 1 / ln n`` and the convention
   ``0 ln 0 = 0``.
4. ``d_j = 1 - e_j``; ``w_j = d_j / sum_l d_l``.
5. ``index_i = sum_j w_j z_ij`` (the unshifted normalised values, so the index
   lies in [0, 1]).

A column that is constant within a group carries no information: its ``z`` is
set to 0, its entropy to 1 and so its weight to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from ...errors import ArgumentError, ArgumentTypeError, EntropyIndexError, MissingValueError, PanelError
from ...panels.panel import check_columns, check_numeric, column_list, finite_mask, missing_columns, to_polars
from ..results import Result

__all__ = ["entropy_index", "EntropyIndexResult", "entropy_weights", "EntropyIndexError"]


def entropy_weights(X: np.ndarray, directions: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray, ...]:
    """Entropy weights of the columns of ``X`` (n x m, no missing values).

    Returns ``(z, entropy, redundancy, weights)``: the normalised n x m matrix
    and three m-vectors (see the module docstring for the formulas).
    """
    n, m = X.shape
    if n < 2:
        raise EntropyIndexError(f"the entropy-weight method needs at least 2 rows per group, got {n}")
    lo = X.min(axis=0)
    hi = X.max(axis=0)
    span = hi - lo
    const = span <= 0
    safe = np.where(const, 1.0, span)
    z = np.where(directions > 0, (X - lo) / safe, (hi - X) / safe)
    z[:, const] = 0.0
    zs = z + shift
    tot = zs.sum(axis=0)
    entropy = np.ones(m)
    ok = ~const & (tot > 0)
    p = zs[:, ok] / tot[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy[ok] = -plogp.sum(axis=0) / np.log(n)
    redundancy = 1.0 - entropy
    total = redundancy.sum()
    if not total > 0:
        raise EntropyIndexError(
            "every indicator is constant (zero redundancy in all columns); the weights are undefined"
        )
    return z, entropy, redundancy, redundancy / total


@dataclass(eq=False, repr=False)
class EntropyIndexResult(Result):
    """Composite index and its entropy weights.

    Attributes
    ----------
    index : polars.Series
        The index, one value per row of the input (input order).
    weights : polars.DataFrame
        ``[by...,] column, direction, entropy, redundancy, weight``.
    normalised : polars.DataFrame
        The min-max normalised indicators ``z`` (input order).
    shift : float
    """

    index: pl.Series
    weights: pl.DataFrame
    normalised: pl.DataFrame
    columns: list[str]
    by: list[str]
    shift: float

    def tidy(self) -> pl.DataFrame:
        """The weights table (one row per indicator and group)."""
        return self.weights

    def summary(self) -> str:
        """Weights by indicator (averaged over groups when ``by`` is set) and index moments."""
        w = self.weights
        if self.by:
            w = w.group_by("column", maintain_order=True).agg(
                pl.col("direction").first(), pl.col("entropy").mean(), pl.col("redundancy").mean(),
                pl.col("weight").mean(),
            )
        lines = [
            f"Entropy-weight index of {len(self.columns)} indicator(s)"
            + (f", computed within {' x '.join(self.by)} ({self.weights.height // len(self.columns)} groups; "
               "group means shown)" if self.by else ""),
            f"normalisation: min-max with direction, shift={self.shift:g}, 0 ln 0 = 0",
            "",
            f"{'column':<20}{'dir':>5}{'entropy':>11}{'redund.':>11}{'weight':>10}",
        ]
        for r in w.iter_rows(named=True):
            lines.append(
                f"{r['column'][:20]:<20}{r['direction']:>5d}{r['entropy']:>11.5f}{r['redundancy']:>11.5f}"
                f"{r['weight']:>10.5f}"
            )
        ix = self.index
        lines += ["", f"index: N={ix.len():,} mean={ix.mean():.4f} sd={ix.std():.4f} "
                  f"min={ix.min():.4f} max={ix.max():.4f}"]
        return "\n".join(lines)


def entropy_index(
    df: Any,
    columns: Sequence[str],
    directions: Sequence[int] | Mapping[str, int] | None = None,
    by: str | Sequence[str] | None = None,
    *,
    shift: float = 0.0,
    name: str = "index",
) -> EntropyIndexResult:
    """Entropy-weight composite index of ``columns``.

    Parameters
    ----------
    df : polars or pandas DataFrame
    columns : sequence of str
        Numeric indicator columns.
    directions : sequence of {+1, -1} or mapping column -> {+1, -1}, optional
        ``+1`` benefit indicator (more is better), ``-1`` cost indicator.
        Default: all ``+1``.
    by : str or sequence of str, optional
        Compute the normalisation, weights and index within each group (e.g.
        per year).
    shift : float
        Added to the normalised values before the proportions (0 by default,
        with ``0 ln 0 = 0``); the index itself uses the unshifted values.
    name : str
        Name of the returned index series.

    Returns
    -------
    EntropyIndexResult
        ``.index`` (aligned with the input rows), ``.weights``, ``.tidy()``,
        ``.summary()``.

    Raises
    ------
    MissingValueError
        If a used column has a missing or non-finite value (nothing is dropped).
    EntropyIndexError
        If a group has fewer than 2 rows or every indicator is constant in it.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"a": [1.0, 2.0, 4.0], "b": [3.0, 1.0, 2.0]})
    >>> res = entropy_index(df, ["a", "b"], [1, -1])
    >>> round(float(res.weights["weight"].sum()), 12)
    1.0
    """
    frame = to_polars(df)
    columns = list(columns)
    if not columns:
        raise ArgumentTypeError("give at least one indicator column")
    twice = [c for c in dict.fromkeys(columns) if columns.count(c) > 1]
    if twice:
        raise ArgumentError(f"indicator column(s) {column_list(twice)} listed more than once")
    by_cols = list(dict.fromkeys([by] if isinstance(by, str) else list(by or [])))
    check_columns(frame, [*columns, *by_cols])
    check_numeric(frame, columns, "indicator")
    if directions is None:
        dirs = np.ones(len(columns))
    elif isinstance(directions, Mapping):
        missing = [c for c in columns if c not in directions]
        if missing:
            raise ArgumentTypeError(f"directions has no entry for {missing}")
        dirs = np.array([directions[c] for c in columns], dtype=float)
    else:
        dirs = np.asarray(list(directions), dtype=float)
        if dirs.size != len(columns):
            raise ArgumentTypeError(f"{len(columns)} column(s) but {dirs.size} direction(s)")
    if not np.all(np.isin(dirs, (1.0, -1.0))):
        raise ArgumentError(f"directions must be +1 (benefit) or -1 (cost), got {dirs.tolist()}")
    if not (np.isfinite(shift) and shift >= 0):
        raise ArgumentError(f"shift must be a finite number >= 0, got {shift}")
    ok = finite_mask(frame, [*columns, *by_cols])
    if not ok.all():
        raise MissingValueError(
            f"{int((~ok).sum())} row(s) have a missing or non-finite value in "
            f"{column_list(missing_columns(frame, [*columns, *by_cols], ~ok))}; "
            "drop or impute them first (the index's normalisation depends on every row)"
        )
    X = frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
    n = frame.height
    if by_cols:
        gid = frame.select(pl.struct(by_cols).rank("dense")).to_series().to_numpy().astype(np.int64) - 1
        # the group values from each group's first row, in group order (no helper column beside the user's)
        keys = frame.select(by_cols)[np.unique(gid, return_index=True)[1]]
    else:
        gid = np.zeros(n, dtype=np.int64)
        keys = None
    if n == 0:
        raise PanelError("the frame is empty")
    index = np.empty(n)
    Z = np.empty_like(X)
    rows = []
    for g in range(int(gid.max()) + 1):
        sel = np.flatnonzero(gid == g)
        try:
            z, e, d, w = entropy_weights(X[sel], dirs, shift)
        except EntropyIndexError as err:
            where = "" if keys is None else f" in group {keys.row(g, named=True)}"
            raise EntropyIndexError(f"{err}{where}") from None
        Z[sel] = z
        index[sel] = z @ w
        part = pl.DataFrame(
            {"column": columns, "direction": dirs.astype(np.int64), "entropy": e, "redundancy": d, "weight": w}
        )
        if keys is not None:
            part = pl.concat([keys[g].select(pl.all().repeat_by(len(columns)).explode()), part],
                             how="horizontal")
        rows.append(part)
    return EntropyIndexResult(
        index=pl.Series(name, index),
        weights=pl.concat(rows),
        normalised=pl.DataFrame({c: Z[:, j] for j, c in enumerate(columns)}),
        columns=columns,
        by=by_cols,
        shift=float(shift),
    )
