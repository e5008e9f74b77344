"""Kernel of the maximum-likelihood logit: Newton-Raphson with step halving.

One pass over the rows per iteration accumulates the gradient and the Hessian
together (numpy needs about ten passes and a rows x k temporary), and one pass
per trial step evaluates the log-likelihood. Plain loops in a fixed order, so
the result does not depend on BLAS threads.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .linalg import cholesky_lower, cholesky_solve

__all__ = ["logit_newton", "weighted_loglik"]


@jit
def weighted_loglik(Z_NK, b_K, d_N, w_N, p_N):
    """``sum_i w_i (d_i eta_i - log(1 + e^eta_i))`` with ``eta = Z b``; the
    fitted probabilities ``1 / (1 + e^-eta)`` are written into ``p_N`` (from
    the same exponential, so the next Newton step needs none)."""
    n, k = Z_NK.shape
    ll = 0.0
    for i in range(n):
        e = 0.0
        for j in range(k):
            e += Z_NK[i, j] * b_K[j]
        a = np.exp(-abs(e))
        p_N[i] = 1.0 / (1.0 + a) if e >= 0.0 else a / (1.0 + a)
        ll += w_N[i] * (d_N[i] * e - (max(e, 0.0) + np.log1p(a)))
    return ll


@jit
def _cholesky_solve(H_KK, g_K):
    """``H^-1 g`` by Cholesky; NaNs when ``H`` is not positive definite."""
    k = g_K.size
    L = H_KK.copy()
    if cholesky_lower(L, k) <= 0.0:
        return np.full(k, np.nan)
    out = g_K.copy()
    cholesky_solve(L, k, out)
    return out


@jit
def logit_newton(Z_NK, d_N, w_N, b_K, tol, maxiter):
    """Newton-Raphson for the weighted logit of ``d`` on ``Z`` from ``b``.

    Each step is halved until the log-likelihood does not fall (by more than
    ``1e-12`` of its size) or the step factor is below ``1e-10``. Stops when the
    largest step is at most ``tol * (1 + max |b|)`` (converged), when the
    Hessian is not positive definite, or after ``maxiter`` iterations.

    Returns
    -------
    b_K, p_N : the coefficients and the fitted probabilities
    n_iter : int
    converged : bool
    """
    n, k = Z_NK.shape
    b = b_K.copy()
    prob = np.empty(n)
    prob_new = np.empty(n)
    ll = weighted_loglik(Z_NK, b, d_N, w_N, prob)
    H = np.empty((k, k))
    g = np.empty(k)
    trial = np.empty(k)
    converged = False
    it = 0
    for it in range(1, maxiter + 1):
        for j in range(k):
            g[j] = 0.0
            for m in range(k):
                H[j, m] = 0.0
        for i in range(n):
            p = prob[i]
            r = w_N[i] * (d_N[i] - p)
            v = w_N[i] * p * (1.0 - p)
            for j in range(k):
                zj = Z_NK[i, j]
                g[j] += r * zj
                vz = v * zj
                for m in range(j + 1):
                    H[j, m] += vz * Z_NK[i, m]
        for j in range(k):
            for m in range(j + 1, k):
                H[j, m] = H[m, j]
        step = _cholesky_solve(H, g)
        finite = True
        for j in range(k):
            finite = finite and np.isfinite(step[j])
        if not finite:
            break
        t = 1.0
        while True:
            for j in range(k):
                trial[j] = b[j] + t * step[j]
            ll_new = weighted_loglik(Z_NK, trial, d_N, w_N, prob_new)
            if ll_new >= ll - 1e-12 * abs(ll) or t < 1e-10:
                break
            t *= 0.5
        big_step = 0.0
        big_b = 0.0
        for j in range(k):
            b[j] = trial[j]
            big_step = max(big_step, abs(t * step[j]))
            big_b = max(big_b, abs(b[j]))
        prob, prob_new = prob_new, prob
        ll = ll_new
        if big_step <= tol * (1.0 + big_b):
            converged = True
            break
    return b, prob, it, converged
