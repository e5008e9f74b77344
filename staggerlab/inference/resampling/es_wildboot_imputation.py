"""Wild cluster bootstrap (WCR and WCU) of an imputation (Borusyak-Jaravel-Spiess
/ Gardner two-stage) event study: every coefficient and the four aggregates.

The estimates are group means of the first-stage residuals ``u1(y)`` over
the rows of a *grouping* (event times for the coefficients and ``dynamic``;
all treated rows for ``simple``; cohorts for ``group``; periods for
``calendar``), and their GMM scores are linear in ``u1``. Each tested
statistic is ``pi' beta`` for one grouping.

Bootstrap data generating process of a grouping: ``y* = yhat + e v``, ``v``
a weight per cluster, ``e`` the grouping's residuals: the first-stage
residual on untreated rows (leads included), the residual around its group's
mean on treated rows of a group, zero on treated rows outside the grouping.
WCR imposes ``pi' beta = h0`` by the restricted least-squares shift of the
group means, ``e + (pi' beta - h0) d`` with ``d_j = (pi_j / sw_j) /
sum_l (pi_l^2 / sw_l)`` on group ``j``'s rows (``sw``: the groups' weight
sums); for one coefficient that shifts its own rows by its estimate. Lead
coefficients are means of first-stage residuals and the first-stage fit has
no lead effect, so their bootstrap is the same under WCR and WCU (their
intervals are percentile-t).

Algebra (clusters must nest the units, as the first stage's unit means then
stay within a cluster): for ``y* = sum_h v_h r 1_h`` the first stage gives
``theta* = Spinv R(r)' v`` with ``R_h`` the cluster's untreated
``sum w0 f r~`` (``r~`` = ``r`` minus its unit's untreated mean), and
``u1*_i = v_h r~_i - f~_i' theta*``. So a draw's group means are ``v' Psi``
and cluster ``g``'s score of ``pi' beta`` is ``v_g (P pi)_g - theta*'(Q_g pi)
- beta*'(N_g * pi)``, with ``Psi, P, N`` (G x k) and ``Q`` (G x p x k)
built once by one pass over the rows; a draw costs O(G (p + k)) per
statistic (``p`` = periods - 1 + controls), with BLAS products over blocks of
draws. The shift direction ``d`` lives on treated rows, where the first stage
does not look, so its pieces are ``N``'s. Equal to refits of the estimator
on ``y*`` (tests).
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

__all__ = ["imputation_wildboot", "AGGREGATES"]

#: the aggregates the bootstrap reports, in order
AGGREGATES = ("simple", "dynamic", "group", "calendar")


@dataclass(eq=False)
class _Grouping:
    """The bootstrap pieces of one grouping's group means (see the module docstring)."""

    L: np.ndarray  # G x (p + k): [R Spinv | Psi]: theta* and beta* are v @ L
    P: np.ndarray  # G x k
    Q: np.ndarray  # G x p x k
    N: np.ndarray  # G x k: a cluster's share of each group's weight
    treated: np.ndarray  # k bools: every row of the group is treated
    sw: np.ndarray  # k: the groups' weight sums


@dataclass(eq=False)
class _Test:
    """One tested statistic ``pi' beta`` of a grouping, reduced to what a draw needs."""

    grouping: int
    pi_ext: np.ndarray  # p + k: picks pi' beta* out of v @ L
    Ppi: np.ndarray  # G
    q: np.ndarray  # G x (p + k)
    Nd: np.ndarray | None  # G: the restricted shift's pieces (None: WCU only)
    nq: np.ndarray | None  # G x k


def _grouping(imp: Any, codes: np.ndarray, k: int, beta: np.ndarray) -> _Grouping:
    """The pieces of the grouping ``codes`` (``k`` groups, means ``beta``)."""
    G, T, U = imp.G, imp.T, imp.U
    K = len(imp.X)
    m, sw, alpha, theta = imp.loadings(codes, k)
    c = codes[m]
    wm = imp._weights(m)
    D = imp.D
    treated = np.bincount(c, weights=~D[m], minlength=k) == 0
    # the grouping's residuals: untreated rows keep u1, grouped treated rows lose their group's mean
    e = imp.u1.copy()
    on = np.flatnonzero(D)
    e[on] = 0.0
    tm = m[D[m]]
    e[tm] = imp.u1[tm] - beta[codes[tm]]
    cl_m = imp.cl[m]

    def grouped(v: np.ndarray) -> np.ndarray:  # G x k sums of w * v over each cluster's rows of each group
        return np.bincount(cl_m * k + c, weights=wm * v, minlength=G * k).reshape(G, k)

    sums = imp.untreated_cluster_sums(alpha, theta, [e, *imp.X], periods=True)
    P = (grouped(e[m]) - sums[0]) / sw
    cells = np.bincount((cl_m * T + imp.tcode[m]) * k + c, weights=wm, minlength=G * T * k).reshape(G, T, k)
    Q = np.concatenate([(cells - sums[-1])[:, 1:, :],
                        np.stack([grouped(x[m]) - s for x, s in zip(imp.X, sums[1:1 + K])], axis=1)
                        if K else np.zeros((G, 0, k))], axis=1) / sw
    N = grouped(np.ones(m.size)) / sw
    # R(e): the untreated rows' sum of w0 f e~ per cluster (e~: e minus its unit's untreated mean)
    ebar = np.bincount(imp.ucode, weights=imp.w0 * e, minlength=U) / imp.n_u
    et = e - ebar[imp.ucode]
    w0e = imp.w0 * et
    R = np.concatenate([np.bincount(imp.cl * T + imp.tcode, weights=w0e, minlength=G * T).reshape(G, T)[:, 1:],
                        np.column_stack([np.bincount(imp.cl, weights=w0e * x, minlength=G) for x in imp.X])
                        if K else np.zeros((G, 0))], axis=1)
    Psi = grouped(et[m]) / sw - R @ theta / sw
    return _Grouping(np.hstack([R @ imp.Spinv, Psi]), P, Q, N, treated, sw)


def _test(gi: int, g: _Grouping, pi: np.ndarray, restricted: bool) -> _Test:
    p = g.Q.shape[1]
    q = np.hstack([g.Q @ pi, g.N * pi])
    Nd = nq = None
    on = pi != 0
    if restricted and g.treated[on].all():
        d = np.where(on, pi / g.sw, 0.0) / float(pi[on] ** 2 @ (1.0 / g.sw[on]))
        Nd = g.N @ (pi * d)
        nq = g.N * (d * pi)
    return _Test(gi, np.r_[np.zeros(p), pi], g.P @ pi, q, Nd, nq)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("bg,bg->b", a, b)


@dataclass(eq=False)  # hashable by identity: joblib's dask backend hashes task functions
class _Runner:
    """One block of draws: every test's pieces ``(n0, n1, a, b, c)`` (restricted) or
    ``(n0, a)`` (unrestricted), and each draw's constant sign."""

    groupings: list[_Grouping]
    tests: list[_Test]
    kind: str
    seed: np.random.SeedSequence
    enumerate_all: bool
    injected: np.ndarray | None

    def __call__(self, block: tuple[int, int, int]) -> tuple[list[tuple[np.ndarray, ...]], np.ndarray]:
        index, start, stop = block
        G = self.groupings[0].N.shape[0]
        if self.injected is not None:
            V = np.ascontiguousarray(self.injected[:, start:stop].T)
        elif self.enumerate_all:
            V = enumeration(G, start, stop, self.kind)
        else:
            V = draw_block(self.kind, G, stop - start, block_generator(self.seed, index))
        same = (V == V[:, :1]).all(axis=1)
        csign = np.where(same, np.sign(V[:, 0]), 0.0)
        X = [V @ g.L for g in self.groupings]
        VN = [V @ g.N for g in self.groupings]
        out = []
        for t in self.tests:
            x = X[t.grouping]
            Se = V * t.Ppi
            Se -= x @ t.q.T
            n0, a = x @ t.pi_ext, _rowdot(Se, Se)
            if t.Nd is None:
                out.append((n0, a))
                continue
            Sd = V * t.Nd
            Sd -= VN[t.grouping] @ t.nq.T
            out.append((n0, V @ t.Nd, a, _rowdot(Se, Sd), _rowdot(Sd, Sd)))
        return out, csign


def imputation_wildboot(es: Any, draws: int, weights: str, seed: Any, n_backend: tuple[int, str | None],
                        weight_matrix: np.ndarray | None, impose_null: bool, notes: list[str]
                        ) -> dict[str, Any]:
    """Per-draw pieces of every coefficient and aggregate of an imputation event study.

    Returns a dict: ``pieces`` (one tuple of per-draw arrays per statistic:
    the k coefficients, then the aggregates ``kinds``), ``restricted``
    (per statistic: WCR pieces), ``estimate``, ``se``, ``kinds``, ``csign``,
    ``prob`` (draw probabilities), ``draws``, ``enumerate_all``, ``n_boot``.
    """
    imp = es.extra.get("imputation")
    if imp is None:  # pragma: no cover - every imputation event study keeps it
        raise WildBootError("the imputation event study does not carry its estimator")
    unit_cluster = np.full(imp.U, -1, dtype=np.int64)
    unit_cluster[imp.ucode] = imp.cl
    if (unit_cluster[imp.ucode] != imp.cl).any():
        raise WildBootError(
            "the wild bootstrap of an imputation event study needs each unit inside one cluster (its first "
            "stage's unit means must stay within a cluster); cluster by the unit or by a grouping of units")
    codes = es.extra["codes"]
    k = es.coef.size
    groupings, tests, est, se, kinds = [], [], [], [], []
    g0 = _grouping(imp, codes, k, es.coef)
    groupings.append(g0)
    if (imp.D & (codes < 0)).any():
        notes.append("treated rows outside the event-study window carry no bootstrap residual in the "
                     "coefficients' bootstrap")
    for j in range(k):
        tests.append(_test(0, g0, np.eye(k)[j], impose_null))
    est.extend(es.coef)
    se.extend(es.se)
    for kind in AGGREGATES:
        if kind == "dynamic":
            if not (es.rel_time >= 0).any():
                continue
            pi, gi = es.default_weights("dynamic"), 0
        else:
            gcodes, levels, pi = imp.grouping(kind)
            agg = es.aggregate(kind)  # the estimator's own (cached) second stage: its group means
            b = np.array([agg.estimate]) if kind == "simple" else agg.components["estimate"].to_numpy()
            groupings.append(_grouping(imp, gcodes, levels.size, b))
            gi = len(groupings) - 1
        agg = es.aggregate(kind)
        tests.append(_test(gi, groupings[gi], pi, impose_null))
        est.append(agg.estimate)
        se.append(agg.se)
        kinds.append(kind)
    if impose_null and any(t.Nd is None for t in tests[:k]):
        notes.append("lead coefficients are means of first-stage residuals: their bootstrap (the first-stage "
                     "fit has no lead effect) is the same with and without the null imposed")
    G = imp.G
    enumerate_all, B, wm = draw_plan(weights, G, draws, weight_matrix, notes)
    runner = _Runner(groupings, tests, weights, resolve_entropy(seed), enumerate_all, wm)
    res = run_draws(runner, B, G, *n_backend)
    pieces = [tuple(np.concatenate([blk[0][j][q] for blk in res]) for q in range(len(res[0][0][j])))
              for j in range(len(tests))]
    prob = enumeration_probabilities(G, weights) if enumerate_all and weights == "mammen" else np.ones(B)
    return {"pieces": pieces, "restricted": [t.Nd is not None for t in tests], "estimate": np.array(est),
            "se": np.array(se), "kinds": tuple(kinds), "csign": np.concatenate([blk[1] for blk in res]),
            "prob": prob, "draws": B, "enumerate_all": enumerate_all, "n_boot": G}
