"""Wild cluster bootstrap (WCU) of an imputation (Borusyak-Jaravel-Spiess /
Gardner two-stage) event study.

The imputation estimates are not regression coefficients, but they and their
GMM scores are linear in the outcome: ``beta(y)`` is the group means of the
first-stage residuals ``u1(y)``, and the per-cluster scores ``W_g(y)`` are
linear in ``u1(y)``. The bootstrap outcome is ``y* = yhat + e * v`` with ``e``
the residuals of the event-study model (first-stage residuals on untreated
rows, leads included; residuals around each event time's mean on treated rows) and ``v`` a
weight per cluster, so ``beta(y*) - beta(yhat) = sum_h v_h beta(e 1_h)`` and
``W_g(y*) - W_g(yhat) = sum_h v_h W_g(e 1_h)``. One pass of the estimator per
cluster ``h`` gives ``beta(e 1_h)`` and ``W(e 1_h)``; a draw then costs
O(G^2 k). The bootstrap t of each estimate is studentized by its own GMM
standard error; the null is not imposed (WCU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._seed import block_generator, resolve_entropy
from ...errors import WildBootError
from .wildboot import draw_plan, run_draws
from .wildboot_weights import draws as draw_block
from .wildboot_weights import enumeration, enumeration_probabilities

__all__ = ["imputation_wildboot", "MAX_IMPUTATION_CLUSTERS"]

#: the per-cluster basis is G passes of the estimator and G x G x k numbers
MAX_IMPUTATION_CLUSTERS = 400


@dataclass(eq=False)
class _Runner:
    """One block of draws: numerators and squared-score sums of every statistic."""

    Psi: np.ndarray  # G x k: beta(e 1_h)
    C: np.ndarray  # G x (G k): W(e 1_h), flattened
    kind: str
    seed: np.random.SeedSequence
    enumerate_all: bool
    injected: np.ndarray | None

    def __call__(self, block: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        index, start, stop = block
        G, k = self.Psi.shape
        if self.injected is not None:
            V = np.ascontiguousarray(self.injected[:, start:stop].T)
        elif self.enumerate_all:
            V = enumeration(G, start, stop, self.kind)
        else:
            V = draw_block(self.kind, G, stop - start, block_generator(self.seed, index))
        W = (V @ self.C).reshape(V.shape[0], G, k)
        return V @ self.Psi, np.einsum("bgk,bgk->bk", W, W)


def imputation_wildboot(es: Any, draws: int, weights: str, level: float, seed: Any, n_jobs: int,
                        backend: str | None, weight_matrix: np.ndarray | None, notes: list[str]
                        ) -> dict[str, Any]:
    """Bootstrap t's of the event-study coefficients and the simple aggregate.

    Returns a dict: ``tstar`` (draws x (k + 1), the last column the simple
    aggregate), ``delta`` (the estimates' bootstrap deviations, same shape),
    ``estimate`` and ``se`` (k + 1), ``prob`` (draw probabilities),
    ``draws``, ``enumerate_all``, ``n_boot``.
    """
    imp = es.extra.get("imputation")
    if imp is None:  # pragma: no cover - every imputation event study keeps it
        raise WildBootError("the imputation event study does not carry its estimator")
    G = imp.G
    if G > MAX_IMPUTATION_CLUSTERS:
        raise WildBootError(
            f"the wild bootstrap of an imputation event study builds one estimator pass per cluster and "
            f"G x G x k numbers; {G} clusters exceed {MAX_IMPUTATION_CLUSTERS}")
    codes = es.extra["codes"]
    k = es.coef.size
    D = imp.D
    e = imp.u1.copy()
    grouped = codes >= 0
    # treated rows: residuals around their event time's mean; untreated rows (leads
    # included) keep the first-stage residual, which the first stage reproduces
    post = grouped & D
    e[post] -= es.coef[codes[post]]
    e[D & ~grouped] = 0.0  # treated rows outside the event study (not in its groups)
    if (D & ~grouped).any():
        notes.append("treated rows outside the event-study window carry no bootstrap residual")
    simple = np.where(D, 0, -1)
    Psi = np.zeros((G, k + 1))
    C = np.zeros((G, G, k + 1))
    for h in range(G):
        u1 = imp.first_stage_resid(np.where(imp.cl == h, e, 0.0))
        b, W, _ = imp.scores(codes, k, u1)
        bs, Ws, _ = imp.scores(simple, 1, u1)
        Psi[h, :k], Psi[h, k] = b, bs[0]
        C[h, :, :k], C[h, :, k] = W, Ws[:, 0]
    enumerate_all, B, wm = draw_plan(weights, G, draws, weight_matrix, notes)
    runner = _Runner(Psi, C.reshape(G, -1), weights, resolve_entropy(seed), enumerate_all, wm)
    res = run_draws(runner, B, G, n_jobs, backend)
    delta = np.vstack([r[0] for r in res])
    den = np.vstack([r[1] for r in res])
    with np.errstate(invalid="ignore", divide="ignore"):
        tstar = delta / np.sqrt(np.where(den > 0, den, np.nan))
    prob = enumeration_probabilities(G, weights) if enumerate_all and weights == "mammen" else np.ones(B)
    agg = es.aggregate("simple")
    return {"tstar": tstar, "delta": delta, "estimate": np.r_[es.coef, agg.estimate],
            "se": np.r_[es.se, agg.se], "prob": prob, "draws": B, "enumerate_all": enumerate_all, "n_boot": G}
