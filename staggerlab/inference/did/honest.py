"""Rambachan & Roth (2023) sensitivity analysis for event studies ("HonestDiD").

Given event-study coefficients ``beta = (beta_pre, beta_post)`` (relative to a
reference period normalised to zero) and their covariance, the target is
``theta = l' tau_post`` and the parallel-trends violation ``delta`` is only
restricted to a set ``Delta``:

* smoothness ``Delta^SD(M)``: consecutive changes in the slope of ``delta``
  are at most ``M`` (``M = 0``: exactly linear trends). The confidence interval
  is the optimal fixed-length CI (FLCI, Armstrong-Kolesar): an affine
  estimator ``v' beta`` with ``v = (l_pre, l)``, the pre-period weights chosen
  to minimise ``sd * cv_alpha(worst-case bias / sd)`` where ``cv_alpha(b)`` is
  the ``1 - alpha`` quantile of ``|N(b, 1)|``.
* relative magnitudes ``Delta^RM(Mbar)``: every post-period change in
  ``delta`` is at most ``Mbar`` times the largest pre-period change. The set is
  the union over the location ``s`` and sign of that largest pre-period
  change of polyhedra ``{A_s delta <= 0}``; for each, the conditional-least-
  favourable hybrid test of Andrews, Roth & Pakes (ARP, ``hybrid_kappa =
  alpha / 10``) is inverted on a grid of ``theta`` (``gridPoints`` equally
  spaced on ``[-20 sd, 20 sd]`` of ``l' beta_post`` as in the HonestDiD
  package), using only the moments that involve post-period coefficients. The
  CI is the hull of the union of accepted grid points.

Differences from the R package: the folded-normal quantile is computed
exactly (R simulates 10^6 draws); the least-favourable critical value uses
``lf_sims`` (default 10^4) draws from numpy with ``seed`` (R: 1000 draws from
R's generator), so RM endpoints can differ from R's by about one grid step;
the linear programs are solved exactly by enumerating vertices when the
problem is small (HiGHS otherwise), and the truncation points of the
conditional test are read off the dual vertices instead of by bisection.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import comb
from typing import Any, Literal, Sequence

import numpy as np
import polars as pl
from scipy import optimize, stats

from ..._seed import SeedLike, as_generator
from ..._validate import alpha_of
from ...errors import ArgumentError, ArgumentTypeError, HonestDiDError
from ..results import Result

__all__ = ["honest", "HonestResult", "HonestDiDError", "flci", "rm_ci"]

_TOL_LAMBDA = 1e-6  # ARP: dual weights above this count as binding
_TOL_FEAS = 1e-9  # slack allowed when checking a vertex is feasible
_MAX_VERTEX_SETS = 20000  # beyond this many bases, solve the LPs with HiGHS


# =========================================================================== helpers
def _folded_normal_quantile(p: float, mu: float) -> float:
    """``p`` quantile of ``|N(mu, 1)|`` (exact, by root finding)."""
    mu = abs(mu)
    f = lambda c: stats.norm.cdf(c - mu) - stats.norm.cdf(-c - mu) - p  # noqa: E731
    hi = mu + stats.norm.ppf(p) + 10.0
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-14, rtol=1e-15))


def _l_post_to_w(l_vec: np.ndarray) -> float:
    """Sum of the pre-period weight cumulants forced by unbiasedness under linear trends."""
    return float(np.arange(1, l_vec.size + 1) @ l_vec)


def _bias_constant(l_vec: np.ndarray) -> float:
    tb = l_vec.size
    total = 0.0
    for s in range(1, tb + 1):
        total += abs(np.arange(1, s + 1) @ l_vec[tb - s:])
    return total - _l_post_to_w(l_vec)


# =========================================================================== FLCI (Delta^SD)
@dataclass(frozen=True)
class _FLCIProblem:
    """The FLCI as a function of the pre-period cumulants ``z`` (``z_K`` is fixed).

    With ``w`` the pre-period weight cumulants of HonestDiD and ``z = cumsum(w)``,
    ``l_pre = second-difference(z)`` and the worst-case bias is
    ``M * (const + |z_K| + sum_{k<K} |z_k|)``.
    """

    sigma: np.ndarray
    n_pre: int
    l_vec: np.ndarray

    def l_pre(self, z_free: np.ndarray) -> np.ndarray:
        z = np.append(z_free, _l_post_to_w(self.l_vec))
        w = np.diff(np.concatenate(([0.0], z)))  # w_k = z_k - z_{k-1}
        return np.diff(np.concatenate(([0.0], w)))  # l_1 = w_1, l_k = w_k - w_{k-1}

    def v(self, z_free: np.ndarray) -> np.ndarray:
        return np.concatenate((self.l_pre(z_free), self.l_vec))

    def var(self, z_free: np.ndarray) -> float:
        v = self.v(z_free)
        return float(v @ self.sigma @ v)

    def bias_unit(self, z_free: np.ndarray) -> float:
        s = _l_post_to_w(self.l_vec)
        return _bias_constant(self.l_vec) + abs(s) + float(np.abs(z_free).sum())

    def linear_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``v(z) = P z + q`` (affine in the free cumulants)."""
        k = self.n_pre - 1
        q = self.v(np.zeros(k))
        P = np.column_stack([self.v(np.eye(k)[j]) - q for j in range(k)]) if k else np.zeros((q.size, 0))
        return P, q


def _min_bias_given_h(prob: _FLCIProblem, h: float, start: np.ndarray) -> tuple[float, np.ndarray]:
    """min sum|z| s.t. var(z) <= h^2 (convex; split z = a - b with a, b >= 0)."""
    k = prob.n_pre - 1
    if k == 0:
        return prob.bias_unit(np.zeros(0)), np.zeros(0)
    P, q = prob.linear_map()
    S = prob.sigma
    Q = P.T @ S @ P
    c = P.T @ S @ q
    c0 = float(q @ S @ q)

    def var(x):
        z = x[:k] - x[k:]
        return z @ Q @ z + 2 * c @ z + c0

    def var_grad(x):
        z = x[:k] - x[k:]
        g = 2 * (Q @ z + c)
        return np.concatenate((g, -g))

    x0 = np.concatenate((np.maximum(start, 0), np.maximum(-start, 0)))
    res = optimize.minimize(
        lambda x: x.sum(),
        x0,
        jac=lambda x: np.ones_like(x),
        method="SLSQP",
        bounds=[(0, None)] * (2 * k),
        constraints=[{"type": "ineq", "fun": lambda x: h * h - var(x), "jac": lambda x: -var_grad(x)}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    z = res.x[:k] - res.x[k:]
    return prob.bias_unit(z), z


def _min_variance(prob: _FLCIProblem) -> np.ndarray:
    k = prob.n_pre - 1
    if k == 0:
        return np.zeros(0)
    P, q = prob.linear_map()
    Q = P.T @ prob.sigma @ P
    c = P.T @ prob.sigma @ q
    return np.linalg.lstsq(Q, -c, rcond=None)[0]


def flci(
    beta: np.ndarray, sigma: np.ndarray, n_pre: int, l_vec: np.ndarray, M: float, level: float = 0.95
) -> tuple[float, float]:
    """Optimal fixed-length CI for ``l' tau_post`` under ``Delta^SD(M)``.

    ``beta``/``sigma`` stack ``n_pre`` pre-period then the post-period
    coefficients; ``level`` is the confidence level. Returns ``(lower, upper)``.
    """
    alpha = alpha_of(level)
    beta = np.asarray(beta, float)
    prob = _FLCIProblem(np.asarray(sigma, float), int(n_pre), np.asarray(l_vec, float))
    k = n_pre - 1
    z_minvar = _min_variance(prob)
    z_minbias = np.zeros(k)  # linear extrapolation from the last pre-period
    h_lo = np.sqrt(prob.var(z_minvar))
    h_hi = np.sqrt(prob.var(z_minbias))
    if M == 0 or h_hi <= h_lo * (1 + 1e-12):
        z = z_minvar if M == 0 else z_minbias
        sd = np.sqrt(prob.var(z))
        half = _folded_normal_quantile(1 - alpha, M * prob.bias_unit(z) / sd) * sd
    else:
        cache: dict[float, np.ndarray] = {}

        def halflength(h: float) -> float:
            # bias-minimising weights at sd h, started on the segment between the two extremes
            start = z_minbias + (z_minvar - z_minbias) * (h_hi - h) / (h_hi - h_lo)
            b, z = _min_bias_given_h(prob, h, start)
            cache[h] = z
            sd = np.sqrt(prob.var(z))
            return _folded_normal_quantile(1 - alpha, M * b / sd) * sd

        res = optimize.minimize_scalar(
            halflength, bounds=(h_lo, h_hi), method="bounded", options={"xatol": 1e-12 * h_hi, "maxiter": 500}
        )
        ends = {h_lo: halflength(h_lo), h_hi: halflength(h_hi), res.x: halflength(res.x)}
        h_star = min(ends, key=ends.get)
        half = ends[h_star]
        z = cache[h_star]
    centre = float(prob.v(z) @ beta)
    return centre - half, centre + half


# =========================================================================== ARP conditional / LF test (Delta^RM)
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


class _EtaLP:
    """min eta s.t. y_j - X_j d <= sd_j eta, solved for many ``y`` at once.

    For small problems every basis (k+1 tight rows) is enumerated: the optimum
    is the feasible basic solution with the smallest eta, and its dual weights
    solve ``W_B' lambda_B = e1``. Larger problems use HiGHS one at a time.
    """

    def __init__(self, X: np.ndarray, sd: np.ndarray):
        self.X, self.sd = X, sd
        self.W = np.column_stack([sd, X])
        m, k1 = self.W.shape
        self.m, self.k1 = m, k1
        self.enumerate = comb(m, k1) <= _MAX_VERTEX_SETS
        if self.enumerate:
            bases, inv = [], []
            for S in itertools.combinations(range(m), k1):
                WS = self.W[list(S)]
                if abs(np.linalg.det(WS)) < 1e-12 * max(1.0, np.abs(WS).max()) ** k1:
                    continue
                bases.append(S)
                inv.append(np.linalg.inv(WS))
            self.bases = np.array(bases, dtype=np.int64)
            self.inv = np.array(inv)  # nb x k1 x k1
            # dual weights of each basis: W_S' lam = e1  ->  lam = first row of inv(W_S)
            self.lam = self.inv[:, 0, :]  # nb x k1
            # vertices of the dual polytope {lam >= 0, W' lam = e1}: the dual-feasible bases
            full = np.zeros((len(bases), m))
            for i, S in enumerate(bases):
                full[i, list(S)] = self.lam[i]
            full = full[(full >= -1e-12).all(axis=1)]
            self.dual_vertices = np.unique(np.round(full, 14), axis=0) if full.size else np.zeros((0, m))

    def solve(self, Y: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        """eta* for each row of Y (N x m), and the optimal basis (or dual vector) of each."""
        if not self.enumerate:
            out, info = [], []
            for y in Y:
                eta, lam = self.highs(y)
                out.append(eta), info.append(lam)
            return np.array(out), info
        YS = Y[:, self.bases]  # N x nb x k1
        Z = np.einsum("bij,nbj->nbi", self.inv, YS)  # basic solutions
        slack = np.einsum("mi,nbi->nbm", self.W, Z) - Y[:, None, :]
        scale = 1.0 + np.abs(Y).max(axis=1)[:, None]
        feasible = slack.min(axis=2) >= -_TOL_FEAS * scale
        eta = np.where(feasible, Z[:, :, 0], np.inf)
        dual_ok = (self.lam >= -1e-10).all(axis=1)
        best = eta.min(axis=1)
        info = []
        for i in range(Y.shape[0]):
            close = np.flatnonzero(feasible[i] & (eta[i] <= best[i] + 1e-10 * (1 + abs(best[i]))))
            good = close[dual_ok[close]]
            info.append(int(good[0]) if good.size else None)
        return best, info

    def dual(self, info: Any) -> np.ndarray:
        if isinstance(info, np.ndarray):
            return info
        lam = np.zeros(self.m)
        lam[self.bases[info]] = self.lam[info]
        return lam

    def highs(self, y: np.ndarray) -> tuple[float, np.ndarray]:
        c = np.zeros(self.k1)
        c[0] = 1.0
        res = optimize.linprog(c, A_ub=-self.W, b_ub=-y, bounds=[(None, None)] * self.k1, method="highs")
        if res.status != 0:
            return np.nan, np.full(self.m, np.nan)
        return float(res.fun), -np.asarray(res.ineqlin.marginals)


class _ARPTest:
    """Conditional (ARP) / conditional-least-favourable hybrid test of ``theta`` for one polyhedron."""

    def __init__(self, beta, sigma, A, n_pre, l_vec, alpha, kappa, hybrid, lf_sims, seed):
        n_post = l_vec.size
        rows = np.flatnonzero(np.any(A[:, n_pre:] != 0, axis=1))  # post-period moments only
        A = A[rows]
        agi = A[:, n_pre:] @ np.linalg.inv(_gamma(l_vec))
        self.a1 = agi[:, 0]
        self.X = agi[:, 1:]
        self.Y = A @ beta
        self.S = A @ sigma @ A.T
        self.sd = np.sqrt(np.diag(self.S))
        self.alpha, self.kappa, self.hybrid = alpha, kappa, hybrid
        self.k = n_post - 1
        self.lp = _EtaLP(self.X, self.sd)
        if hybrid == "LF":
            rng = as_generator(seed)
            xi = rng.multivariate_normal(np.zeros(self.S.shape[0]), self.S, size=lf_sims, method="svd")
            eta, _ = self.lp.solve(xi)
            self.lf_cv = float(np.quantile(eta[np.isfinite(eta)], 1 - kappa))
            self.size = (alpha - kappa) / (1 - kappa)
        else:
            self.lf_cv = np.inf
            self.size = alpha

    def accept(self, thetas: np.ndarray) -> np.ndarray:
        Yt = self.Y[None, :] - np.outer(thetas, self.a1)
        eta, info = self.lp.solve(Yt)
        out = np.ones(thetas.size, dtype=bool)
        for i in range(thetas.size):
            if not np.isfinite(eta[i]):
                continue  # LP failed: do not reject (as HonestDiD)
            if eta[i] > self.lf_cv:
                out[i] = False
                continue
            out[i] = not self._conditional_reject(Yt[i], eta[i], info[i])
        return out

    def _conditional_reject(self, y, eta, info) -> bool:
        lam = self.lp.dual(info) if info is not None else self.lp.highs(y)[1]
        binding = lam > _TOL_LAMBDA
        XB = self.X[binding]
        degenerate = binding.sum() != self.k + 1
        full_rank = self.k == 0 or (XB.size > 0 and np.linalg.matrix_rank(XB) == min(XB.shape))
        if degenerate or not full_rank:
            return self._dual_reject(y, eta, lam)
        S = self.S
        W_B = np.column_stack([self.sd[binding], XB])
        W_Bc = np.column_stack([self.sd[~binding], self.X[~binding]])
        inv = np.linalg.inv(W_B)
        m = y.size
        SB = np.eye(m)[binding]
        SBc = np.eye(m)[~binding]
        Gam = W_Bc @ inv @ SB - SBc
        vB = inv[0] @ SB
        s2 = float(vB @ S @ vB)
        rho = Gam @ S @ vB / s2
        mm = (-Gam @ y) / rho + vB @ y
        vlo = mm[rho > 0].max() if np.any(rho > 0) else -np.inf
        vup = mm[rho < 0].min() if np.any(rho < 0) else np.inf
        return self._truncated_test(eta, np.sqrt(s2), vlo, vup)

    def _truncated_test(self, eta, sB, vlo, vup) -> bool:
        zlo = vlo / sB
        zup = min(vup, self.lf_cv) / sB
        stat = eta / sB
        if not (zlo <= stat <= zup):
            return False
        cval = max(0.0, float(stats.truncnorm.ppf(1 - self.size, zlo, zup)))
        return stat > cval

    def _dual_reject(self, y, eta, gamma) -> bool:
        S = self.S
        s2 = float(gamma @ S @ gamma)
        if abs(s2) < np.finfo(float).eps:
            return eta > 0
        sB = np.sqrt(s2)
        b = S @ gamma / s2
        s_vec = y - b * (gamma @ y)
        if self.lp.enumerate:
            # eta(c) = max over dual vertices v of v's + (v'b) c is convex with eta(c) >= c and
            # eta(eta*) = eta*: {eta(c) = c} = [vlo, vup], read off each vertex's line
            V = self.lp.dual_vertices
            vs, vb = V @ s_vec, V @ b - 1.0
            tol = 1e-10
            up, down = vb > tol, vb < -tol
            vup = float(np.min(-vs[up] / vb[up])) if up.any() else np.inf
            vlo = float(np.max(-vs[down] / vb[down])) if down.any() else -np.inf
            return self._truncated_test(eta, sB, vlo, vup)
        W = np.column_stack([self.sd, self.X])
        beq = np.zeros(W.shape[1])
        beq[0] = 1.0

        def is_fixed(c):
            res = optimize.linprog(-(s_vec + b * c), A_eq=W.T, b_eq=beq, bounds=[(0, None)] * y.size, method="highs")
            return res.status == 0 and abs(c + res.fun) <= 1e-6

        if not is_fixed(eta):
            return self._truncated_test(eta, sB, eta, np.inf)

        def edge(direction):
            far = eta + direction * max(100.0, 20 * sB)
            if is_fixed(far):
                return direction * np.inf
            inside, outside = eta, far
            while abs(outside - inside) > 1e-9:
                mid = 0.5 * (inside + outside)
                if is_fixed(mid):
                    inside = mid
                else:
                    outside = mid
            return 0.5 * (inside + outside)

        return self._truncated_test(eta, sB, edge(-1.0), edge(+1.0))


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
    """Robust CI for ``l' tau_post`` under ``Delta^RM(Mbar)`` by test inversion on a grid.

    ``hybrid="LF"`` is HonestDiD's "C-LF" (default), ``"ARP"`` its "Conditional".
    ``level`` is the confidence level. Returns ``(lower, upper)`` (nan if no
    grid point is accepted).
    """
    alpha = alpha_of(level)
    beta = np.asarray(beta, float)
    sigma = np.asarray(sigma, float)
    l_vec = np.asarray(l_vec, float)
    n_post = l_vec.size
    if n_pre < 1:
        raise HonestDiDError("relative magnitudes need at least one pre-period coefficient")
    sd_theta = float(np.sqrt(l_vec @ sigma[n_pre:, n_pre:] @ l_vec))
    lo, hi = grid if grid is not None else (-20 * sd_theta, 20 * sd_theta)
    thetas = np.linspace(lo, hi, grid_points)
    accept = np.zeros(grid_points, dtype=bool)
    kappa = alpha / 10
    for s in range(-(n_pre - 1), 1):
        for positive in (True, False):
            A = _rm_constraints(n_pre, n_post, Mbar, s, positive)
            test = _ARPTest(beta, sigma, A, n_pre, l_vec, alpha, kappa, hybrid, lf_sims, seed)
            accept |= test.accept(thetas)
    if not accept.any():
        return np.nan, np.nan
    return float(thetas[accept].min()), float(thetas[accept].max())


# =========================================================================== front end
@dataclass(eq=False)
class HonestResult(Result):
    """Rambachan-Roth sensitivity analysis of one target ``theta = l' tau_post``.

    Attributes
    ----------
    method : str
        ``"relative_magnitude"`` or ``"smoothness"``.
    param : str
        ``"Mbar"`` or ``"M"``.
    values, ci_low, ci_high : ndarray
        The restriction sizes and the robust CI at each.
    original : (float, float)
        The usual CI for ``theta`` (no violation allowed beyond sampling error).
    estimate : float
        ``l' beta_post``.
    breakdown : float
        Smallest value in ``values`` whose CI contains 0 (nan if none does).
    l_vec : ndarray
    level : float
        Confidence level; ``alpha`` is ``1 - level``.
    """

    method: str
    param: str
    values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    original: tuple[float, float]
    estimate: float
    l_vec: np.ndarray
    level: float

    @property
    def alpha(self) -> float:
        return alpha_of(self.level)

    @property
    def breakdown(self) -> float:
        covers = (self.ci_low <= 0) & (self.ci_high >= 0)
        return float(self.values[np.argmax(covers)]) if covers.any() else float("nan")

    def tidy(self) -> pl.DataFrame:
        """One row per restriction size: ``M`` or ``Mbar``, ``ci_low``, ``ci_high``."""
        return pl.DataFrame({self.param: self.values, "ci_low": self.ci_low, "ci_high": self.ci_high})

    def summary(self) -> str:
        """Printable table with the original CI and the breakdown value."""
        lo, hi = self.original
        return (
            f"Rambachan-Roth sensitivity ({self.method}), theta = l'tau_post with l = {self.l_vec.tolist()}\n"
            f"estimate {self.estimate:.6g}; original {100 * self.level:.0f}% CI [{lo:.6g}, {hi:.6g}]\n"
            f"breakdown {self.param} = {self.breakdown:.6g}\n{self.tidy()}"
        )

    def plot(self, path: str | None = None, *, ax: Any = None):
        """Sensitivity plot: robust CI against M / Mbar, the original CI at the left."""
        from ...plots.honest import plot_sensitivity

        return plot_sensitivity(self, path=path, ax=ax)


def _default_M(beta_pre: np.ndarray, sigma_pre: np.ndarray, alpha: float) -> np.ndarray:
    """10 values from 0 to an upper bound on the pre-period second differences."""
    if beta_pre.size < 2:
        return np.linspace(0, np.sqrt(sigma_pre[0, 0]), 10)
    b = np.append(beta_pre, 0.0)  # the reference period is 0
    D = np.zeros((b.size - 2, b.size))
    for i in range(b.size - 2):
        D[i, i: i + 3] = (1.0, -2.0, 1.0)
    S = np.zeros((b.size, b.size))
    S[:-1, :-1] = sigma_pre
    d = D @ b
    se = np.sqrt(np.diag(D @ S @ D.T))
    ub = float(np.max(np.abs(d) + stats.norm.ppf(1 - alpha) * se))
    return np.linspace(0, ub, 10)


def _event_study_parts(result: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
    for name in ("rel_time", "coef", "vcov", "ref"):
        if not hasattr(result, name):
            raise HonestDiDError(
                f"honest() needs an event-study result with rel_time, coef, vcov and ref; missing {name!r}"
            )
    if getattr(result, "method", None) == "cs" and getattr(result, "base_period", "universal") != "universal":
        raise HonestDiDError(
            "Callaway-Sant'Anna with base_period='varying' has no common reference period; "
            "re-estimate with base_period='universal' for honest()"
        )
    rel = np.asarray(result.rel_time)
    coef = np.asarray(result.coef() if callable(result.coef) else result.coef, dtype=float)
    vcov = np.asarray(result.vcov() if callable(result.vcov) else result.vcov, dtype=float)
    ref = int(result.ref)
    keep = rel != ref
    rel, coef, vcov = rel[keep], coef[keep], vcov[np.ix_(keep, keep)]
    order = np.argsort(rel)
    rel, coef, vcov = rel[order], coef[order], vcov[np.ix_(order, order)]
    pre = rel[rel < ref]
    post = rel[rel > ref]
    if pre.size == 0 or post.size == 0:
        raise HonestDiDError("the event study needs coefficients before and after the reference period")
    full = np.concatenate((pre, [ref], post))
    if np.any(np.diff(full) != 1):
        raise HonestDiDError(
            f"event times must be consecutive around the reference period {ref}; got {rel.tolist()}"
        )
    return coef, vcov, int(pre.size), int(post.size)


def honest(
    result: Any,
    *,
    method: Literal["relative_magnitude", "smoothness"] = "relative_magnitude",
    Mbar: Sequence[float] | float | None = None,
    M: Sequence[float] | float | None = None,
    e: int | Literal["average"] = 0,
    l_vec: Sequence[float] | None = None,
    level: float = 0.95,
    grid_points: int = 1000,
    lf_sims: int = 10000,
    seed: SeedLike = 0,
) -> HonestResult:
    """Rambachan-Roth robust confidence sets for a post-period effect.

    Parameters
    ----------
    result : event-study result
        Anything with ``rel_time``, ``coef``, ``vcov`` and ``ref`` (the
        reference event time, dropped if present). Event times must be
        consecutive; those below ``ref`` are pre-periods, those above post.
    method : {"relative_magnitude", "smoothness"}
        ``Delta^RM(Mbar)`` with the conditional-LF hybrid test (HonestDiD's
        "C-LF"), or ``Delta^SD(M)`` with the optimal FLCI.
    Mbar, M : float or sequence
        Restriction sizes (defaults: 10 values in [0, 2] for ``Mbar``; 10
        values from 0 to a one-sided upper bound on the pre-period second
        differences for ``M``).
    e : int or "average"
        Target: the ``e``-th post period (``e=0``: the first after ``ref``), or
        the average over all post periods. ``l_vec`` overrides it.
    level : float
        Confidence level of the robust and the original intervals.
    grid_points, lf_sims, seed
        RM only: test-inversion grid size; draws for the least-favourable
        critical value and their seed.

    Returns
    -------
    HonestResult
    """
    if method not in ("relative_magnitude", "smoothness"):
        raise ArgumentError(f"method must be 'relative_magnitude' or 'smoothness', got {method!r}")
    alpha = alpha_of(level)
    beta, sigma, n_pre, n_post = _event_study_parts(result)
    if l_vec is not None:
        lv = np.asarray(l_vec, dtype=float)
        if lv.size != n_post:
            raise HonestDiDError(f"l_vec has {lv.size} entries; the event study has {n_post} post periods")
    elif e == "average":
        lv = np.full(n_post, 1.0 / n_post)
    else:
        if not (0 <= int(e) < n_post):
            raise HonestDiDError(f"e={e} is outside the {n_post} post periods")
        lv = np.zeros(n_post)
        lv[int(e)] = 1.0
    theta = float(lv @ beta[n_pre:])
    sd = float(np.sqrt(lv @ sigma[n_pre:, n_pre:] @ lv))
    z = stats.norm.ppf(1 - alpha / 2)
    original = (theta - z * sd, theta + z * sd)
    if method == "smoothness":
        if Mbar is not None:
            raise ArgumentTypeError("method='smoothness' takes M=, not Mbar=")
        vals = _default_M(beta[:n_pre], sigma[:n_pre, :n_pre], alpha) if M is None else np.atleast_1d(np.asarray(M, float))
        param = "M"
    else:
        if M is not None:
            raise ArgumentTypeError("method='relative_magnitude' takes Mbar=, not M=")
        vals = np.linspace(0, 2, 10) if Mbar is None else np.atleast_1d(np.asarray(Mbar, float))
        param = "Mbar"
    if np.any(vals < 0):
        raise ArgumentError(f"{param} must be non-negative")
    if method == "smoothness":
        cis = [flci(beta, sigma, n_pre, lv, float(m), level) for m in vals]
    else:
        cis = [rm_ci(beta, sigma, n_pre, lv, float(mb), level, grid_points=grid_points, lf_sims=lf_sims, seed=seed)
               for mb in vals]
    lo = np.array([c[0] for c in cis])
    hi = np.array([c[1] for c in cis])
    return HonestResult(method, param, vals, lo, hi, original, theta, lv, level)
