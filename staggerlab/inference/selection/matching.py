"""Nearest-neighbour matching on a scalar score (the propensity score's logit).

Ties in distance go to the pool row with the lower score, then to the lower
pool position; without replacement the treated rows choose in descending
score order (equal scores: the lower position first).
"""

from __future__ import annotations

import numpy as np

__all__ = ["pool_orders", "nn_replace", "nn_noreplace"]


def pool_orders(s_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool positions by ascending and by descending score, equal scores by position.

    Walking up from a treated score in the first order, or down in the
    second, meets the pool rows nearest first with ties in position order.
    """
    asc = np.argsort(s_c, kind="stable")
    desc = np.lexsort((np.arange(s_c.size), -s_c))
    return asc, desc


def nn_replace(s_t: np.ndarray, s_c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest pool rows of every treated score, with replacement.

    Ties in distance go to the lower score, then to the lower pool position.
    In one dimension the k nearest lie among the k nearest at or above the
    treated score and the k nearest below it. Returns (indices into ``s_c``,
    distances), both n_t x k, index -1 / distance inf where the pool has fewer
    than k rows.
    """
    nc = s_c.size
    asc, desc = pool_orders(s_c)
    pos = np.searchsorted(s_c[asc], s_t)  # pool rows at or above the score: asc[pos:]; below: desc[nc - pos:]
    step = np.arange(k)[None, :]
    up, down = pos[:, None] + step, (nc - pos)[:, None] + step
    last = max(nc - 1, 0)
    cand = np.concatenate([desc[np.minimum(down, last)], asc[np.minimum(up, last)]], axis=1) if nc else \
        np.zeros((s_t.size, 2 * k), dtype=np.int64)
    valid = np.concatenate([down < nc, up < nc], axis=1)
    score = s_c[cand] if nc else np.zeros(cand.shape)
    dist = np.where(valid, np.abs(score - s_t[:, None]), np.inf)
    pick = np.lexsort((cand, score, dist))[:, :k]
    dsel = np.take_along_axis(dist, pick, axis=1)
    isel = np.where(np.isfinite(dsel), np.take_along_axis(cand, pick, axis=1), -1)
    return isel, dsel


def nn_noreplace(
    s_t: np.ndarray, s_c: np.ndarray, k: int, caliper: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy k nearest without replacement, treated rows in descending score order.

    The hardest-to-match (highest-score) treated rows choose first (equal
    scores: the earlier row first); ties in distance go to the lower score,
    then to the lower pool position; a pool row outside the caliper is not
    used up. Returns (indices, distances, ran_out) with ``ran_out[i]`` true
    when treated row ``i`` got fewer than k matches because no pool row was
    left.
    """
    nc = s_c.size
    asc, desc = pool_orders(s_c)
    sa = s_c[asc]
    avail = np.ones(nc, dtype=bool)  # by pool position
    isel = np.full((s_t.size, k), -1, dtype=np.int64)
    dsel = np.full((s_t.size, k), np.inf)
    ran_out = np.zeros(s_t.size, dtype=bool)
    n_left = nc
    for i in np.argsort(-s_t, kind="stable"):
        x = s_t[i]
        pos = int(np.searchsorted(sa, x))
        hi, lo = pos, nc - pos  # next candidate above (in asc) and below (in desc)
        for j in range(k):
            if n_left == 0:
                ran_out[i] = True
                break
            while hi < nc and not avail[asc[hi]]:
                hi += 1
            while lo < nc and not avail[desc[lo]]:
                lo += 1
            dh = s_c[asc[hi]] - x if hi < nc else np.inf
            dl = x - s_c[desc[lo]] if lo < nc else np.inf
            if not min(dl, dh) <= caliper:
                break
            c, dist = (desc[lo], dl) if dl <= dh else (asc[hi], dh)  # equal distance: the lower score
            avail[c] = False
            n_left -= 1
            isel[i, j] = c
            dsel[i, j] = dist
    return isel, dsel, ran_out
