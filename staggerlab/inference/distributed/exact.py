"""The bit-identical route of ``placebo`` and ``wildboot`` on a partitioned fit.

The in-memory engines' statistics are not a function of per-unit tables
alone: they partial out the fit's two-way demeaned controls, whose bits come
from sums over all rows in the demeaning kernel's chunk order, and they add
units in their kernels' chunk order. No grouping of per-partition sums
reproduces those bits. What does is running the same code on the same
arrays, so below a client memory budget the partitioned procedures gather
the fit's columns (the partitions' rows as read, before validation) to the
client, sort them by unit and period, fit them in memory and run the
in-memory procedure: the result is bit-identical to ``feols`` + ``placebo`` /
``wildboot`` of the same rows sorted by unit and period, whatever the
partitioning and the row order in the files. (The in-memory statistics
themselves change in the last bits with the order of the rows: the
canonical order is what makes the comparison well defined.)

Gathering rows rather than per-unit tables is also the cheaper exchange:
a unit's placebo tables hold ``L (M + 2) + M (M + 3) / 2`` doubles
(``L`` adoption times, ``M = T - 1 + K``: 341 at ``T = 10``, ``K = 8``,
``L = 9``), its rows ``T c`` values (``c`` columns read: 120 at ``c = 12``).

Above the budget the partitioned algebra runs instead (equal at about 1e-10
and 1e-15 of the statistics' scale, same p-values), flagged in the result
(``method="partitioned"``, a wild-bootstrap note); ``exact="require"`` refuses
with :class:`~staggerlab.errors.ClientMemoryError` instead.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ...errors import ArgumentError, ClientMemoryError
from .partitions import run_partitions

__all__ = ["EXACT_MODES", "CLIENT_BUDGET", "client_bytes", "rows_bytes", "use_exact", "gather", "in_memory_fit",
           "check_same_fit"]

#: ``auto``: bit-identical below the budget, partitioned algebra above;
#: ``require``: bit-identical or ClientMemoryError; ``never``: partitioned algebra
EXACT_MODES = ("auto", "require", "never")
#: default client memory the bit-identical route may use (bytes)
CLIENT_BUDGET = 2 << 30

#: bytes per row and gathered column of the client's peak: the gathered
#: frame, its sorted copy, the in-memory design (validated, demeaned and
#: Cholesky-ready columns) and the engine's row-level work arrays
#: (measured with benchmarks/bench_dask.py --exact-memory; see docs/cluster.md)
_BYTES_PER_CELL = 40
#: fixed bytes per row (codes, row order, masks, per-row scratch)
_BYTES_PER_ROW = 64


def client_bytes(fit: Any) -> int:
    """The client memory the bit-identical route needs, in bytes.

    ``N (40 c + 64) + 8 U (L (M + 2) + M (M + 3) / 2)``, with ``N`` rows,
    ``U`` units, ``c`` gathered columns (outcome, regressors, unit, period,
    clusters), ``M = T - 1 + K`` and ``L = T - 1`` (the largest number of
    adoption times): the gathered rows, the in-memory fit and the placebo
    engine's per-unit tables.
    """
    pd_ = fit.design
    c = len(dict.fromkeys([pd_.y, *pd_.xs, pd_.unit, *pd_.ids]))
    T = pd_.periods.size
    M = T - 1 + len(pd_.xs)
    L = max(T - 1, 1)
    return rows_bytes(fit.nobs, c) + 8 * fit.n_units * (L * (M + 2) + M * (M + 3) // 2)


def rows_bytes(nobs: int, n_columns: int) -> int:
    """The client memory of gathering ``nobs`` rows of ``n_columns`` columns and fitting
    them in memory: ``N (40 c + 64)`` bytes (the first term of :func:`client_bytes`)."""
    return int(nobs * (_BYTES_PER_CELL * n_columns + _BYTES_PER_ROW))


def use_exact(fit: Any, what: str) -> bool:
    """Whether ``what`` (``"placebo"``, ``"wildboot"``) takes the bit-identical route.

    Raises
    ------
    ClientMemoryError
        ``exact="require"`` and :func:`client_bytes` exceeds the fit's
        ``client_budget``.
    """
    mode, budget = fit.exact, fit.client_budget
    if mode not in EXACT_MODES:
        raise ArgumentError(f"exact must be one of {EXACT_MODES}, got {mode!r}")
    if mode == "never":
        return False
    need = client_bytes(fit)
    if need <= budget:
        return True
    if mode == "require":
        raise ClientMemoryError(
            f"the bit-identical {what} gathers the panel's {fit.nobs:,} rows to the client: about "
            f"{need / 2**30:.2f} GiB, above client_budget={budget / 2**30:.2f} GiB; raise it with "
            "fit.with_exact(client_budget=...), or use fit.with_exact('auto') for the partitioned algebra "
            "(equal to about 1e-10, not bit-identical)")
    return False


def _columns(pdf: Any, cols: list[str]) -> pl.DataFrame:
    frame = pdf if isinstance(pdf, pl.DataFrame) else pl.from_pandas(pdf)
    return frame.select(cols)


def gather(fit: Any) -> pl.DataFrame:
    """The fit's columns of every partition, as read, sorted by unit then period
    (stable: rows of one unit and period keep their partition order)."""
    pd_ = fit.design
    cols = list(dict.fromkeys([pd_.y, *pd_.xs, pd_.unit, *pd_.ids]))
    frames = [f for f in run_partitions(fit.ddf, _columns, cols) if f.height]
    return pl.concat(frames).sort([pd_.unit, pd_.period], maintain_order=True)


def in_memory_fit(fit: Any) -> Any:
    """The in-memory ``feols`` of the gathered rows, with the fit's formula,
    variance and row rules (``fixef_rm``, ``na``, ``collin_tol``)."""
    from ..regression.feols import feols

    pd_ = fit.design
    return feols(fit.formula, gather(fit), vcov=fit.vcov_spec, fixef_rm="singleton" if pd_.drop_singletons else "none",
                 na=pd_.na, collin_tol=fit.collin_tol)


def check_same_fit(fit: Any, mem: Any) -> None:
    """The in-memory fit must keep the partitioned fit's coefficients and rows."""
    if list(mem.design.regressors) != list(fit.coefnames) or mem.design.nobs != fit.nobs:
        raise ArgumentError(
            f"the gathered in-memory fit differs from the partitioned one (coefficients {mem.design.regressors} "
            f"vs {fit.coefnames}, {mem.design.nobs} vs {fit.nobs} rows); use fit.with_exact('never')")
