"""Placebo assignments: the sampler that draws blocks of placebo adoption
times under a scheme (units, timing, units+timing), within strata and by
entity (unit or cluster of units)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...kernels import placebo as kp
from .placebo_tuning import PlaceboTuning

__all__ = ["Sampler", "NEVER"]

#: the adoption time of an untreated unit in ``t >= g`` comparisons
NEVER = np.iinfo(np.int64).max


@dataclass(eq=False)
class Sampler:
    """Draws blocks of placebo assignments for a scheme, sparsely.

    Assignment happens on entities (units, or clusters of units), within
    strata of entities; ``ent_U`` maps units to entities. A draw is the list
    of treated entities and the index (into ``gvals``) of each one's adoption
    time; the number treated is the same in every draw, so a slab of draws is
    two ``draws x K`` arrays. Random numbers are drawn slab by slab, with a
    slab size that depends only on K, so a seed means the same draws whatever
    the panel engine or the number of jobs.
    """

    scheme: str
    g_E: np.ndarray
    strata_E: np.ndarray
    ent_U: np.ndarray
    gvals: np.ndarray
    tuning: PlaceboTuning = PlaceboTuning()
    groups: list = field(init=False)
    ent_ptr: np.ndarray = field(init=False)
    ent_units: np.ndarray = field(init=False)
    K: int = field(init=False)
    slab: int = field(init=False)

    def __post_init__(self) -> None:
        n_ent = self.g_E.size
        self.ent_units = np.argsort(self.ent_U, kind="stable").astype(np.int64)
        self.ent_ptr = np.zeros(n_ent + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.ent_U, minlength=n_ent), out=self.ent_ptr[1:])
        l_E = np.searchsorted(self.gvals, self.g_E).astype(np.int64)
        self.groups = []
        for s in np.unique(self.strata_E):
            idx = np.flatnonzero(self.strata_E == s)
            tr = idx[self.g_E[idx] != 0]
            if tr.size:
                self.groups.append((idx, tr, l_E[tr]))
        self.K = sum(tr.size for _, tr, _ in self.groups)
        self.slab = max(1, self.tuning.sampler_slab // max(1, self.K))

    @property
    def n_units(self) -> int:
        return self.ent_U.size

    def units_per_draw(self) -> float:
        """Expected number of treated units in a draw."""
        size = np.diff(self.ent_ptr).astype(float)
        return float(sum(tr.size * size[idx].mean() for idx, tr, _ in self.groups))

    def slabs(self, rng: np.random.Generator, size: int):
        """Yield ``(start, pick_BK, l_BK)`` for the ``size`` draws of a block."""
        for a in range(0, size, self.slab):
            s = min(self.slab, size - a)
            picks, ls = [], []
            for idx, tr, ltr in self.groups:
                k = tr.size
                if self.scheme == "timing":
                    # the treated keep their place; their adoption times are permuted
                    pos = kp.partial_shuffle(rng.random((s, k)), k)
                    picks.append(np.broadcast_to(tr, (s, k)))
                    ls.append(ltr[pos])
                    continue
                picks.append(idx[kp.partial_shuffle(rng.random((s, k)), idx.size)])
                if self.scheme == "units":
                    # a uniformly ordered sample given the times in a fixed
                    # order is a uniform permutation of the times over units
                    ls.append(np.broadcast_to(ltr, (s, k)))
                else:  # units+timing
                    ls.append(ltr[rng.integers(0, k, size=(s, k))])
            if not picks:
                picks = ls = [np.zeros((s, 0), dtype=np.int64)]
            pick = picks[0] if len(picks) == 1 else np.hstack(picks)
            lidx = ls[0] if len(ls) == 1 else np.hstack(ls)
            yield a, np.ascontiguousarray(pick), np.ascontiguousarray(lidx)

    def dense(self, pick: np.ndarray, lidx: np.ndarray) -> np.ndarray:
        """``draws x units`` int64 adoption times (0 = untreated)."""
        return kp.adoption_times(pick, lidx, self.ent_ptr, self.ent_units, self.gvals, self.n_units)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """The dense adoption times of a block of ``size`` draws."""
        return np.vstack([self.dense(p, l) for _, p, l in self.slabs(rng, size)])
