"""Memory bounds of the placebo sampler and engines (:class:`PlaceboTuning`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlaceboTuning"]


@dataclass(frozen=True)
class PlaceboTuning:
    """Memory bounds of the placebo engines (every setting gives the same statistics).

    Parameters
    ----------
    gram_ratio : float
        The Gram-matrix meat is used when clusters outnumber the treated units
        of a draw by this factor: a treated cluster costs a P-long dot product
        with a row gathered from memory, an untreated one a share of a
        cache-friendly matrix product (rule of thumb; both strategies are exact).
    sampler_slab : int
        Random numbers (draws x treated entities) per sampler slab.
    level_slab : int
        Entries of the units x draws level matrix of the fast engine (int8).
    table_budget : int
        Bytes of per-unit tables above which the fast engine streams the rows
        instead (10 million rows: ~2 GB of tables).
    stream_levels : int
        Entries of the level matrix of one streaming pass.
    """

    gram_ratio: float = 4.0
    sampler_slab: int = 1 << 20
    level_slab: int = 1 << 24
    table_budget: int = 1 << 30
    stream_levels: int = 1 << 26
