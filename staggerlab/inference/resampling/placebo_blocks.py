"""Seeded blocks of placebo draws and their run on one BLAS thread.

Draws come in fixed-size blocks seeded by block index, so results are the same
for any ``n_jobs`` and joblib backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._parallel import SERIAL_BLAS
from ..._seed import block_generator
from ...kernels import placebo as kp
from .placebo_sampler import NEVER, Sampler

__all__ = ["Context", "run_block", "blocks", "SERIAL_BLAS", "BLOCK_SIZE", "GENERAL_SLAB"]

#: draws per seeded block; fixed so that a seed always means the same draws.
BLOCK_SIZE = 250
#: doubles in one N x B slab of placebo columns on the general path (~64 MB).
GENERAL_SLAB = 8_000_000


@dataclass(eq=False)
class Context:
    """Everything a block needs (picklable, so loky workers can run blocks)."""

    seed: np.random.SeedSequence
    scheme: str
    sampler: Sampler | None
    engine: Any
    fast: bool
    unit_N: np.ndarray
    time_N: np.ndarray
    p_iid: float = 0.0

    def iid_rows(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``N x size`` i.i.d. Bernoulli(p) treatment columns, drawn draw by draw."""
        return (rng.random((size, self.unit_N.size)) < self.p_iid).T.astype(np.float64)

    def slab(self, size: int) -> int:
        return max(1, min(size, GENERAL_SLAB // max(1, self.unit_N.size)))


def run_block(ctx: Context, block: tuple[int, int]) -> np.ndarray:
    # a matrix product split over BLAS threads can round differently from a
    # serial one; the kernels parallelize over fixed chunks instead
    with SERIAL_BLAS:
        return _run_block_serial_blas(ctx, block)




def _run_block_serial_blas(ctx: Context, block: tuple[int, int]) -> np.ndarray:
    index, size = block
    rng = block_generator(ctx.seed, index)
    out = np.empty(size)
    if ctx.scheme == "iid":
        step = ctx.slab(size)
        for a in range(0, size, step):
            out[a : a + step] = ctx.engine.compute(np.ascontiguousarray(ctx.iid_rows(rng, min(step, size - a))))
        return out
    if ctx.fast:
        ctx.engine.run(ctx.sampler.slabs(rng, size), out)
        return out
    for a, pick, lidx in ctx.sampler.slabs(rng, size):
        step = ctx.slab(pick.shape[0])
        for c in range(0, pick.shape[0], step):
            A = ctx.sampler.dense(pick[c : c + step], lidx[c : c + step])
            D = kp.placebo_columns(np.where(A == 0, NEVER, A), ctx.unit_N, ctx.time_N)
            out[a + c : a + c + D.shape[1]] = ctx.engine.compute(D)
    return out


def blocks(draws: int) -> list[tuple[int, int]]:
    return [(i, min(BLOCK_SIZE, draws - i * BLOCK_SIZE)) for i in range(-(-draws // BLOCK_SIZE))]
