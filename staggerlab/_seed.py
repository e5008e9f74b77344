"""The one seeding convention: ``seed`` may be an int, a Generator, a
SeedSequence or None, and random work is split into fixed-size blocks that
each get a child SeedSequence by block index (never by worker), so results do
not depend on how blocks are spread over workers."""

from __future__ import annotations

import numpy as np

from .errors import ArgumentTypeError

__all__ = ["SeedLike", "as_seedsequence", "as_generator", "block_seed", "block_generator", "resolve_entropy"]

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def as_seedsequence(seed: SeedLike) -> np.random.SeedSequence:
    """Resolve ``seed`` to a SeedSequence (a Generator is consumed for entropy)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(0, 2**63 - 1)))
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.SeedSequence(None if seed is None else int(seed))
    raise ArgumentTypeError(f"seed must be an int, numpy Generator, SeedSequence or None, got {type(seed).__name__}")


def as_generator(seed: SeedLike) -> np.random.Generator:
    """A numpy Generator for ``seed`` (returned as is if it already is one)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(as_seedsequence(seed))


def block_seed(seed: SeedLike, index: int) -> np.random.SeedSequence:
    """The child SeedSequence of block ``index``: a pure function of (seed, index).

    Unlike ``SeedSequence.spawn`` it does not advance any state, so the same
    block gets the same stream whichever worker or order computes it.
    """
    ss = as_seedsequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, int(index)))


def block_generator(seed: SeedLike, index: int) -> np.random.Generator:
    """A Generator for block ``index`` (see :func:`block_seed`)."""
    return np.random.default_rng(block_seed(seed, index))


def resolve_entropy(seed: SeedLike) -> np.random.SeedSequence:
    """Fix a seed once (a None or Generator seed becomes a concrete SeedSequence)."""
    return as_seedsequence(seed)
