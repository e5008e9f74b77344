"""Rambachan & Roth (2023) smoothness restrictions ``Delta^SD(M)``: the optimal FLCI.

The confidence interval is the optimal fixed-length CI (FLCI, Armstrong-Kolesar):
an affine estimator ``v' beta`` with ``v = (l_pre, l)``, the pre-period weights
chosen to minimise ``sd * cv_alpha(worst-case bias / sd)`` where ``cv_alpha(b)``
is the ``1 - alpha`` quantile of ``|N(b, 1)|`` (computed exactly; HonestDiD
simulates 10^6 draws). The FLCI has no test-inversion grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from ..._validate import alpha_of

__all__ = ["flci"]


# =========================================================================== helpers
def _folded_normal_quantile(p: float, mu: float) -> float:
    """``p`` quantile of ``|N(mu, 1)|`` (exact, by root finding)."""
    mu = abs(mu)
    # scipy.special's ndtr / ndtri are what stats.norm's cdf / ppf evaluate (the same
    # bits), at a hundredth of the per-call cost: the root finder calls f ~15 times
    f = lambda c: special.ndtr(c - mu) - special.ndtr(-c - mu) - p  # noqa: E731
    hi = mu + special.ndtri(p) + 10.0
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
