"""Rambachan & Roth (2023) relative magnitudes ``Delta^RM(Mbar)``: the ARP hybrid test, inverted.

Every post-period change in the parallel-trends violation ``delta`` is at most
``Mbar`` times the largest pre-period change. The set is the union over the
location ``s`` and sign of that largest pre-period change of polyhedra
``{A_s delta <= 0}``; for each, the conditional-least-favourable hybrid test of
Andrews, Roth & Pakes (ARP, ``hybrid_kappa = alpha / 10``) of ``theta = l' tau_post``
uses only the moments that involve post-period coefficients. The confidence set
is the hull of the ``theta`` accepted by at least one polyhedron's test.

How the set is found: the test is evaluated on ``grid_points`` equally spaced
values of ``theta`` centred on the estimate ``l' beta_post``, first over +-20 of
its standard errors, and the range is doubled until both ends reject (so the scan
covers the accepted set however far it is from zero); then each end is solved on
the accept/reject boundary by repeated sub-division of the bracketing grid step
(64 points per round) down to ``1e-6`` standard errors. An expert ``grid=(lo, hi)``
fixes the scanned range instead; an interval that still touches the edge of the
range scanned warns (``HonestGridWarning``).

How the test is computed: the statistic ``eta(y) = min{eta : y_j - X_j d <= sd_j eta}``
is a linear program whose dual feasible set ``{lam >= 0, W' lam = e1}`` (``W = [sd, X]``)
is a bounded polytope, so ``eta(y) = max_v v'y`` over its vertices ``v``. The
vertices are enumerated once per polyhedron (every basis of ``k + 1`` rows), after
which the least-favourable draws, the statistic at every ``theta`` and the
truncation points of the conditional test (ARP's dual characterisation:
``[vlo, vup] = {c : eta(s + b c) = c}``, read off each vertex's line) are matrix
products. Problems with more than 200,000 bases (11 or more post periods) are solved one linear program at a
time with HiGHS instead (slow; the truncation points by bisection).

Differences from the R package: the least-favourable critical value uses
``lf_sims`` (default 10^4) draws from numpy with ``seed`` (R: 1000 draws from R's
generator); R inverts the test on a fixed grid of 1000 points over +-20 standard
errors around zero, which cuts or misses the set when the effect is far from zero.
"""

from __future__ import annotations

import itertools
import warnings
from math import comb
from typing import Literal

import numpy as np
from scipy import optimize, special
from threadpoolctl import threadpool_limits

from ..._seed import SeedLike, as_generator
from ..._validate import alpha_of
from ...errors import ArgumentError, HonestDiDError, HonestDiDWarning, HonestGridWarning

__all__ = ["rm_ci"]

_MAX_VERTEX_SETS = 200_000  # beyond this many bases (11+ post periods), solve the LPs with HiGHS
_VERTEX_CHUNK = 20_000
_DUAL_TOL = 1e-12  # dual weights above -this count as non-negative
_LINE_TOL = 1e-10  # a vertex whose line is this close to parallel to eta(c) = c bounds nothing
_SCAN_HALF_WIDTH = 20.0  # first scan: estimate +- 20 standard errors (HonestDiD's width)
_MAX_DOUBLINGS = 30  # the scan stops growing at 2^30 x 20 standard errors
_REFINE_POINTS = 64
_REFINE_TOL = 1e-6  # endpoints are solved to this many standard errors of l'beta_post


def _rm_constraints(n_pre: int, n_post: int, Mbar: float, s: int, positive: bool) -> np.ndarray:
    """Rows ``A`` (over pre and post coefficients) of ``A delta <= 0`` for Delta^RM at location s."""
    nt = n_pre + n_post
    diff = np.zeros((nt, nt + 1))  # consecutive changes over (pre, 0, post)
    for r in range(nt):
        diff[r, r], diff[r, r + 1] = -1.0, 1.0
    vmax = np.zeros(nt + 1)
    vmax[n_pre + s - 1], vmax[n_pre + s] = -1.0, 1.0  # delta_s - delta_{s-1}
    if not positive:
        vmax = -vmax
    ub = np.vstack([np.tile(vmax, (n_pre, 1)), np.tile(Mbar * vmax, (n_post, 1))])
    A = np.vstack([diff - ub, -diff - ub])
    A = A[(A * A).sum(axis=1) > 1e-10]
    return np.delete(A, n_pre, axis=1)


def _gamma(l_vec: np.ndarray) -> np.ndarray:
    """Invertible matrix whose first row is ``l`` (then unit vectors, as an RREF basis)."""
    n = l_vec.size
    rows = [l_vec]
    for j in range(n):
        if len(rows) == n:
            break
        cand = np.vstack(rows + [np.eye(n)[j]])
        if np.linalg.matrix_rank(cand) == len(rows) + 1:
            rows.append(np.eye(n)[j])
    return np.vstack(rows)


def _dual_vertices(W: np.ndarray) -> np.ndarray | None:
    """Vertices of ``{lam >= 0, W' lam = e1}`` (rows), or None if there are too many bases or none."""
    m, k1 = W.shape
    if comb(m, k1) > _MAX_VERTEX_SETS:
        return None
    scale = 1e-12 * max(1.0, float(np.abs(W).max())) ** k1
    found = []
    bases_iter = itertools.combinations(range(m), k1)
    while True:  # chunks bound the memory of the stacked k1 x k1 systems
        bases = np.array(list(itertools.islice(bases_iter, _VERTEX_CHUNK)), dtype=np.int64)
        if bases.size == 0:
            break
        WS = W[bases]
        ok = np.abs(np.linalg.det(WS)) >= scale
        if not ok.any():
            continue
        lam = np.linalg.inv(WS[ok])[:, 0, :]  # W_S' lam = e1: the first row of inv(W_S)
        feasible = (lam >= -_DUAL_TOL).all(axis=1)
        full = np.zeros((int(feasible.sum()), m))
        np.put_along_axis(full, bases[ok][feasible], np.maximum(lam[feasible], 0.0), axis=1)
        found.append(full)
    if not found or sum(f.shape[0] for f in found) == 0:
        return None
    return np.unique(np.round(np.vstack(found), 14), axis=0)


def _upper_prob(stat: np.ndarray, zlo: np.ndarray, zup: np.ndarray) -> np.ndarray:
    """``P(Z > stat | zlo <= Z <= zup)`` for standard normal ``Z``, in logs on the far tail's side."""
    out = np.empty(stat.shape)
    right, left = zlo >= 0, zup <= 0
    mid = ~right & ~left
    with np.errstate(divide="ignore", invalid="ignore"):
        # upper tail: (Q(stat) - Q(zup)) / (Q(zlo) - Q(zup)) with Q(x) = ndtr(-x)
        la, lb, lc = special.log_ndtr(-stat[right]), special.log_ndtr(-zup[right]), special.log_ndtr(-zlo[right])
        out[right] = np.exp(la - lc) * np.expm1(lb - la) / np.expm1(lb - lc)
        # lower tail: (P(zup) - P(stat)) / (P(zup) - P(zlo)) with P = ndtr
        la, lb, lc = special.log_ndtr(zup[left]), special.log_ndtr(stat[left]), special.log_ndtr(zlo[left])
        out[left] = -np.expm1(lb - la) / -np.expm1(lc - la)
        pu, pl = special.ndtr(zup[mid]), special.ndtr(zlo[mid])
        out[mid] = (pu - special.ndtr(stat[mid])) / (pu - pl)
    return out


def _truncated_reject(eta, sB, vlo, vup, lf_cv, size) -> np.ndarray:
    """ARP's conditional test of ``eta / sB`` truncated to ``[vlo, min(vup, lf_cv)] / sB``: reject when the
    statistic is positive and its truncated-normal upper-tail probability is below ``size`` (the same as
    exceeding ``max(0, truncated quantile 1 - size)``)."""
    zlo, zup, stat = vlo / sB, np.minimum(vup, lf_cv) / sB, eta / sB
    reject = np.zeros(np.shape(eta), dtype=bool)
    # outside its own truncation interval the LP's solution is off its event (numerically): keep theta
    test = (zlo <= stat) & (stat <= zup) & (stat > 0)
    if test.any():
        reject[test] = _upper_prob(stat[test], zlo[test], zup[test]) < size
    return reject


class _RMTest:
    """The ARP conditional / conditional-LF hybrid test of ``theta`` for one polyhedron ``{A delta <= 0}``."""

    def __init__(self, beta, sigma, A, n_pre, l_vec, alpha, hybrid, z_lf):
        rows = np.flatnonzero(np.any(A[:, n_pre:] != 0, axis=1))  # post-period moments only
        A = A[rows]
        agi = A[:, n_pre:] @ np.linalg.inv(_gamma(l_vec))
        self.a1, self.X = agi[:, 0], agi[:, 1:]
        self.Y = A @ beta
        self.S = A @ sigma @ A.T
        self.sd = np.sqrt(np.diag(self.S))
        self.W = np.column_stack([self.sd, self.X])
        kappa = alpha / 10
        self.size = (alpha - kappa) / (1 - kappa) if hybrid == "LF" else alpha
        V = _dual_vertices(self.W)
        self.V = V
        if V is not None:
            self.VY, self.Va = V @ self.Y, V @ self.a1
            self.G = V @ self.S @ V.T  # G[v, g] = v'S g: every vertex's line for every optimum g
            self.s2 = np.diag(self.G).copy()
        self.lf_cv = np.inf
        if hybrid == "LF":
            # as numpy's multivariate_normal(method="svd"): the same standard normals for every polyhedron
            _, sv, vh = np.linalg.svd(self.S)
            root = np.sqrt(sv)[:, None] * vh
            if V is not None:
                eta = (z_lf[:, : self.S.shape[0]] @ (root @ V.T)).max(axis=1)
            else:
                eta = np.array([self._highs(x)[0] for x in z_lf[:, : self.S.shape[0]] @ root])
            self.lf_cv = float(np.quantile(eta[np.isfinite(eta)], 1 - kappa))

    def accept(self, thetas: np.ndarray) -> np.ndarray:
        """Boolean array: is each ``theta`` accepted at level ``alpha``?"""
        if self.V is None:
            return np.array([self._accept_one(float(t)) for t in thetas], dtype=bool)
        vy = self.VY[None, :] - thetas[:, None] * self.Va[None, :]  # n x vertices
        g = np.argmax(vy, axis=1)
        eta = vy[np.arange(thetas.size), g]
        s2 = self.s2[g]
        reject = eta > self.lf_cv
        flat = s2 < np.finfo(float).eps
        reject |= flat & (eta > 0)
        test = ~reject & ~flat
        if test.any():
            vy, g, eta, s2 = vy[test], g[test], eta[test], s2[test]
            vb = self.G[:, g].T / s2[:, None]  # v'b with b = S g / g'S g
            vs = vy - vb * eta[:, None]  # v's with s = y - b g'y, and g'y = eta
            vb -= 1.0
            with np.errstate(divide="ignore", invalid="ignore"):
                cut = -vs / vb
            vup = np.where(vb > _LINE_TOL, cut, np.inf).min(axis=1)
            vlo = np.where(vb < -_LINE_TOL, cut, -np.inf).max(axis=1)
            reject[test] = _truncated_reject(eta, np.sqrt(s2), vlo, vup, self.lf_cv, self.size)
        return ~reject

    # ------------------------------------------------------------------ HiGHS (large problems)
    def _highs(self, y: np.ndarray) -> tuple[float, np.ndarray]:
        c = np.zeros(self.W.shape[1])
        c[0] = 1.0
        res = optimize.linprog(c, A_ub=-self.W, b_ub=-y, bounds=[(None, None)] * c.size, method="highs")
        if res.status != 0:
            return np.nan, np.full(y.size, np.nan)
        return float(res.fun), -np.asarray(res.ineqlin.marginals)

    def _accept_one(self, theta: float) -> bool:
        y = self.Y - theta * self.a1
        eta, lam = self._highs(y)
        if not np.isfinite(eta):
            return True  # LP failed: do not reject (as HonestDiD)
        if eta > self.lf_cv:
            return False
        s2 = float(lam @ self.S @ lam)
        if s2 < np.finfo(float).eps:
            return not eta > 0
        b = self.S @ lam / s2
        s_vec = y - b * (lam @ y)
        beq = np.zeros(self.W.shape[1])
        beq[0] = 1.0

        def on_line(c: float) -> bool:  # eta(s + b c) = c
            res = optimize.linprog(-(s_vec + b * c), A_eq=self.W.T, b_eq=beq, bounds=[(0, None)] * y.size,
                                   method="highs")
            return res.status == 0 and abs(c + res.fun) <= 1e-6

        def edge(direction: float) -> float:
            far = eta + direction * max(100.0, 20 * np.sqrt(s2))
            if on_line(far):
                return direction * np.inf
            inside, outside = eta, far
            while abs(outside - inside) > 1e-9:
                mid = 0.5 * (inside + outside)
                inside, outside = (mid, outside) if on_line(mid) else (inside, mid)
            return 0.5 * (inside + outside)

        vlo, vup = (edge(-1.0), edge(1.0)) if on_line(eta) else (eta, np.inf)
        return not _truncated_reject(np.array([eta]), np.sqrt(s2), np.array([vlo]), np.array([vup]),
                                     self.lf_cv, self.size)[0]


def _first_accepted(accept, bad: float, good: float, tol: float) -> float:
    """The accepted point nearest ``bad`` on ``[bad, good]`` (``good`` accepted, ``bad`` rejected), to ``tol``."""
    while abs(good - bad) > tol:
        pts = np.linspace(bad, good, _REFINE_POINTS + 1)[1:-1]
        acc = accept(pts)
        if not acc.any():
            bad = pts[-1]
            continue
        j = int(np.argmax(acc))
        bad, good = (pts[j - 1] if j else bad), pts[j]
    return float(good)


def rm_ci(
    beta: np.ndarray,
    sigma: np.ndarray,
    n_pre: int,
    l_vec: np.ndarray,
    Mbar: float,
    level: float = 0.95,
    *,
    hybrid: Literal["LF", "ARP"] = "LF",
    grid_points: int = 1000,
    grid: tuple[float, float] | None = None,
    lf_sims: int = 10000,
    seed: SeedLike = 0,
) -> tuple[float, float]:
    """Robust CI for ``l' tau_post`` under ``Delta^RM(Mbar)`` by inverting the ARP hybrid test.

    Parameters
    ----------
    beta, sigma : ndarray
        Event-study coefficients (``n_pre`` pre-period then the post-period ones) and their covariance.
    n_pre : int
        Number of pre-period coefficients (at least 1).
    l_vec : ndarray
        Weights of the target ``theta = l' tau_post`` over the post periods.
    Mbar : float
        Largest post-period change of the violation relative to the largest pre-period change.
    level : float
        Confidence level.
    hybrid : {"LF", "ARP"}
        HonestDiD's "C-LF" (conditional-least-favourable hybrid, default) or "Conditional".
    grid_points : int
        Points of each scan of ``theta`` (the endpoints are then solved between two of them).
    grid : (float, float), optional
        Scan exactly this range of ``theta`` instead of the automatic one (centred on the
        estimate, doubled until both ends reject).
    lf_sims : int
        Draws for the least-favourable critical value.
    seed : int, SeedSequence or Generator
        Seed of those draws.

    Returns
    -------
    (float, float)
        ``(lower, upper)``: the smallest and largest accepted ``theta``, to ``1e-6`` standard
        errors of ``l' beta_post``. ``(nan, nan)`` with a ``HonestDiDWarning`` if no ``theta``
        in the scanned range is accepted.

    Warns
    -----
    HonestGridWarning
        If the accepted set reaches an end of the scanned range (the interval is cut there).
    """
    alpha = alpha_of(level)
    beta = np.asarray(beta, float)
    sigma = np.asarray(sigma, float)
    l_vec = np.asarray(l_vec, float)
    n_post = l_vec.size
    if n_pre < 1:
        raise HonestDiDError("relative magnitudes need at least one pre-period coefficient")
    if hybrid not in ("LF", "ARP"):
        raise ArgumentError(f"hybrid must be 'LF' or 'ARP', got {hybrid!r}")
    if int(grid_points) < 3:
        raise ArgumentError(f"grid_points must be at least 3, got {grid_points}")
    if grid is not None:
        grid = (float(grid[0]), float(grid[1]))
        if not (np.isfinite(grid[0]) and np.isfinite(grid[1]) and grid[0] < grid[1]):
            raise ArgumentError(f"grid must be (lo, hi) with finite lo < hi, got {grid!r}")
    z_lf = as_generator(seed).standard_normal((int(lf_sims), 2 * n_post)) if hybrid == "LF" else None
    # the matrices are small (tens of columns): BLAS threads only add contention
    with threadpool_limits(1, user_api="blas"):
        return _solve_interval(beta, sigma, n_pre, l_vec, Mbar, alpha, hybrid, int(grid_points), grid, z_lf)


def _solve_interval(beta, sigma, n_pre, l_vec, Mbar, alpha, hybrid, grid_points, grid, z_lf) -> tuple[float, float]:
    """``rm_ci`` after its checks: scan, then solve both ends."""
    n_post = l_vec.size
    centre = float(l_vec @ beta[n_pre:])
    sd_theta = float(np.sqrt(l_vec @ sigma[n_pre:, n_pre:] @ l_vec))
    tests = [
        _RMTest(beta, sigma, _rm_constraints(n_pre, n_post, Mbar, s, positive), n_pre, l_vec, alpha, hybrid, z_lf)
        for s in range(-(n_pre - 1), 1)
        for positive in (True, False)
    ]

    def accept(thetas: np.ndarray) -> np.ndarray:
        out = np.zeros(thetas.size, dtype=bool)
        for test in tests:
            todo = ~out  # a theta accepted by one polyhedron is in the union whatever the others say
            if not todo.any():
                break
            out[todo] = test.accept(thetas[todo])
        return out

    if grid is not None:
        thetas = np.linspace(grid[0], grid[1], grid_points)
        acc = accept(thetas)
    else:
        half = _SCAN_HALF_WIDTH * sd_theta
        for _ in range(_MAX_DOUBLINGS + 1):
            thetas = np.linspace(centre - half, centre + half, grid_points)
            acc = accept(thetas)
            if acc.any() and not acc[0] and not acc[-1]:
                break
            half *= 2.0
    if not acc.any():
        warnings.warn(
            f"relative magnitudes, Mbar = {Mbar:g}: no theta in [{thetas[0]:.6g}, {thetas[-1]:.6g}] is accepted, "
            "so the robust confidence set is empty there (the data reject the restriction); reported as nan",
            HonestDiDWarning, stacklevel=4,
        )
        return np.nan, np.nan
    idx = np.flatnonzero(acc)
    tol = _REFINE_TOL * max(sd_theta, np.finfo(float).tiny)
    i, j = idx[0], idx[-1]
    lower = float(thetas[0]) if i == 0 else _first_accepted(accept, thetas[i - 1], thetas[i], tol)
    upper = float(thetas[-1]) if j == thetas.size - 1 else _first_accepted(accept, thetas[j + 1], thetas[j], tol)
    cut = [name for name, hit in (("lower", i == 0), ("upper", j == thetas.size - 1)) if hit]
    if cut:
        warnings.warn(
            f"relative magnitudes, Mbar = {Mbar:g}: the {' and '.join(cut)} end of the confidence interval is the "
            f"edge of the range of theta scanned, [{thetas[0]:.6g}, {thetas[-1]:.6g}], so the interval is cut there; "
            "widen grid= (or leave it None to let the scan grow until both ends reject)",
            HonestGridWarning, stacklevel=4,
        )
    return lower, upper
